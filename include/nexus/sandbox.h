/*
 * nexus/sandbox.h - run an untrusted program under bubblewrap (TRV-5 and
 * `nexus run`).
 *
 * What the program sees: a fresh root (tmpfs) holding the bundle directory
 * read-only at NX_SANDBOX_BUNDLE, bound from an open directory fd so that a
 * path swap cannot redirect it; the host paths the caller lists (the ELF
 * closure from nexus/elf.h, a Python stdlib, ...) read-only at their own
 * paths with their symlink chains reproduced as symlinks;
 * /sys/devices/system/cpu read-only (ONNX Runtime sizes its thread pools
 * from it); a private size-capped /tmp; a minimal /dev; and a /proc of the
 * sandbox's own pid namespace (so it shows only the sandboxed processes),
 * because ld.so resolves the main program's $ORIGIN (RUNPATH $ORIGIN/../lib)
 * through /proc/self/exe and nexus_cli finds its bundle the same way.
 *
 * Isolation: --unshare-all (user, pid, net, ipc, uts, cgroup namespaces),
 * --die-with-parent, --new-session (no TIOCSTI into the caller's terminal),
 * --clearenv (only opts->env is set), --cap-drop ALL.  Before bwrap is
 * executed the child sets RLIMIT_AS, RLIMIT_CPU, RLIMIT_FSIZE,
 * RLIMIT_NOFILE, RLIMIT_NPROC and RLIMIT_CORE=0, which the sandboxed program
 * inherits.  RLIMIT_NPROC does not apply to uid 0, so when the caller is
 * root the child first drops to a uid/gid of its own, drawn from
 * [NX_SANDBOX_UID_BASE, +NX_SANDBOX_UID_SPAN) for each run so that
 * concurrent sandboxes (parallel builds on one CI host) do not share one
 * RLIMIT_NPROC budget (bwrap then builds an
 * unprivileged user namespace) - if that user can reach the bundle's
 * path; otherwise (a bundle below a 0700 directory) bwrap stays root and
 * the pid namespace and the timeout, not RLIMIT_NPROC, bound the processes.  The parent enforces a wall-clock
 * timeout and a cap on the bytes of stdout+stderr, killing bwrap's process
 * group (the pid namespace dies with it) when either is exceeded, and
 * always reaps it.
 */
#ifndef NEXUS_SANDBOX_H
#define NEXUS_SANDBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nexus/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NX_SANDBOX_BWRAP "/usr/bin/bwrap"
#define NX_SANDBOX_BUNDLE "/bundle"           /* where the bundle is mounted */
#define NX_SANDBOX_UID_BASE 0x5e000000u        /* per-run uids, when the caller is root */
#define NX_SANDBOX_UID_SPAN 0x01000000u        /* owned by no account on the host */
#define NX_SANDBOX_AS_BYTES (4ull << 30)
#define NX_SANDBOX_CPU_SECONDS 60
#define NX_SANDBOX_FSIZE_BYTES (64ull << 20)
#define NX_SANDBOX_TMP_BYTES (64ull << 20)     /* size of the private /tmp */
#define NX_SANDBOX_NOFILE 256
#define NX_SANDBOX_NPROC 128
#define NX_SANDBOX_WALL_MS 60000
#define NX_SANDBOX_OUTPUT_MAX (16u << 20)      /* stdout + stderr bytes */
#define NX_SANDBOX_PATHS_MAX 4096              /* ro_paths entries */
#define NX_SANDBOX_SYMLINKS_MAX 40             /* symlinks followed per path */

struct nx_sandbox_opts {
	const char *bwrap;             /* NULL = NX_SANDBOX_BWRAP */
	int bundle_dirfd;              /* -1 = no bundle; borrowed */
	const char *const *argv;       /* NULL-terminated; argv[0] absolute inside the sandbox */
	const char *const *ro_paths;   /* NULL-terminated absolute host paths, or NULL */
	const char *const *ro_map;     /* NULL-terminated host,dest pairs bound read-only as
	                                  they are (for trusted private dirs), or NULL */
	const char *const *env;        /* NULL-terminated "NAME=VALUE", or NULL */
	const char *chdir;             /* NULL = NX_SANDBOX_BUNDLE, or "/" without a bundle */
	const void *stdin_data;        /* fed to the program's stdin (borrowed) */
	size_t stdin_len;
	int stdin_fd;                  /* -1, or copied to the program's stdin instead */
	uint64_t as_bytes, cpu_seconds, fsize_bytes, nofile, nproc;
	uint64_t wall_ms;
	size_t max_output;             /* stdout + stderr bytes before the program is killed */
	int out_fd;                    /* -1 = capture stdout, else stream it here */
};

struct nx_sandbox_result {
	bool exited;          /* bwrap exited (status valid); false: killed by `signal` */
	int status;           /* exit status; 128+N when the program died of signal N */
	int signal;
	bool timed_out;       /* killed by the wall-clock timeout */
	bool output_capped;   /* killed for exceeding max_output */
	char *out;            /* captured stdout (NUL-terminated; "" when streamed) */
	size_t out_len;
	char *errout;         /* captured stderr (NUL-terminated) */
	size_t errout_len;
	double seconds;       /* wall-clock duration */
};

/* The defaults above, no bundle, no argv, no stdin, capture stdout. */
void nx_sandbox_opts_init(struct nx_sandbox_opts *o);

/*
 * 0 when bwrap exists and can build the namespaces here (it runs
 * /usr/bin/true inside one); NX_EDEP with the reason otherwise.
 * bwrap may be NULL (NX_SANDBOX_BWRAP).
 */
int nx_sandbox_available(const char *bwrap, nx_error *err);

/*
 * Run o->argv in the sandbox and wait for it (at most o->wall_ms plus the
 * time to kill and reap).  On success (whatever the program did: a
 * timeout or a crash is a result, not an error) *out is filled; release it
 * with nx_sandbox_result_release.  Errors: NX_EUSAGE (bad options),
 * NX_EDEP (bwrap missing), NX_ELIMIT/NX_EUNSAFE (a ro_path with too many
 * symlinks or a relative one), NX_EIO (pipes, fork), NX_ENOMEM.
 */
int nx_sandbox_run(struct nx_sandbox_result *out, const struct nx_sandbox_opts *o,
		   nx_error *err);

void nx_sandbox_result_release(struct nx_sandbox_result *r);

/*
 * Run the bundle's own bin/nexus_cli with args (NULL-terminated, without the
 * program name) in the sandbox described by o: the bundle open at
 * o->bundle_dirfd (borrowed) is bound read-only at NX_SANDBOX_BUNDLE, and
 * nothing else is visible but the ELF closure of bundle_path/bin/nexus_cli.
 * o->argv and o->ro_paths are ignored (they are what this function fills
 * in); everything else - stdin, out_fd, limits, wall_ms, bwrap - is used as
 * given, so callers start from nx_sandbox_opts_init().  On success *out is
 * filled whatever the program did (release it with
 * nx_sandbox_result_release); NX_EFORMAT when bin/nexus_cli is not a
 * loadable ELF program, otherwise the errors of nx_sandbox_run.
 */
int nx_sandbox_run_cli(struct nx_sandbox_result *out, const struct nx_sandbox_opts *o,
		       const char *bundle_path, const char *const *args, nx_error *err);

#ifdef __cplusplus
}
#endif
#endif
