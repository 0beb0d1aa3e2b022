/*
 * sandbox_seccomp.c - the system call filter of the landlock backend
 * (nexus/sandbox.h lists what it denies and why).  Built with libseccomp in
 * the parent and exported as a BPF program, so that the forked child only
 * has to load it (prctl), without allocating.
 *
 * A deny-list: the sandboxed programs (ONNX Runtime, CPython) need the
 * ordinary calls, and what must not happen is named here.  No AF_UNIX
 * exception: neither program creates a socket, and the only socket the
 * sandbox has (its stdin) is made by the parent.
 */
#include "sandbox_int.h"

#include <errno.h>
#include <sched.h>
#include <seccomp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define FILTER_MAX (1u << 20)   /* bytes of BPF read back from libseccomp */

/* Denied outright (EPERM), by name so that calls this libseccomp does not
 * know on this architecture are skipped rather than failing the build. */
static const char *const denied[] = {
	"socket", "socketpair", "ptrace", "process_vm_readv", "process_vm_writev",
	"unshare", "setns", "mount", "umount2", "pivot_root", "chroot",
	"move_mount", "open_tree", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
	"setsid", "setpgid", "bpf", "perf_event_open", "userfaultfd",
	"io_uring_setup", "io_uring_enter", "io_uring_register",
	"keyctl", "add_key", "request_key", "init_module", "finit_module", "delete_module",
	"kexec_load", "kexec_file_load", "reboot", "swapon", "swapoff", "acct", "syslog",
	"open_by_handle_at", "name_to_handle_at", "iopl", "ioperm", "quotactl", "vhangup",
};

static const unsigned long ns_flags[] = {
	CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWIPC, CLONE_NEWUTS,
	CLONE_NEWCGROUP,
};

static int rules(scmp_filter_ctx f)
{
	size_t i;
	int rc = 0, nr;

	for (i = 0; !rc && i < sizeof(denied) / sizeof(denied[0]); i++) {
		nr = seccomp_syscall_resolve_name(denied[i]);
		if (nr != __NR_SCMP_ERROR)
			rc = seccomp_rule_add(f, SCMP_ACT_ERRNO(EPERM), nr, 0);
	}
	/* clone3 passes its flags in memory a filter cannot read: ENOSYS makes
	 * libc fall back to clone(2), whose flags are checked below. */
	if (!rc)
		rc = seccomp_rule_add(f, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
	for (i = 0; !rc && i < sizeof(ns_flags) / sizeof(ns_flags[0]); i++)
		rc = seccomp_rule_add(f, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
				      SCMP_A0(SCMP_CMP_MASKED_EQ, ns_flags[i], ns_flags[i]));
	/* The kernel reads an ioctl request as 32 bits: compare only those. */
	if (!rc)
		rc = seccomp_rule_add(f, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(ioctl), 1,
				      SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, TIOCSTI));
	if (!rc)
		rc = seccomp_rule_add(f, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(ioctl), 1,
				      SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, TIOCLINUX));
	return rc;
}

int sbx_seccomp_build(struct sock_fprog *out, nx_error *err)
{
	scmp_filter_ctx f = seccomp_init(SCMP_ACT_ALLOW);
	struct stat st;
	void *buf = NULL;
	int fd = -1, rc;

	if (!f)
		return nx_error_set(err, NX_ENOMEM, NULL, 0, -1, "out of memory");
	rc = seccomp_attr_set(f, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
	if (!rc)
		rc = seccomp_attr_set(f, SCMP_FLTATR_CTL_NNP, 0);   /* the child sets it itself */
	if (!rc)
		rc = rules(f);
	if (rc) {
		rc = nx_error_set(err, NX_EINTERNAL, NULL, 0, -1, "cannot build the seccomp filter: %s",
				  strerror(-rc));
		goto out;
	}
	fd = memfd_create("nexus-seccomp", MFD_CLOEXEC);
	if (fd < 0 || seccomp_export_bpf(f, fd) != 0 || fstat(fd, &st) != 0 ||
	    st.st_size <= 0 || (uint64_t)st.st_size > FILTER_MAX ||
	    st.st_size % (off_t)sizeof(struct sock_filter) != 0 || !(buf = malloc((size_t)st.st_size)) ||
	    pread(fd, buf, (size_t)st.st_size, 0) != (ssize_t)st.st_size) {
		rc = nx_error_errno(err, NX_EIO, errno, NULL, "cannot export the seccomp filter");
		goto out;
	}
	out->filter = buf;
	out->len = (unsigned short)((size_t)st.st_size / sizeof(struct sock_filter));
	buf = NULL;
out:
	free(buf);
	if (fd >= 0)
		close(fd);
	seccomp_release(f);
	return rc;
}
