/*
 * sandbox_bwrap.c - the bubblewrap backend of nexus/sandbox.h: namespaces
 * built by /usr/bin/bwrap from the command line of sandbox_args.c.
 */
#include "sandbox_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "nexus/clock.h"

static const char *bwrap_of(const struct nx_sandbox_opts *o)
{
	return o->bwrap ? o->bwrap : NX_SANDBOX_BWRAP;
}

static int check(const struct nx_sandbox_opts *o, nx_error *err)
{
	if (access(bwrap_of(o), X_OK) != 0)
		return nx_error_errno(err, NX_EDEP, errno, bwrap_of(o),
				      "bubblewrap not found at %s; install the bubblewrap package",
				      bwrap_of(o));
	return 0;
}

/* bwrap gets the bundle as fd 3 and reports its init's pid on fd 4. */
static int prepare(struct sbx_prep *p, const struct nx_sandbox_opts *o, nx_error *err)
{
	int info[2], rc;

	rc = nx_sbx__args_build(&p->args, o, o->bundle_dirfd >= 0 ? 3 : -1, err);
	if (rc)
		return rc;
	if (!(p->envp = calloc(1, sizeof(*p->envp))))
		return nx_error_oom(err, NULL);
	if (pipe2(info, O_CLOEXEC) != 0)
		return nx_error_errno(err, NX_EIO, errno, NULL, "cannot create sandbox pipes");
	p->parent_fd = info[0];
	p->child_fd = info[1];
	return 0;
}

static void enter(const struct sbx_prep *p)
{
	execve(p->args.v[0], p->args.v, p->envp);
}

/* A pidfd of the sandbox's init (pid from bwrap --info-fd), or -1.  Taken
 * at once so that later signals can never reach a recycled pid. */
static int init_pidfd(struct sbx_prep *p, double deadline)
{
	char buf[512];
	size_t len = 0;
	const char *s;
	long pid;

	for (;;) {
		struct pollfd pf = { p->parent_fd, POLLIN, 0 };
		int ms = (int)((deadline - nx_now()) * 1000.0);
		ssize_t n;

		if (ms <= 0 || poll(&pf, 1, ms) <= 0)
			break;
		n = read(p->parent_fd, buf + len, sizeof(buf) - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
		if (len == sizeof(buf) - 1)
			break;
	}
	buf[len] = '\0';
	s = strstr(buf, "\"child-pid\":");
	if (!s)
		return -1;
	errno = 0;
	pid = strtol(s + strlen("\"child-pid\":"), NULL, 10);
	if (errno || pid <= 0 || pid > INT_MAX)
		return -1;
	return (int)syscall(SYS_pidfd_open, (pid_t)pid, 0);
}

const struct sbx_backend nx_sbx__bwrap = {
	.id = NX_SANDBOX_BACKEND_BWRAP,
	.check = check,
	.prepare = prepare,
	.enter = enter,
	.init_pidfd = init_pidfd,
};
