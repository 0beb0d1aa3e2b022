/* sandbox_int.h - private pieces of nexus/sandbox.h: the backend interface
 * (sandbox.c spawns, pumps and reaps; sandbox_bwrap.c and
 * sandbox_landlock.c confine) and the bwrap command line (sandbox_args.c). */
#ifndef NEXUS_SANDBOX_INT_H
#define NEXUS_SANDBOX_INT_H

#include <linux/filter.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nexus/sandbox.h"
#include "util/array_int.h"

/* A NULL-terminated argv under construction, plus the sandbox paths
 * already bound or linked (so each is set up once). */
struct sbx_args {
	char **v;
	size_t n, cap;
	char **dests;
	size_t ndests;
};

int nx_sbx__args_push(struct sbx_args *a, const char *s, nx_error *err);
/* The whole bwrap command line for o; bundle_fd_no is the fd number the
 * bundle directory will have in bwrap, or -1. */
int nx_sbx__args_build(struct sbx_args *a, const struct nx_sandbox_opts *o, int bundle_fd_no,
		   nx_error *err);
void nx_sbx__args_release(struct sbx_args *a);

/*
 * What one run needs, made by a backend's prepare() in the parent (which
 * may allocate) and used by its enter() in the forked child (which only
 * makes system calls).  In the child, fd 3 is the bundle directory (when
 * there is one) and fd 4 is child_fd (when >= 0).
 */
struct sbx_prep {
	struct sbx_args args;      /* the argv executed */
	char **envp;               /* its environment (NULL-terminated) */
	const char *exec_rel;      /* non-NULL: exec this path relative to fd 3 */
	char *chdir;               /* landlock: where the program starts */
	int child_fd;              /* fd 4 in the child, or -1 */
	int parent_fd;             /* kept by the parent (bwrap --info-fd), or -1 */
	uint64_t nproc;            /* RLIMIT_NPROC for the child */
	struct sock_fprog filter;  /* landlock: the seccomp program */
	int abi;                   /* landlock: the kernel's ABI version */
};

struct sbx_backend {
	enum nx_sandbox_backend id;
	/* 0 when the kernel/host has what the backend needs; NX_EDEP with what
	 * is missing and how to enable it otherwise.  Does not run anything. */
	int (*check)(const struct nx_sandbox_opts *o, nx_error *err);
	int (*prepare)(struct sbx_prep *p, const struct nx_sandbox_opts *o, nx_error *err);
	/* In the child after the common setup; returns only on failure. */
	void (*enter)(const struct sbx_prep *p);
	/* In the parent after fork: a pidfd whose death ends every process of
	 * the sandbox, or -1 when killing the process group does that. */
	int (*init_pidfd)(struct sbx_prep *p, double deadline);
};

extern const struct sbx_backend nx_sbx__bwrap, nx_sbx__landlock;


/* sandbox_seccomp.c: the landlock backend's system call filter. */
int nx_sbx__seccomp_build(struct sock_fprog *out, nx_error *err);

#endif
