/*
 * replay.c - runs a libFuzzer target over every file of a corpus directory
 * (or over the files named), so that corpora are replayed as ordinary tests
 * in CI without clang's fuzzer runtime.
 *
 * Built with -DNX_TORTURE (and torture.c, see there) it replays each input
 * once per allocation the input makes, failing that allocation: every
 * error path behind an allocation runs under the sanitizers.  Inputs that
 * allocate more than NX_TORTURE_MAX times (default 300) fail an evenly
 * spread subset; NX_TORTURE_AT=N fails only the Nth, NX_TORTURE_TRACE=1
 * names each run on stderr before it starts (to find the one that crashed).
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#ifdef NX_TORTURE
#include "torture.h"

static unsigned long injected;

static unsigned long env_ulong(const char *name, unsigned long dflt)
{
	const char *v = getenv(name);

	return v && *v ? strtoul(v, NULL, 10) : dflt;
}

static void torture(const uint8_t *buf, size_t n, const char *path)
{
	unsigned long total, nth, step, max = env_ulong("NX_TORTURE_MAX", 300);
	unsigned long only = env_ulong("NX_TORTURE_AT", 0);
	int trace = getenv("NX_TORTURE_TRACE") != NULL, did;

	nx_torture_arm(0);
	LLVMFuzzerTestOneInput(buf, n);
	total = nx_torture_disarm(NULL);
	step = max && total > max ? (total + max - 1) / max : 1;
	for (nth = only ? only : 1; nth <= total; nth += step) {
		if (trace)
			fprintf(stderr, "torture: %s, allocation %lu of %lu\n", path, nth, total);
		nx_torture_arm(nth);
		LLVMFuzzerTestOneInput(buf, n);
		nx_torture_disarm(&did);
		injected += (unsigned long)did;
		if (only)
			break;
	}
}
#endif

static int run_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	long n;

	if (!f) {
		perror(path);
		return -1;
	}
	if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
		fclose(f);
		return -1;
	}
	buf = malloc(n ? (size_t)n : 1);
	if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
		free(buf);
		fclose(f);
		return -1;
	}
	fclose(f);
#ifdef NX_TORTURE
	torture(buf, (size_t)n, path);
#else
	LLVMFuzzerTestOneInput(buf, (size_t)n);
#endif
	free(buf);
	return 0;
}

int main(int argc, char **argv)
{
	int i, files = 0, failed = 0;

	for (i = 1; i < argc; i++) {
		struct stat st;
		DIR *d;
		struct dirent *e;

		if (stat(argv[i], &st) != 0) {
			perror(argv[i]);
			return 1;
		}
		if (!S_ISDIR(st.st_mode)) {
			failed += run_file(argv[i]) != 0;
			files++;
			continue;
		}
		if (!(d = opendir(argv[i])))
			return 1;
		while ((e = readdir(d))) {
			char path[4096];

			if (e->d_name[0] == '.')
				continue;
			snprintf(path, sizeof(path), "%s/%s", argv[i], e->d_name);
			failed += run_file(path) != 0;
			files++;
		}
		closedir(d);
	}
#ifdef NX_TORTURE
	printf("tortured %d inputs with %lu failed allocations, %d unreadable\n", files, injected,
	       failed);
#else
	printf("replayed %d inputs, %d unreadable\n", files, failed);
#endif
	return failed ? 1 : 0;
}
