/*
 * sandbox_landlock.c - the Landlock + seccomp backend of nexus/sandbox.h,
 * for hosts where bubblewrap cannot create user namespaces.
 *
 * The parent builds everything (the Landlock ruleset, a file descriptor,
 * and the seccomp BPF of sandbox_seccomp.c); the child only has to drop
 * capabilities, set PR_SET_NO_NEW_PRIVS, restrict itself and exec.
 *
 * What each Landlock ABI gives (all handled rights are denied unless a rule
 * grants them; rules grant read/execute only):
 *   1  (5.13) files: execute, read, write, readdir, remove, make-*
 *   2  (5.19) + refer (link/rename across directories)
 *   3  (6.2)  + truncate
 *   4  (6.7)  + TCP bind/connect denied (seccomp denies sockets anyway)
 *   5  (6.10) + ioctl on device files
 *   6  (6.12) + scoped: no signals to, no abstract UNIX sockets of, any
 *               process outside the sandbox
 *   7  (6.15) audit flags only: nothing more to ask for
 * With ABI 1-5 a sandboxed program that keeps the caller's uid (a caller
 * that is not root, or root when the run's uid cannot reach the bundle) can
 * still signal the caller's other processes; the process group kill and
 * RLIMIT_NPROC still hold.  No Landlock at all: not usable.
 */
#include "sandbox_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/landlock.h>
#include <linux/seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_landlock_create_ruleset
#define SYS_landlock_create_ruleset 444
#define SYS_landlock_add_rule 445
#define SYS_landlock_restrict_self 446
#endif
#ifndef LANDLOCK_ACCESS_FS_REFER
#define LANDLOCK_ACCESS_FS_REFER (1ULL << 13)
#endif
#define LL_FS_TRUNCATE (1ULL << 14)         /* ABI 3 */
#define LL_FS_IOCTL_DEV (1ULL << 15)        /* ABI 5 */
#define LL_NET_BIND_TCP (1ULL << 0)         /* ABI 4 */
#define LL_NET_CONNECT_TCP (1ULL << 1)
#define LL_SCOPE_ABSTRACT_UNIX (1ULL << 0)  /* ABI 6 */
#define LL_SCOPE_SIGNAL (1ULL << 1)

#define LL_READ_FILE (LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_EXECUTE)
#define LL_READ_DIR (LL_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR)
#define TASKS_MAX 100000   /* /proc entries read counting the caller's tasks */

/* The ruleset attribute as of ABI 6; older kernels take it while the fields
 * they do not know are zero. */
struct ll_ruleset_attr {
	uint64_t handled_access_fs;
	uint64_t handled_access_net;
	uint64_t scoped;
};

/* Host devices a program may open (read; /dev/null also write). */
static const char *const devices[] = { "/dev/null", "/dev/zero", "/dev/random", "/dev/urandom" };

int nx_sandbox_landlock_abi(void)
{
	long v = syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);

	return v > 0 ? (int)v : 0;
}

static int check(const struct nx_sandbox_opts *o, nx_error *err)
{
	long v = syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);

	(void)o;
	if (v < 1)
		return nx_error_errno(err, NX_EDEP, errno, NULL,
				      "Landlock is not enabled in this kernel; boot Linux 5.13 or "
				      "later with CONFIG_SECURITY_LANDLOCK=y and landlock in the lsm= "
				      "boot parameter (or CONFIG_LSM)");
	if (prctl(PR_GET_SECCOMP, 0, 0, 0, 0) < 0)
		return nx_error_errno(err, NX_EDEP, errno, NULL,
				      "this kernel has no seccomp filters (CONFIG_SECCOMP_FILTER)");
	return 0;
}

static uint64_t fs_rights(int abi)
{
	uint64_t r = (LANDLOCK_ACCESS_FS_MAKE_SYM << 1) - 1;   /* ABI 1 */

	if (abi >= 2)
		r |= LANDLOCK_ACCESS_FS_REFER;
	if (abi >= 3)
		r |= LL_FS_TRUNCATE;
	if (abi >= 5)
		r |= LL_FS_IOCTL_DEV;
	return r;
}

/* Grant `access` beneath the object open at fd (a file: its file rights). */
static int grant_fd(int ruleset, int fd, uint64_t access, const char *what, nx_error *err)
{
	struct landlock_path_beneath_attr pb = { .allowed_access = access, .parent_fd = fd };
	struct stat st;

	if (fstat(fd, &st) != 0)
		return nx_error_errno(err, NX_EIO, errno, what, "cannot stat %s", what);
	if (!S_ISDIR(st.st_mode))
		pb.allowed_access &= ~(uint64_t)LANDLOCK_ACCESS_FS_READ_DIR;
	if (syscall(SYS_landlock_add_rule, ruleset, LANDLOCK_RULE_PATH_BENEATH, &pb, 0) != 0)
		return nx_error_errno(err, NX_EIO, errno, what, "cannot grant %s to the sandbox", what);
	return 0;
}

static int grant(int ruleset, const char *path, uint64_t access, bool optional, nx_error *err)
{
	int fd = open(path, O_PATH | O_CLOEXEC), rc;

	if (fd < 0)
		return optional ? 0 : nx_error_errno(err, NX_EIO, errno, path,
						      "cannot grant %s to the sandbox", path);
	rc = grant_fd(ruleset, fd, access, path, err);
	close(fd);
	return rc;
}

/* s with a sandbox path prefix (NX_SANDBOX_BUNDLE, a ro_map destination)
 * replaced by the host path it stands for; a copy of s otherwise.  *rel is
 * the part after "<bundle>/" when s names something below the bundle. */
static char *translate(const char *s, const char *bundle, const struct nx_sandbox_opts *o,
		       const char **rel)
{
	size_t i, n;
	char *out;

	*rel = NULL;
	n = strlen(NX_SANDBOX_BUNDLE);
	if (bundle && !strncmp(s, NX_SANDBOX_BUNDLE, n) && (s[n] == '/' || !s[n])) {
		if (asprintf(&out, "%s%s", bundle, s + n) < 0)
			return NULL;
		*rel = s[n] ? out + strlen(bundle) + 1 : NULL;
		return out;
	}
	for (i = 0; o->ro_map && o->ro_map[i] && o->ro_map[i + 1]; i += 2) {
		n = strlen(o->ro_map[i + 1]);
		if (!strncmp(s, o->ro_map[i + 1], n) && (s[n] == '/' || !s[n]))
			return asprintf(&out, "%s%s", o->ro_map[i], s + n) < 0 ? NULL : out;
	}
	return strdup(s);
}

/* Tasks (threads included) whose real uid is uid: RLIMIT_NPROC counts them. */
static uint64_t tasks_of(uid_t uid)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	uint64_t n = 0;
	unsigned seen = 0;

	while (d && (e = readdir(d)) && seen++ < TASKS_MAX) {
		char path[300], buf[2048];
		unsigned long ruid, threads;
		const char *u, *t;
		ssize_t len;
		int fd;

		if (e->d_name[0] < '1' || e->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/status", e->d_name);
		if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
			continue;
		len = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (len <= 0)
			continue;
		buf[len] = '\0';
		u = strstr(buf, "\nUid:");
		t = strstr(buf, "\nThreads:");
		if (u && t && sscanf(u, "\nUid: %lu", &ruid) == 1 &&
		    sscanf(t, "\nThreads: %lu", &threads) == 1 && ruid == uid)
			n += threads;
	}
	if (d)
		closedir(d);
	return n;
}

static int ruleset(int *out, int abi, const struct nx_sandbox_opts *o, nx_error *err)
{
	struct ll_ruleset_attr attr = { .handled_access_fs = fs_rights(abi) };
	size_t i;
	int fd, rc = 0;

	if (abi >= 4)
		attr.handled_access_net = LL_NET_BIND_TCP | LL_NET_CONNECT_TCP;
	if (abi >= 6)
		attr.scoped = LL_SCOPE_ABSTRACT_UNIX | LL_SCOPE_SIGNAL;
	fd = (int)syscall(SYS_landlock_create_ruleset, &attr, sizeof(attr), 0);
	if (fd < 0)
		return nx_error_errno(err, NX_EDEP, errno, NULL, "cannot create a Landlock ruleset");
	if (o->bundle_dirfd >= 0)
		rc = grant_fd(fd, o->bundle_dirfd, LL_READ_DIR, "the bundle", err);
	for (i = 0; !rc && o->ro_paths && o->ro_paths[i]; i++) {
		if (i >= NX_SANDBOX_PATHS_MAX)
			rc = nx_error_set(err, NX_ELIMIT, NULL, 0, -1, "more than %d sandbox paths",
					  NX_SANDBOX_PATHS_MAX);
		else if (o->ro_paths[i][0] != '/')
			rc = nx_error_set(err, NX_EUNSAFE, o->ro_paths[i], 0, -1,
					  "sandbox path %s is not absolute", o->ro_paths[i]);
		else
			rc = grant(fd, o->ro_paths[i], LL_READ_DIR, false, err);
	}
	for (i = 0; !rc && o->ro_map && o->ro_map[i] && o->ro_map[i + 1]; i += 2)
		rc = grant(fd, o->ro_map[i], LL_READ_DIR, false, err);
	if (!rc)   /* ONNX Runtime sizes its thread pools from it */
		rc = grant(fd, "/sys/devices/system/cpu", LANDLOCK_ACCESS_FS_READ_FILE |
			   LANDLOCK_ACCESS_FS_READ_DIR, true, err);
	for (i = 0; !rc && i < sizeof(devices) / sizeof(devices[0]); i++)
		rc = grant(fd, devices[i], LANDLOCK_ACCESS_FS_READ_FILE |
			   (i == 0 ? LANDLOCK_ACCESS_FS_WRITE_FILE : 0), true, err);
	if (rc)
		close(fd);
	else
		*out = fd;
	return rc;
}

static int prepare(struct sbx_prep *p, const struct nx_sandbox_opts *o, nx_error *err)
{
	char bundle[4096], link[64];
	const char *rel = NULL, *cwd;
	size_t i, n;
	ssize_t len;
	int rc;

	p->abi = nx_sandbox_landlock_abi();
	if (o->bundle_dirfd >= 0) {
		snprintf(link, sizeof(link), "/proc/self/fd/%d", o->bundle_dirfd);
		len = readlink(link, bundle, sizeof(bundle) - 1);
		if (len <= 0)
			return nx_error_errno(err, NX_EIO, errno, NULL, "cannot find the bundle's path");
		bundle[len] = '\0';
	}
	for (i = 0; o->argv[i]; i++) {
		char *t = translate(o->argv[i], o->bundle_dirfd >= 0 ? bundle : NULL, o, &rel);

		rc = t ? sbx_args_push(&p->args, t, err)
		       : nx_error_set(err, NX_ENOMEM, NULL, 0, -1, "out of memory");
		if (!rc && i == 0 && rel)   /* executed from the bundle's fd, not its path */
			p->exec_rel = p->args.v[0] + (rel - t);
		free(t);
		if (rc)
			return rc;
	}
	for (n = 0; o->env && o->env[n]; n++)
		;
	if (!(p->envp = calloc(n + 1, sizeof(*p->envp))))
		return nx_error_set(err, NX_ENOMEM, NULL, 0, -1, "out of memory");
	for (i = 0; i < n; i++)
		if (!(p->envp[i] = strdup(o->env[i])))
			return nx_error_set(err, NX_ENOMEM, NULL, 0, -1, "out of memory");
	cwd = o->chdir ? o->chdir : o->bundle_dirfd >= 0 ? NX_SANDBOX_BUNDLE : "/";
	if (!(p->chdir = translate(cwd, o->bundle_dirfd >= 0 ? bundle : NULL, o, &rel)))
		return nx_error_set(err, NX_ENOMEM, NULL, 0, -1, "out of memory");
	if (!strcmp(cwd, NX_SANDBOX_BUNDLE) && o->bundle_dirfd >= 0) {   /* fchdir to its fd */
		free(p->chdir);
		p->chdir = NULL;
	} else if (strcmp(p->chdir, cwd) == 0 && strcmp(cwd, "/") != 0) {
		/* Somewhere of the host nobody granted (the bwrap backend's private
		 * /tmp): start at / instead, which shows nothing either. */
		strcpy(p->chdir, "/");
	}
	if ((rc = ruleset(&p->child_fd, p->abi, o, err)) != 0)
		return rc;
	if ((rc = sbx_seccomp_build(&p->filter, err)) != 0)
		return rc;
	/* RLIMIT_NPROC counts every task of the uid; a caller that keeps its
	 * own (not root) gets nproc on top of what it already runs. */
	if (geteuid() != 0)
		p->nproc = o->nproc + tasks_of(getuid());
	return 0;
}

/* Child, after the common setup: fd 3 the bundle, fd 4 the ruleset. */
static void enter(const struct sbx_prep *p)
{
	struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct none[2] = {{0}};
	long cap;

	if (p->chdir ? chdir(p->chdir) != 0 : fchdir(3) != 0)
		return;
	/* Root that kept uid 0 (bundle unreachable as the run's uid): no
	 * capability now, and none back at exec. */
	for (cap = 0; cap <= 63; cap++)
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL && errno != EPERM)
			return;
	prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
	if (syscall(SYS_capset, &hdr, none) != 0)
		return;
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
		return;
	if (syscall(SYS_landlock_restrict_self, 4, 0) != 0)
		return;
	close(4);
	if (fcntl(3, F_SETFD, FD_CLOEXEC) < 0 && errno != EBADF)
		return;
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &p->filter) != 0)
		return;
	if (p->exec_rel)
		syscall(SYS_execveat, 3, p->exec_rel, p->args.v, p->envp, 0);
	else
		execve(p->args.v[0], p->args.v, p->envp);
}

const struct sbx_backend sbx_landlock = {
	.id = NX_SANDBOX_BACKEND_LANDLOCK,
	.check = check,
	.prepare = prepare,
	.enter = enter,
	.init_pidfd = NULL,
};
