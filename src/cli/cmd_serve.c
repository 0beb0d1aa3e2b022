/*
 * cmd_serve.c - `nexus serve BUNDLE`: the bundle's own `bin/nexus_cli serve`
 * inside the sandbox of `nexus run` (TRV-5).  The sandbox has no network
 * (bwrap: a network namespace of its own; landlock: socket(2) denied), so
 * this process binds the listening socket outside it and passes it in as
 * descriptor NX_SANDBOX_PASS_FD: the server can accept connections on it and
 * do nothing else with the network (docs/DESIGN-NOTES.md, "nexus serve").
 * It cannot signal the server either (a pid namespace or another uid), so
 * SIGTERM/SIGINT here close the server's standard input, which it takes as
 * its stop request (--stop-on-eof): it drains and exits, and so do we.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "nexus/net.h"
#include "nexus/sandbox.h"

#define SERVE_MHD_SONAME "libmicrohttpd.so.12"
#define SERVE_THREAD_STACK (8ull << 20)   /* address space per connection thread */
#define SERVE_ARGS_MAX 32

enum { OPT_LISTEN = 1, OPT_PORT, OPT_UNIX, OPT_READY, OPT_SANDBOX, OPT_SANDBOX_MEMORY,
       OPT_QUEUE, OPT_MAXBATCH, OPT_MAXWAIT, OPT_MAXBODY, OPT_TIMEOUT, OPT_MAXCONN };

static const struct cli_opt opts[] = {
	{ "listen", 0, "ADDR", "numeric address to listen on (default 127.0.0.1)", OPT_LISTEN },
	{ "port", 'p', "N", "TCP port (default 8080; 0 picks a free one)", OPT_PORT },
	{ "unix", 0, "PATH", "listen on a unix socket at PATH instead of TCP", OPT_UNIX },
	{ "ready-file", 0, "FILE", "write the bound port (or socket path) there once listening",
	  OPT_READY },
	/* handed to nexus_cli serve as they are (it checks them) */
	{ "queue", 0, "N", "texts waiting at most; beyond: 503 (default 1024)", OPT_QUEUE },
	{ "max-batch", 0, "N", "texts per inference (default: runtime.yaml batch_size)", OPT_MAXBATCH },
	{ "max-wait-ms", 0, "MS", "how long a text waits for others to batch with (default 5)",
	  OPT_MAXWAIT },
	{ "max-body", 0, "BYTES", "request body cap; beyond: 413 (default 1048576)", OPT_MAXBODY },
	{ "timeout", 0, "S", "drop a connection idle that long (default 30)", OPT_TIMEOUT },
	{ "max-connections", 0, "N", "open connections at most (default 256)", OPT_MAXCONN },
	{ "sandbox", 0, "NAME", CLI_SANDBOX_HELP, OPT_SANDBOX },
	{ "sandbox-memory", 0, "SIZE", CLI_SANDBOX_MEMORY_HELP, OPT_SANDBOX_MEMORY },
	{0},
};

/* The write end of the server's stdin: closing it stops the server. */
static volatile int stop_fd = -1;

static void on_stop(int sig)
{
	int fd = stop_fd;

	(void)sig;
	stop_fd = -1;
	if (fd >= 0)
		close(fd);
}

/* The host's libmicrohttpd, which nexus_cli serve dlopens: the sandbox
 * shows it (and what it needs) only when named.  Loaded here to learn its
 * path as the dynamic linker finds it; a host library, trusted as ours. */
static char *find_mhd(nx_error *err)
{
	void *h = dlopen(SERVE_MHD_SONAME, RTLD_LAZY | RTLD_LOCAL);
	struct link_map *lm = NULL;
	char *path = NULL;

	if (!h) {
		nx_error_set(err, NX_EDEP, NULL, 0, -1, "serve needs %s (Debian package "
			     "libmicrohttpd12): %s", SERVE_MHD_SONAME, dlerror());
		return NULL;
	}
	/* the path as found (the soname's symlink), which the sandbox
	 * reproduces with its chain, so that the same dlopen finds it there */
	if (dlinfo(h, RTLD_DI_LINKMAP, &lm) == 0 && lm && lm->l_name && lm->l_name[0] == '/')
		path = strdup(lm->l_name);
	dlclose(h);
	if (!path)
		nx_error_set(err, NX_EDEP, NULL, 0, -1, "cannot tell where %s is", SERVE_MHD_SONAME);
	return path;
}

static int serve(const struct cli_verb *verb, int argc, char **argv)
{
	static const char *const names[] = {
		[OPT_QUEUE] = "--queue", [OPT_MAXBATCH] = "--max-batch",
		[OPT_MAXWAIT] = "--max-wait-ms", [OPT_MAXBODY] = "--max-body",
		[OPT_TIMEOUT] = "--timeout", [OPT_MAXCONN] = "--max-connections",
	};
	const char *args[SERVE_ARGS_MAX], *listen_addr = "127.0.0.1", *unix_path = NULL;
	const char *ready = NULL, *sandbox = NULL, *sandbox_mem = NULL, *extra[2] = { NULL, NULL };
	struct nx_sandbox_result r = {0};
	struct nx_sandbox_opts so;
	struct cli_parser p;
	struct sigaction sa = { .sa_handler = on_stop };
	struct stat made;
	char fdnum[16], where[4200];
	long port = 8080, bound = 0, maxconn = 256;
	uint64_t memory = 0;
	int k, n = 0, dirfd = -1, sock = -1, pipefd[2] = { -1, -1 }, rc;
	bool tcp_given = false, unlink_sock = false;
	char *mhd = NULL, *end;
	nx_error err;

	args[n++] = "serve";
	args[n++] = "--listen-fd";
	snprintf(fdnum, sizeof(fdnum), "%d", NX_SANDBOX_PASS_FD);
	args[n++] = fdnum;
	args[n++] = "--stop-on-eof";
	cli_init(&p, verb, argc, argv);
	while ((k = cli_next(&p)) > 0) {
		switch (k) {
		case OPT_LISTEN: listen_addr = p.optarg; tcp_given = true; break;
		case OPT_PORT:
			port = strtol(p.optarg, &end, 10);
			if (*end || !*p.optarg || port < 0 || port > 65535)
				return cli_usage(verb, "--port needs a number from 0 to 65535");
			tcp_given = true;
			break;
		case OPT_UNIX: unix_path = p.optarg; break;
		case OPT_READY: ready = p.optarg; break;
		case OPT_SANDBOX: sandbox = p.optarg; break;
		case OPT_SANDBOX_MEMORY: sandbox_mem = p.optarg; break;
		default:
			if (n + 2 >= SERVE_ARGS_MAX)
				return cli_usage(verb, "too many options");
			if (k == OPT_MAXCONN && ((maxconn = strtol(p.optarg, &end, 10)) < 1 ||
						 maxconn > 4096 || *end))
				return cli_usage(verb, "--max-connections needs a number from 1 to 4096");
			args[n++] = names[k];
			args[n++] = p.optarg;
		}
	}
	args[n] = NULL;
	if (k < 0)
		return k == -1 ? 0 : 2;
	if (p.npos != 1)
		return cli_usage(verb, "expected one BUNDLE argument");
	if (unix_path && tcp_given)
		return cli_usage(verb, "give --unix or --listen/--port, not both");
	nx_sandbox_opts_init(&so);
	if ((rc = cli_sandbox_opts(verb, &so.backend, sandbox, &memory, sandbox_mem)))
		return rc;
	nx_error_clear(&err);
	if (!(mhd = find_mhd(&err)))
		goto fail;
	dirfd = open(p.pos[0], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dirfd < 0) {
		nx_error_errno(&err, NX_EIO, errno, p.pos[0], "cannot open bundle %s", p.pos[0]);
		goto fail;
	}
	sock = unix_path ? nx_listen_unix(unix_path, &err)
			 : nx_listen_tcp(listen_addr, port, &bound, &err);
	if (sock < 0)
		goto fail;
	unlink_sock = unix_path && !stat(unix_path, &made);
	if (unix_path)
		snprintf(where, sizeof(where), "%s", unix_path);
	else
		snprintf(where, sizeof(where), "%ld", bound);
	fprintf(stderr, "nexus serve: listening on %s%s%s\n", unix_path ? "unix socket " : listen_addr,
		unix_path ? "" : " port ", where);
	if (ready && nx_ready_file_write(ready, where, &err))
		goto fail;
	if (pipe2(pipefd, O_CLOEXEC)) {
		nx_error_errno(&err, NX_EIO, errno, NULL, "cannot create a pipe");
		goto fail;
	}
	stop_fd = pipefd[1];
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	so.bundle_dirfd = dirfd;
	so.stdin_fd = pipefd[0];
	so.out_fd = 1;
	so.err_fd = 2;
	so.pass_fd = sock;
	extra[0] = mhd;
	so.ro_paths = extra;
	nx_sandbox_scale(&so, cli_model_bytes(dirfd), memory);
	/* a server: no clock, no CPU budget, no output cap; a thread (and
	 * its stack) and two descriptors per connection */
	so.wall_ms = 0;
	so.cpu_seconds = 0;
	so.max_output = SIZE_MAX / 2;
	so.nproc += (uint64_t)maxconn;
	so.nofile += 2 * (uint64_t)maxconn;
	if (!memory)
		so.as_bytes += (uint64_t)maxconn * SERVE_THREAD_STACK;
	fflush(stdout);
	if ((rc = nx_sandbox_run_cli(&r, &so, p.pos[0], args, &err)))
		goto fail;
	rc = r.exited ? r.status : 1;
	if (!r.exited)
		fprintf(stderr, "nexus serve: the server was killed (signal %d)\n", r.signal);
	goto out;
fail:
	rc = cli_fail(verb->name, &err);
out:
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	on_stop(0);
	nx_sandbox_result_release(&r);
	if (pipefd[0] >= 0)
		close(pipefd[0]);
	if (sock >= 0)
		close(sock);
	{
		struct stat now;

		if (unlink_sock && !stat(unix_path, &now) && now.st_dev == made.st_dev &&
		    now.st_ino == made.st_ino)
			unlink(unix_path);
	}
	if (ready && rc)
		unlink(ready);
	if (dirfd >= 0)
		close(dirfd);
	free(mhd);
	return rc;
}

const struct cli_verb cmd_serve = {
	.name = "serve",
	.args = "BUNDLE",
	.summary = "serve a bundle's model over HTTP, its nexus_cli inside the sandbox",
	.details = "Binds the listening socket (127.0.0.1:8080 unless --listen/--port, or a\n"
		   "unix socket with --unix), then runs BUNDLE/bin/nexus_cli serve in the sandbox\n"
		   "of nexus run with that socket passed in: no other network, only the bundle\n"
		   "and the ELF closure of nexus_cli and libmicrohttpd visible, no wall-clock\n"
		   "limit.  SIGTERM or SIGINT make the server drain and exit.  The HTTP API is\n"
		   "nexus_cli(1)'s.",
	.opts = opts,
	.run = serve,
};
