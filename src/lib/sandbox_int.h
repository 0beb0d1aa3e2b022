/* sandbox_int.h - private pieces shared by sandbox.c and sandbox_args.c. */
#ifndef NEXUS_SANDBOX_INT_H
#define NEXUS_SANDBOX_INT_H

#include <stdbool.h>
#include <stddef.h>

#include "nexus/sandbox.h"

/* A NULL-terminated argv under construction, plus the sandbox paths
 * already bound or linked (so each is set up once). */
struct sbx_args {
	char **v;
	size_t n, cap;
	char **dests;
	size_t ndests;
};

int sbx_args_push(struct sbx_args *a, const char *s, nx_error *err);
/* Bind host `path` read-only at the same place, symlinks reproduced. */
int sbx_args_host_path(struct sbx_args *a, const char *path, nx_error *err);
/* The whole bwrap command line for o; bundle_fd_no is the fd number the
 * bundle directory will have in bwrap, or -1. */
int sbx_args_build(struct sbx_args *a, const struct nx_sandbox_opts *o, int bundle_fd_no,
		   nx_error *err);
void sbx_args_release(struct sbx_args *a);

#endif
