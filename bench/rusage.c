/*
 * rusage.c - run a command and write its peak RSS (KiB) to a file, and its
 * CPU seconds (user + system, with the descendants it waited for) to the
 * file OUT.cpu.
 *   rusage OUT CMD [ARGS...]
 * bench/run.py launches every timed child through this small process:
 * Linux carries the pre-exec hiwater RSS of a forked process into
 * ru_maxrss, so a child forked straight from the (large) Python runner would
 * report the runner's RSS.  Forked from here, it starts from ~1 MiB.
 */
#include <stdio.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	struct rusage ru;
	int status = 0;
	pid_t pid;
	FILE *f;
	char cpu[4096];

	if (argc < 3) {
		fprintf(stderr, "usage: rusage OUT CMD [ARGS...]\n");
		return 2;
	}
	pid = fork();
	if (pid < 0)
		return 127;
	if (pid == 0) {
		execvp(argv[2], argv + 2);
		perror(argv[2]);
		_exit(127);
	}
	if (wait4(pid, &status, 0, &ru) < 0)
		return 127;
	f = fopen(argv[1], "w");
	if (f) {
		fprintf(f, "%ld\n", ru.ru_maxrss);
		fclose(f);
	}
	if (snprintf(cpu, sizeof(cpu), "%s.cpu", argv[1]) < (int)sizeof(cpu) &&
	    (f = fopen(cpu, "w"))) {
		fprintf(f, "%.6f\n", (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
			(double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6);
		fclose(f);
	}
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return WEXITSTATUS(status);
}
