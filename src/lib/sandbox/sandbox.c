/*
 * sandbox.c - spawn a sandboxed program with limits (the confinement is
 * the backend's: sandbox_bwrap.c, sandbox_landlock.c), feed stdin, collect
 * output under a wall-clock deadline and an output cap, and always reap
 * (nexus/sandbox.h).
 *
 * The child only makes system calls between fork and exec (the caller may
 * have threads).  stdin is a socketpair so writes can use MSG_NOSIGNAL: a
 * program that exits without reading must not SIGPIPE the verifier.
 */
#include "sandbox_int.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "nexus/clock.h"
#include "nexus/elf.h"
#include "nexus/fs.h"

#define CHUNK 65536
#define GROUP_WAIT_MS 2000   /* for a killed process group to be gone */

void nx_sandbox_opts_init(struct nx_sandbox_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->bundle_dirfd = -1;
	o->stdin_fd = -1;
	o->out_fd = -1;
	o->as_bytes = NX_SANDBOX_AS_BYTES;
	o->cpu_seconds = NX_SANDBOX_CPU_SECONDS;
	o->fsize_bytes = NX_SANDBOX_FSIZE_BYTES;
	o->nofile = NX_SANDBOX_NOFILE;
	o->nproc = NX_SANDBOX_NPROC;
	o->wall_ms = NX_SANDBOX_WALL_MS;
	o->max_output = NX_SANDBOX_OUTPUT_MAX;
}

void nx_sandbox_result_release(struct nx_sandbox_result *r)
{
	if (!r)
		return;
	free(r->out);
	free(r->errout);
	memset(r, 0, sizeof(*r));
}

static void limit(int res, uint64_t v)
{
	struct rlimit rl = { (rlim_t)v, (rlim_t)v };

	if (v)
		setrlimit(res, &rl);
}

/*
 * Unprivileged bwrap resolves the bundle fd to its path, so the run's uid
 * must be able to reach it; when it cannot (a bundle below a
 * 0700 directory), bwrap keeps running as root and the pid namespace and
 * the timeout, not RLIMIT_NPROC, bound the processes.
 */
static bool reachable_as(bool bundle, uid_t id)
{
	char path[4096];
	ssize_t n;
	bool ok;

	if (!bundle)
		return true;
	n = readlink("/proc/self/fd/3", path, sizeof(path) - 1);
	if (n <= 0)
		return false;
	path[n] = '\0';
	setfsgid(id);
	setfsuid(id);
	ok = faccessat(AT_FDCWD, path, R_OK | X_OK, AT_EACCESS) == 0;
	setfsuid(0);
	setfsgid(0);
	return ok;
}

/*
 * Without a pid namespace (the landlock backend) nothing would take the
 * program's descendants down if the caller itself were killed (a CI job
 * cancelled mid-verify): PR_SET_PDEATHSIG reaches only the direct child, and
 * grandchildren are re-parented to init and run on.  So the forked child
 * stays behind as a small supervisor: it leads the session and process group
 * that the program cannot leave (seccomp denies setsid and setpgid), keeps
 * the caller's uid (root's, when the program gets a uid of its own, so the
 * program cannot signal it), and does nothing but wait.  When the caller
 * dies the kernel sends it SIGTERM and it kills the whole group, itself
 * included, with one kill(0, SIGKILL).  While the caller lives, it exits with
 * the program's status and the caller kills the group as before (reap()).
 * Signal-safe calls only: the caller may have threads.
 */
static void on_orphaned(int sig)
{
	(void)sig;
	kill(0, SIGKILL);
}

/* Returns 0 in the program's process, with *boss the supervisor's pid, or
 * -1 with errno set; the supervisor itself never returns. */
static int supervise(pid_t parent, int nfds, int ew, pid_t *boss)
{
	struct sigaction sa = { .sa_handler = on_orphaned };
	pid_t self = getpid(), prog;
	int st, i;

	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGTERM, &sa, NULL) != 0 || prctl(PR_SET_PDEATHSIG, SIGTERM) != 0)
		return -1;
	if (getppid() != parent)   /* the caller died before the line above */
		kill(0, SIGKILL);
	if ((prog = fork()) < 0)
		return -1;
	if (prog == 0) {
		sa.sa_handler = SIG_DFL;
		*boss = self;
		return sigaction(SIGTERM, &sa, NULL);
	}
	for (i = 0; i < nfds; i++)   /* the caller sees EOF when the program closes them */
		close(i);
	close(NX_SANDBOX_PASS_FD);  /* a passed socket is the program's alone */
	close(ew);
	while (waitpid(prog, &st, 0) < 0)
		if (errno != EINTR)
			_exit(127);
	if (WIFSIGNALED(st)) {
		sa.sa_handler = SIG_DFL;
		sigaction(WTERMSIG(st), &sa, NULL);
		kill(self, WTERMSIG(st));
	}
	_exit(WIFEXITED(st) ? WEXITSTATUS(st) : 127);
}

/* Between fork and exec: system calls only.  On failure write errno to ew. */
static void child(const struct sbx_backend *be, const struct sbx_prep *pr,
		  const struct nx_sandbox_opts *o, int in, int out, int errp, int ew,
		  pid_t parent, uid_t id)
{
	int e = fcntl(ew, F_DUPFD_CLOEXEC, 64), s[5], i, n = 3;
	int pass = o->pass_fd > 0 ? fcntl(o->pass_fd, F_DUPFD, 64) : -1;

	s[0] = fcntl(in, F_DUPFD, 64);
	s[1] = fcntl(out, F_DUPFD, 64);
	s[2] = fcntl(errp, F_DUPFD, 64);
	if (o->bundle_dirfd >= 0 || pr->child_fd >= 0)
		s[n++] = fcntl(o->bundle_dirfd >= 0 ? o->bundle_dirfd : pr->child_fd, F_DUPFD, 64);
	if (pr->child_fd >= 0)
		s[n++] = fcntl(pr->child_fd, F_DUPFD, 64);
	if (e < 0)
		goto fail;
	for (i = 0; i < n; i++)
		if (s[i] < 0 || dup2(s[i], i) != i)
			goto fail;
	if (o->pass_fd > 0 && (pass < 0 || dup2(pass, NX_SANDBOX_PASS_FD) != NX_SANDBOX_PASS_FD))
		goto fail;
	/* everything else goes; n <= 5 < NX_SANDBOX_PASS_FD < 64 <= e */
	if (o->pass_fd > 0) {
		close_range((unsigned)n, NX_SANDBOX_PASS_FD - 1, 0);
		close_range(NX_SANDBOX_PASS_FD + 1, (unsigned)e - 1, 0);
	} else if (e > n) {
		close_range((unsigned)n, (unsigned)e - 1, 0);
	}
	close_range((unsigned)e + 1, ~0u, 0);
	/* A session (and so a process group) of its own: no controlling
	 * terminal, and kill(-pid) reaches everything it starts. */
	if (setsid() < 0)
		goto fail;
	limit(RLIMIT_AS, o->as_bytes);
	limit(RLIMIT_CPU, o->cpu_seconds);
	limit(RLIMIT_FSIZE, o->fsize_bytes);
	limit(RLIMIT_NOFILE, o->nofile);
	limit(RLIMIT_CORE, 0);
	if (!be->init_pidfd && supervise(parent, n, e, &parent) != 0)
		goto fail;
	if (geteuid() == 0 && reachable_as(o->bundle_dirfd >= 0, id)) {
		/* RLIMIT_NPROC is ignored for root: run as a uid of its own. */
		if (setgroups(0, NULL) != 0 || setgid(id) != 0 || setuid(id) != 0)
			goto fail;
	}
	limit(RLIMIT_NPROC, pr->nproc);
	/* After the uid change, which clears it; then re-check the parent. */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
		goto fail;
	be->enter(pr);
fail:
	i = errno;
	if (write(e, &i, sizeof(i)) < 0)
		_exit(127);
	_exit(127);
}

struct pump {
	struct nx_sandbox_result *r;
	const struct nx_sandbox_opts *o;
	size_t total;
	char *inbuf;        /* pending stdin bytes */
	size_t inlen, inoff;
	bool in_eof;
};

static void kill_all(pid_t pid)
{
	kill(-pid, SIGKILL);
	kill(pid, SIGKILL);
}

/* Append to a capture buffer; false when the output cap was hit. */
static bool take(struct pump *p, char **buf, size_t *len, const char *data, size_t n, int fd)
{
	bool stream = fd >= 0;
	size_t room = p->o->max_output - p->total;
	bool ok = n <= room;

	if (!ok)
		n = room;
	p->total += n;
	if (stream) {
		(void)nx_write_all(fd, data, n);   /* best effort: output is not worth failing a run */
		return ok;
	}
	memcpy(*buf + *len, data, n);
	*len += n;
	(*buf)[*len] = '\0';
	return ok;
}

/* Refill the stdin buffer from o->stdin_fd; false at EOF or error. */
static bool refill(struct pump *p)
{
	ssize_t n;

	do
		n = read(p->o->stdin_fd, p->inbuf, CHUNK);
	while (n < 0 && errno == EINTR);
	if (n <= 0)
		return false;
	p->inlen = (size_t)n;
	p->inoff = 0;
	return true;
}

static void pump(struct pump *p, pid_t pid, int in, int out, int errp, double deadline)
{
	char buf[CHUNK];
	struct nx_sandbox_result *r = p->r;

	while (out >= 0 || errp >= 0) {
		struct pollfd fds[4];
		double left = (deadline - nx_now()) * 1000.0;
		int nf = 0, ms = left > 3600e3 ? 3600000 : (int)left, k;  /* no limit: hourly */
		bool want_in = in >= 0 && p->inoff < p->inlen;
		bool want_src = in >= 0 && !want_in && p->o->stdin_fd >= 0 && !p->in_eof;

		if (in >= 0 && !want_in && !want_src) {
			shutdown(in, SHUT_WR);
			close(in);
			in = -1;
		}
		if (ms <= 0) {
			r->timed_out = true;
			kill_all(pid);
			break;
		}
		fds[nf++] = (struct pollfd){ out, POLLIN, 0 };
		fds[nf++] = (struct pollfd){ errp, POLLIN, 0 };
		fds[nf++] = (struct pollfd){ want_in ? in : -1, POLLOUT, 0 };
		fds[nf++] = (struct pollfd){ want_src ? p->o->stdin_fd : -1, POLLIN, 0 };
		k = poll(fds, (nfds_t)nf, ms);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			kill_all(pid);
			break;
		}
		for (int i = 0; i < 2; i++) {
			int *fd = i ? &errp : &out;
			ssize_t n;
			bool ok;

			if (*fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			n = read(*fd, buf, sizeof(buf));
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				close(*fd);
				*fd = -1;
				continue;
			}
			ok = i ? take(p, &r->errout, &r->errout_len, buf, (size_t)n,
				      p->o->err_fd > 0 ? p->o->err_fd : -1)
			       : take(p, &r->out, &r->out_len, buf, (size_t)n, p->o->out_fd);
			if (!ok) {
				r->output_capped = true;
				kill_all(pid);
				goto out;
			}
		}
		if (want_in && (fds[2].revents & (POLLOUT | POLLERR | POLLHUP))) {
			ssize_t n = send(in, p->inbuf + p->inoff, p->inlen - p->inoff,
					 MSG_NOSIGNAL | MSG_DONTWAIT);

			if (n > 0)
				p->inoff += (size_t)n;
			else if (n < 0 && errno != EAGAIN && errno != EINTR)
				p->inoff = p->inlen, p->in_eof = true;   /* reader gone */
		}
		if (want_src && (fds[3].revents & (POLLIN | POLLHUP | POLLERR)) && !refill(p))
			p->in_eof = true;
	}
out:
	if (in >= 0)
		close(in);
	if (out >= 0)
		close(out);
	if (errp >= 0)
		close(errp);
}

/* Kill the sandbox's init (bwrap), which takes its whole pid namespace
 * with it, and wait (bounded) until the namespace is empty. */
static void kill_namespace(int pfd)
{
	struct pollfd pf = { pfd, POLLIN, 0 };

	if (pfd < 0)
		return;
	syscall(SYS_pidfd_send_signal, pfd, SIGKILL, NULL, 0);
	poll(&pf, 1, 10000);
}

/* Reap pid, killing it at the deadline; never returns before it is reaped. */
static void reap(struct nx_sandbox_result *r, pid_t pid, double deadline)
{
	int st = 0;

	for (;;) {
		pid_t w = waitpid(pid, &st, r->timed_out || r->output_capped ? 0 : WNOHANG);

		if (w == pid)
			break;
		if (w < 0 && errno != EINTR)
			return;
		if (w == 0 && nx_now() >= deadline) {
			r->timed_out = true;
			kill_all(pid);
			continue;
		}
		if (w == 0)
			nanosleep(&(struct timespec){ 0, 5000000 }, NULL);
	}
	/* Anything left in the child's process group (the landlock backend has
	 * no pid namespace to take it down) is killed, and waited for (bounded)
	 * until it is gone: the dying still hold the program's file open. */
	for (int i = 0; i < GROUP_WAIT_MS / 5 && kill(-pid, SIGKILL) == 0; i++)
		nanosleep(&(struct timespec){ 0, 5000000 }, NULL);
	r->exited = WIFEXITED(st);
	r->status = r->exited ? WEXITSTATUS(st) : 0;
	r->signal = WIFSIGNALED(st) ? WTERMSIG(st) : 0;
}

static const struct sbx_backend *backend_of(enum nx_sandbox_backend id)
{
	return id == NX_SANDBOX_BACKEND_LANDLOCK ? &nx_sbx__landlock : &nx_sbx__bwrap;
}

static void prep_release(struct sbx_prep *p)
{
	size_t i;

	nx_sbx__args_release(&p->args);
	for (i = 0; p->envp && p->envp[i]; i++)
		free(p->envp[i]);
	free(p->envp);
	free(p->chdir);
	free(p->filter.filter);
	if (p->child_fd >= 0)
		close(p->child_fd);
	if (p->parent_fd >= 0)
		close(p->parent_fd);
	memset(p, 0, sizeof(*p));
	p->child_fd = p->parent_fd = -1;
}

int nx_sandbox_run(struct nx_sandbox_result *out, const struct nx_sandbox_opts *o,
		   nx_error *err)
{
	struct nx_sandbox_result r = {0};
	struct sbx_prep pr = { .child_fd = -1, .parent_fd = -1 };
	struct pump p = { .r = &r, .o = o };
	const struct sbx_backend *be;
	enum nx_sandbox_backend id = o->backend;
	int in[2] = { -1, -1 }, po[2] = { -1, -1 }, pe[2] = { -1, -1 }, ep[2] = { -1, -1 };
	int init = -1;
	double t0 = nx_now(), deadline;
	pid_t pid;
	int rc, cerr = 0;
	uint32_t rnd;
	ssize_t n;

	if (!o->argv || !o->argv[0] || o->argv[0][0] != '/' || !o->max_output)
		return nx_error_set(err, NX_EUSAGE, NULL, 0, -1,
				    "sandbox: argv[0] must be an absolute path inside the sandbox");
	if (id == NX_SANDBOX_AUTO && (rc = nx_sandbox_available(&id, id, o->bwrap, err)) != 0)
		return rc;
	be = backend_of(id);
	if ((rc = be->check(o, err)) != 0 || (rc = be->prepare(&pr, o, err)) != 0)
		goto out;
	pr.nproc = pr.nproc ? pr.nproc : o->nproc;
	/* a streamed output needs no buffer (and a server's cap is large) */
	r.out = malloc(o->out_fd >= 0 ? 1 : o->max_output + 1);
	r.errout = malloc(o->err_fd > 0 ? 1 : o->max_output + 1);
	p.inbuf = o->stdin_fd >= 0 ? malloc(CHUNK) : (char *)o->stdin_data;
	p.inlen = o->stdin_fd >= 0 ? 0 : o->stdin_len;
	if (!r.out || !r.errout || (o->stdin_fd >= 0 && !p.inbuf)) {
		rc = nx_error_oom(err, NULL);
		goto out;
	}
	r.out[0] = r.errout[0] = '\0';
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, in) != 0 ||
	    pipe2(po, O_CLOEXEC) != 0 || pipe2(pe, O_CLOEXEC) != 0 || pipe2(ep, O_CLOEXEC) != 0) {
		rc = nx_error_errno(err, NX_EIO, errno, NULL, "cannot create sandbox pipes");
		goto out;
	}
	if (getrandom(&rnd, sizeof(rnd), 0) != sizeof(rnd))
		rnd = (uint32_t)getpid() * 2654435761u ^ (uint32_t)nx_now();
	pid = fork();
	if (pid < 0) {
		rc = nx_error_errno(err, NX_EIO, errno, NULL, "cannot fork the sandbox");
		goto out;
	}
	if (pid == 0)
		child(be, &pr, o, in[1], po[1], pe[1], ep[1], getppid(),
		      (uid_t)(NX_SANDBOX_UID_BASE + rnd % NX_SANDBOX_UID_SPAN));
	close(in[1]), close(po[1]), close(pe[1]), close(ep[1]);
	in[1] = po[1] = pe[1] = ep[1] = -1;
	if (pr.child_fd >= 0)
		close(pr.child_fd);
	pr.child_fd = -1;
	do
		n = read(ep[0], &cerr, sizeof(cerr));
	while (n < 0 && errno == EINTR);
	deadline = o->wall_ms ? nx_now() + (double)o->wall_ms / 1000.0 : INFINITY;
	if (n == (ssize_t)sizeof(cerr)) {
		close(in[0]), close(po[0]), close(pe[0]);
		in[0] = po[0] = pe[0] = -1;
		reap(&r, pid, deadline);
		rc = nx_error_errno(err, NX_EDEP, cerr, o->argv[0], "cannot start the %s sandbox",
				    nx_sandbox_backend_name(id));
		goto out;
	}
	init = be->init_pidfd ? be->init_pidfd(&pr, deadline) : -1;
	pump(&p, pid, in[0], po[0], pe[0], deadline);
	in[0] = po[0] = pe[0] = -1;
	if (r.timed_out || r.output_capped)
		kill_namespace(init);
	reap(&r, pid, deadline);
	kill_namespace(init);   /* stragglers that closed their output */
	if (init >= 0)
		close(init);
	r.seconds = nx_now() - t0;
	*out = r;
	memset(&r, 0, sizeof(r));
	rc = 0;
out:
	for (int i = 0; i < 2; i++) {
		if (in[i] >= 0)
			close(in[i]);
		if (po[i] >= 0)
			close(po[i]);
		if (pe[i] >= 0)
			close(pe[i]);
		if (ep[i] >= 0)
			close(ep[i]);
	}
	if (o->stdin_fd >= 0)
		free(p.inbuf);
	nx_sandbox_result_release(&r);
	prep_release(&pr);
	return rc;
}

const char *nx_sandbox_backend_name(enum nx_sandbox_backend b)
{
	return b == NX_SANDBOX_BACKEND_BWRAP ? "bwrap" :
	       b == NX_SANDBOX_BACKEND_LANDLOCK ? "landlock" : "auto";
}

int nx_sandbox_backend_parse(enum nx_sandbox_backend *out, const char *s, nx_error *err)
{
	static const enum nx_sandbox_backend all[] = {
		NX_SANDBOX_AUTO, NX_SANDBOX_BACKEND_BWRAP, NX_SANDBOX_BACKEND_LANDLOCK,
	};

	for (size_t i = 0; s && i < sizeof(all) / sizeof(all[0]); i++)
		if (!strcmp(s, nx_sandbox_backend_name(all[i]))) {
			*out = all[i];
			return 0;
		}
	return nx_error_set(err, NX_EUSAGE, NULL, 0, -1,
			    "unknown sandbox '%s': use auto, bwrap or landlock", s ? s : "");
}

/* Run /usr/bin/true under backend id: 0 when it exits 0. */
static int probe(enum nx_sandbox_backend id, const char *bwrap, nx_error *err)
{
	static const char *const argv[] = { "/usr/bin/true", NULL };
	const char *bins[] = { "/usr/bin/true" };
	struct nx_sandbox_opts o;
	struct nx_sandbox_result r = {0};
	char **libs = NULL, **paths = NULL;
	size_t nlibs = 0, i;
	int rc;

	rc = nx_elf_closure(&libs, &nlibs, bins, 1, NULL, err);
	if (rc)
		return rc == NX_EIO ? nx_error_set(err, NX_EDEP, "/usr/bin/true", 0, -1,
						   "cannot probe the sandbox: /usr/bin/true is missing")
				    : rc;
	paths = calloc(nlibs + 2, sizeof(*paths));
	if (!paths) {
		rc = nx_error_oom(err, NULL);
		goto out;
	}
	for (i = 0; i < nlibs; i++)
		paths[i] = libs[i];
	paths[nlibs] = (char *)"/usr/bin/true";
	nx_sandbox_opts_init(&o);
	o.backend = id;
	o.bwrap = bwrap;
	o.argv = argv;
	o.ro_paths = (const char *const *)paths;
	o.wall_ms = 10000;
	o.max_output = 65536;
	rc = nx_sandbox_run(&r, &o, err);
	if (rc)
		goto out;
	if (!r.exited || r.status != 0) {
		size_t len = strcspn(r.errout, "\n");

		rc = nx_error_set(err, NX_EDEP, NULL, 0, -1, "%s cannot start a program here (%.*s)",
				  nx_sandbox_backend_name(id), (int)(len > 300 ? 300 : len),
				  r.timed_out ? "timed out" : r.errout[0] ? r.errout : "no message");
	}
out:
	nx_sandbox_result_release(&r);
	free(paths);
	nx_elf_closure_free(libs, nlibs);
	return rc;
}

#define BWRAP_HOWTO "enable unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1; " \
	"on Ubuntu 24.04 kernel.apparmor_restrict_unprivileged_userns=0 or an AppArmor profile " \
	"that allows userns for bwrap; in a container, a seccomp/AppArmor profile that allows " \
	"unshare(CLONE_NEWUSER)) and install bubblewrap"

int nx_sandbox_available(enum nx_sandbox_backend *out, enum nx_sandbox_backend want,
			 const char *bwrap, nx_error *err)
{
	nx_error why_bwrap, why_ll;
	int rc;

	nx_error_clear(&why_bwrap);
	nx_error_clear(&why_ll);
	if (want != NX_SANDBOX_BACKEND_LANDLOCK) {
		rc = probe(NX_SANDBOX_BACKEND_BWRAP, bwrap, &why_bwrap);
		if (!rc || (rc != NX_EDEP && rc != NX_EIO)) {
			if (!rc)
				*out = NX_SANDBOX_BACKEND_BWRAP;
			else if (err)
				*err = why_bwrap;
			return rc;
		}
		if (want == NX_SANDBOX_BACKEND_BWRAP)
			return nx_error_set(err, NX_EDEP, NULL, 0, -1, "no bwrap sandbox: %s; "
					    BWRAP_HOWTO, why_bwrap.message);
	}
	rc = probe(NX_SANDBOX_BACKEND_LANDLOCK, NULL, &why_ll);
	if (!rc) {
		*out = NX_SANDBOX_BACKEND_LANDLOCK;
		return 0;
	}
	if (want == NX_SANDBOX_BACKEND_LANDLOCK)
		return nx_error_set(err, NX_EDEP, NULL, 0, -1, "no landlock sandbox: %s",
				    why_ll.message);
	return nx_error_set(err, NX_EDEP, NULL, 0, -1,
			    "no sandbox can run here: bwrap: %s - to use it, " BWRAP_HOWTO
			    "; landlock: %s", why_bwrap.message, why_ll.message);
}

void nx_sandbox_scale(struct nx_sandbox_opts *o, uint64_t model_bytes, uint64_t memory)
{
	uint64_t gib = (model_bytes >> 30) + !!(model_bytes & ((1ull << 30) - 1)), as;
	uint64_t secs;

	if (gib > NX_SANDBOX_SCALE_GIB_MAX)
		gib = NX_SANDBOX_SCALE_GIB_MAX;
	secs = NX_SANDBOX_CPU_SECONDS + NX_SANDBOX_SECONDS_PER_GIB * gib;

	as = model_bytes > (UINT64_MAX - NX_SANDBOX_AS_BASE) / NX_SANDBOX_AS_PER_MODEL ? UINT64_MAX :
	     NX_SANDBOX_AS_BASE + NX_SANDBOX_AS_PER_MODEL * model_bytes;
	o->as_bytes = memory ? memory : as > NX_SANDBOX_AS_BYTES ? as : NX_SANDBOX_AS_BYTES;
	o->cpu_seconds = secs;
	o->wall_ms += NX_SANDBOX_SECONDS_PER_GIB * gib * 1000;
}

const char *nx_sandbox_limit_hit(char *buf, size_t n, const struct nx_sandbox_result *r,
				 const struct nx_sandbox_opts *o)
{
	static const char *const oom[] = {
		"bad_alloc", "MemoryError", "Cannot allocate memory", "out of memory",
		"Failed to allocate",
	};
	int sig = r->exited ? (r->status > 128 ? r->status - 128 : 0) : r->signal;
	size_t i;

	if (r->timed_out) {
		snprintf(buf, n, "the wall-clock limit (%.0f s)", (double)o->wall_ms / 1000.0);
		return buf;
	}
	if (sig == SIGXCPU) {
		snprintf(buf, n, "the CPU time limit (RLIMIT_CPU = %llu s)",
			 (unsigned long long)o->cpu_seconds);
		return buf;
	}
	if (sig == SIGXFSZ) {
		snprintf(buf, n, "the file size limit (RLIMIT_FSIZE = %llu MiB)",
			 (unsigned long long)(o->fsize_bytes >> 20));
		return buf;
	}
	for (i = 0; r->errout && (!r->exited || r->status) && i < sizeof(oom) / sizeof(oom[0]); i++)
		if (strstr(r->errout, oom[i])) {
			snprintf(buf, n, "the memory limit (RLIMIT_AS = %.1f GiB)",
				 (double)o->as_bytes / (double)(1ull << 30));
			return buf;
		}
	return NULL;
}
