/*
 * nexus/sandbox.h - run an untrusted program confined (TRV-5 and
 * `nexus run`), under one of two backends (enum nx_sandbox_backend).
 *
 * bwrap (bubblewrap, needs unprivileged user namespaces).  What the program
 * sees: a fresh root (tmpfs) holding the bundle directory
 * read-only at NX_SANDBOX_BUNDLE, bound from an open directory fd so that a
 * path swap cannot redirect it; the host paths the caller lists (the ELF
 * closure from nexus/elf.h, a Python stdlib, ...) read-only at their own
 * paths with their symlink chains reproduced as symlinks;
 * /sys/devices/system/cpu read-only (ONNX Runtime sizes its thread pools
 * from it); a private size-capped /tmp; a minimal /dev; and a /proc of the
 * sandbox's own pid namespace (so it shows only the sandboxed processes),
 * because ld.so resolves the main program's $ORIGIN (RUNPATH $ORIGIN/../lib)
 * through /proc/self/exe and nexus_cli finds its bundle the same way.
 * Isolation: --unshare-all (user, pid, net, ipc, uts, cgroup namespaces),
 * --die-with-parent, --new-session (no TIOCSTI into the caller's terminal),
 * --clearenv (only opts->env is set), --cap-drop ALL.
 *
 * landlock (Landlock + seccomp, no namespaces; for hosts where user
 * namespaces are blocked).  The program runs at the host's paths: the
 * bundle (granted from its open fd, so a path swap cannot redirect it), the
 * ro_paths and ro_map sources and /sys/devices/system/cpu are readable (and
 * executable), /dev/null, /dev/zero, /dev/random and /dev/urandom are
 * readable, /dev/null writable, and nothing else can be opened, created,
 * renamed or removed.  ro_map has no mount to move a directory, so paths in
 * argv and chdir below NX_SANDBOX_BUNDLE or a ro_map destination are
 * rewritten to the host paths (the program is executed from the bundle fd).
 * No writable temporary directory is given.  Landlock ABI 4+ also denies TCP
 * bind/connect, ABI 6+ denies signals and abstract UNIX sockets outside the
 * sandbox; a seccomp filter (installed last, after PR_SET_NO_NEW_PRIVS and an
 * empty capability bounding set) denies socket(2) and socketpair(2) of every
 * family, ptrace and process_vm_*, unshare/setns/clone with namespace flags
 * (clone3 says ENOSYS so libc falls back to clone), mount and the new mount
 * API, pivot_root/chroot, setsid/setpgid (so nothing leaves the process
 * group the parent kills), TIOCSTI/TIOCLINUX ioctls, bpf, perf_event_open,
 * userfaultfd, io_uring, keyrings, module and kexec calls; a foreign
 * architecture's system call kills the process.  The child first calls
 * setsid(): no controlling terminal, and its pid is the group killed.
 *
 * Both: before confinement the child sets RLIMIT_AS, RLIMIT_CPU,
 * RLIMIT_FSIZE, RLIMIT_NOFILE, RLIMIT_NPROC and RLIMIT_CORE=0, which the
 * sandboxed program inherits.  RLIMIT_NPROC does not apply to uid 0, so when
 * the caller is root the child first drops to a uid/gid of its own, drawn
 * from [NX_SANDBOX_UID_BASE, +NX_SANDBOX_UID_SPAN) for each run so that
 * concurrent sandboxes (parallel builds on one CI host) do not share one
 * RLIMIT_NPROC budget - if that user can reach the bundle's path;
 * otherwise (a bundle below a 0700 directory) it stays root (bwrap: in its
 * pid namespace; landlock: with no capabilities) and the timeout, not
 * RLIMIT_NPROC, bounds the processes.  A caller that is not root keeps its
 * uid; the landlock backend then counts the uid's tasks and allows nproc
 * more.  The parent enforces a wall-clock timeout and a cap on the bytes of
 * stdout+stderr, killing the child's process group (and bwrap's pid
 * namespace) when either is exceeded, and always reaps it.
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
#define NX_SANDBOX_PASS_FD 9                   /* where opts.pass_fd appears */

/* Which confinement a run uses. */
enum nx_sandbox_backend {
	NX_SANDBOX_AUTO,               /* bwrap if it can create namespaces, else landlock */
	NX_SANDBOX_BACKEND_BWRAP,
	NX_SANDBOX_BACKEND_LANDLOCK,
};

struct nx_sandbox_opts {
	enum nx_sandbox_backend backend;   /* AUTO probes on every run: resolve it once
	                                      with nx_sandbox_available */
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
	uint64_t wall_ms;              /* 0 = no wall-clock limit (a server) */
	size_t max_output;             /* stdout + stderr bytes before the program is killed */
	int out_fd;                    /* -1 = capture stdout, else stream it here */
	int err_fd;                    /* > 0: stream stderr here; 0 = capture it */
	int pass_fd;                   /* > 0: given to the program as NX_SANDBOX_PASS_FD
	                                  (a listening socket: `nexus serve`); 0 = none */
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

/*
 * Limits that scale with the model (docs/TRV.md "Sandbox limits"): ONNX
 * Runtime holds the serialized model, the tensors made from it and
 * pre-packed copies of MatMul weights, so
 *   RLIMIT_AS   = max(NX_SANDBOX_AS_BYTES, 1 GiB + 4 x model_bytes)
 *   RLIMIT_CPU  = NX_SANDBOX_CPU_SECONDS + 60 s per started GiB
 *   wall clock  = o->wall_ms (the check's own timeout) + 60 s per started GiB
 * model_bytes is the model file plus its external data.  memory, when not
 * 0, replaces the RLIMIT_AS value (limits.sandbox_memory, --sandbox-memory).
 */
#define NX_SANDBOX_AS_PER_MODEL 4             /* bytes of address space per model byte */
#define NX_SANDBOX_AS_BASE (1ull << 30)
#define NX_SANDBOX_SECONDS_PER_GIB 60
#define NX_SANDBOX_SCALE_GIB_MAX 1024         /* GiB of model the time limits scale to */
#define NX_SANDBOX_MEMORY_MIN (256ull << 20)  /* smallest sandbox_memory accepted */
void nx_sandbox_scale(struct nx_sandbox_opts *o, uint64_t model_bytes, uint64_t memory);

/*
 * Which limit of o ended run r, as "the memory limit (RLIMIT_AS = 4.0 GiB)"
 * in buf (n bytes; always starting "the "); NULL when none did.  Memory is recognised by the
 * program's own words on stderr (std::bad_alloc, MemoryError, ENOMEM), CPU
 * and file size by SIGXCPU/SIGXFSZ, the wall clock by r->timed_out.
 */
const char *nx_sandbox_limit_hit(char *buf, size_t n, const struct nx_sandbox_result *r,
				 const struct nx_sandbox_opts *o);

/* The defaults above, no bundle, no argv, no stdin, capture stdout. */
void nx_sandbox_opts_init(struct nx_sandbox_opts *o);

/* "auto", "bwrap", "landlock". */
const char *nx_sandbox_backend_name(enum nx_sandbox_backend b);
/* The inverse (NEXUS_SANDBOX, --sandbox); NX_EUSAGE for another word. */
int nx_sandbox_backend_parse(enum nx_sandbox_backend *out, const char *s, nx_error *err);
/* The Landlock ABI version of the running kernel, 0 without Landlock. */
int nx_sandbox_landlock_abi(void);

/*
 * Which backend can run here: `want` itself, or for NX_SANDBOX_AUTO bwrap
 * when it can build its namespaces and landlock otherwise.  Each candidate
 * is proven by running /usr/bin/true in it.  *out is set on success;
 * NX_EDEP otherwise, with a message that says what is missing and how to
 * enable it.  bwrap may be NULL (NX_SANDBOX_BWRAP).
 */
int nx_sandbox_available(enum nx_sandbox_backend *out, enum nx_sandbox_backend want,
			 const char *bwrap, nx_error *err);

/*
 * Run o->argv in the sandbox and wait for it (at most o->wall_ms plus the
 * time to kill and reap).  On success (whatever the program did: a
 * timeout or a crash is a result, not an error) *out is filled; release it
 * with nx_sandbox_result_release.  Errors: NX_EUSAGE (bad options),
 * NX_EDEP (the backend cannot run here), NX_ELIMIT/NX_EUNSAFE (a ro_path with too many
 * symlinks or a relative one), NX_EIO (pipes, fork), NX_ENOMEM.
 */
int nx_sandbox_run(struct nx_sandbox_result *out, const struct nx_sandbox_opts *o,
		   nx_error *err);

void nx_sandbox_result_release(struct nx_sandbox_result *r);

/*
 * Run the bundle's own bin/nexus_cli with args (NULL-terminated, without the
 * program name) in the sandbox described by o: the bundle open at
 * o->bundle_dirfd (borrowed) is bound read-only at NX_SANDBOX_BUNDLE, and
 * nothing else is visible but the ELF closure of bundle_path/bin/nexus_cli
 * and of the host libraries o->ro_paths names (NULL: none; the libraries
 * it dlopens, e.g. libmicrohttpd for `serve`), which are made visible
 * with their closure.  o->argv is ignored; everything else - stdin, out_fd, limits, wall_ms, bwrap - is used as
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
