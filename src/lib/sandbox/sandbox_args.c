/*
 * sandbox_args.c - the bwrap command line of nexus/sandbox.h.  Host paths
 * are bound at their own location after their symlinks have been resolved
 * component by component: every symlink met on the way becomes a
 * `--symlink` in the sandbox and only real directories/files are bound, so
 * /lib64/ld-linux-x86-64.so.2 -> /lib/x86_64-linux-gnu/... with /lib ->
 * usr/lib resolves inside exactly as outside.
 */
#include "sandbox_int.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define ARGS_MAX (8 * NX_SANDBOX_PATHS_MAX + 256)

int nx_sbx__args_push(struct sbx_args *a, const char *s, nx_error *err)
{
	if (a->n + 2 > a->cap) {
		int rc = nx_array_grow(&a->v, &a->cap, a->n + 2, sizeof(*a->v), ARGS_MAX);

		if (rc == NX_ELIMIT)
			return nx_error_set(err, NX_ELIMIT, NULL, 0, -1,
					    "sandbox command line longer than %d words", ARGS_MAX);
		if (rc)
			return nx_error_oom(err, NULL);
	}
	a->v[a->n] = strdup(s);
	if (!a->v[a->n])
		return nx_error_oom(err, NULL);
	a->v[++a->n] = NULL;
	return 0;
}

static int push3(struct sbx_args *a, const char *x, const char *y, const char *z, nx_error *err)
{
	int rc = nx_sbx__args_push(a, x, err);

	if (!rc && y)
		rc = nx_sbx__args_push(a, y, err);
	if (!rc && z)
		rc = nx_sbx__args_push(a, z, err);
	return rc;
}

void nx_sbx__args_release(struct sbx_args *a)
{
	size_t i;

	for (i = 0; i < a->n; i++)
		free(a->v[i]);
	free(a->v);
	for (i = 0; i < a->ndests; i++)
		free(a->dests[i]);
	free(a->dests);
	memset(a, 0, sizeof(*a));
}

/* True when dest was already bound or linked (and remember it if not). */
static int seen(struct sbx_args *a, const char *dest, bool *out, nx_error *err)
{
	size_t i;
	char **d;

	for (i = 0; i < a->ndests; i++)
		if (!strcmp(a->dests[i], dest)) {
			*out = true;
			return 0;
		}
	if (NX_ARRAY_PUSH_EXACT(a->dests, a->ndests))
		return nx_error_oom(err, NULL);
	d = a->dests;
	if (!(d[a->ndests] = strdup(dest)))
		return nx_error_oom(err, NULL);
	a->ndests++;
	*out = false;
	return 0;
}

/*
 * Walk `path` one component at a time.  `cur` is the resolved prefix (no
 * symlinks in it); `rest` what is left to walk.  A symlink at cur/comp is
 * recorded and its target spliced in front of rest.
 */
/* Bind host `path` read-only at the same place, symlinks reproduced. */
static int host_path(struct sbx_args *a, const char *path, nx_error *err)
{
	char cur[PATH_MAX] = "", rest[PATH_MAX], tmp[PATH_MAX], target[PATH_MAX];
	int hops = 0, rc;
	bool dup;

	if (path[0] != '/')
		return nx_error_set(err, NX_EUNSAFE, path, 0, -1,
				    "sandbox path %s is not absolute", path);
	if (snprintf(rest, sizeof(rest), "%s", path) >= (int)sizeof(rest))
		return nx_error_set(err, NX_ELIMIT, path, 0, -1, "path %s too long", path);
	while (rest[0]) {
		char *p = rest, comp[NAME_MAX + 1], cand[PATH_MAX];
		size_t len;
		struct stat st;
		ssize_t tn;

		while (*p == '/')
			p++;
		len = strcspn(p, "/");
		if (len == 0)
			break;
		if (len > NAME_MAX)
			return nx_error_set(err, NX_ELIMIT, path, 0, -1, "name too long in %s", path);
		memcpy(comp, p, len);
		comp[len] = '\0';
		memmove(rest, p + len, strlen(p + len) + 1);
		if (!strcmp(comp, "."))
			continue;
		if (!strcmp(comp, "..")) {
			char *s = strrchr(cur, '/');

			if (s)
				*s = '\0';
			continue;
		}
		if (snprintf(cand, sizeof(cand), "%s/%s", cur, comp) >= (int)sizeof(cand))
			return nx_error_set(err, NX_ELIMIT, path, 0, -1, "path %s too long", path);
		if (lstat(cand, &st) != 0)
			return nx_error_errno(err, NX_EIO, errno, cand, "cannot bind %s into the sandbox", path);
		if (!S_ISLNK(st.st_mode)) {
			memcpy(cur, cand, strlen(cand) + 1);
			continue;
		}
		if (++hops > NX_SANDBOX_SYMLINKS_MAX)
			return nx_error_set(err, NX_ELIMIT, path, 0, -1,
					    "more than %d symlinks resolving %s", NX_SANDBOX_SYMLINKS_MAX, path);
		tn = readlink(cand, target, sizeof(target) - 1);
		if (tn < 0)
			return nx_error_errno(err, NX_EIO, errno, cand, "cannot read symlink %s", cand);
		target[tn] = '\0';
		rc = seen(a, cand, &dup, err);
		if (rc)
			return rc;
		if (!dup && (rc = push3(a, "--symlink", target, cand, err)))
			return rc;
		if (snprintf(tmp, sizeof(tmp), "%s/%s", target, rest) >= (int)sizeof(tmp))
			return nx_error_set(err, NX_ELIMIT, path, 0, -1, "path %s too long", path);
		memcpy(rest, tmp, strlen(tmp) + 1);
		if (target[0] == '/')
			cur[0] = '\0';
	}
	if (!cur[0])
		return 0;       /* "/" itself: the sandbox root already exists */
	rc = seen(a, cur, &dup, err);
	if (rc || dup)
		return rc;
	return push3(a, "--ro-bind", cur, cur, err);
}

int nx_sbx__args_build(struct sbx_args *a, const struct nx_sandbox_opts *o, int bundle_fd_no,
		   nx_error *err)
{
	char num[32];
	size_t i;
	int rc;

	rc = push3(a, o->bwrap ? o->bwrap : NX_SANDBOX_BWRAP, "--unshare-all", "--die-with-parent", err);
	if (!rc)
		rc = push3(a, "--new-session", "--clearenv", NULL, err);
	if (!rc)
		rc = push3(a, "--cap-drop", "ALL", NULL, err);
	/* fd 4 in bwrap: it reports the pid of the sandbox's init there. */
	if (!rc)
		rc = push3(a, "--info-fd", "4", NULL, err);
	if (!rc && bundle_fd_no >= 0) {
		snprintf(num, sizeof(num), "%d", bundle_fd_no);
		rc = push3(a, "--ro-bind-fd", num, NX_SANDBOX_BUNDLE, err);
	}
	for (i = 0; !rc && o->ro_paths && o->ro_paths[i]; i++) {
		if (i >= NX_SANDBOX_PATHS_MAX)
			return nx_error_set(err, NX_ELIMIT, NULL, 0, -1,
					    "more than %d sandbox paths", NX_SANDBOX_PATHS_MAX);
		rc = host_path(a, o->ro_paths[i], err);
	}
	for (i = 0; !rc && o->ro_map && o->ro_map[i] && o->ro_map[i + 1]; i += 2)
		rc = push3(a, "--ro-bind", o->ro_map[i], o->ro_map[i + 1], err);
	if (!rc && access("/sys/devices/system/cpu", R_OK) == 0)
		rc = host_path(a, "/sys/devices/system/cpu", err);
	snprintf(num, sizeof(num), "%" PRIu64, (uint64_t)NX_SANDBOX_TMP_BYTES);
	if (!rc)
		rc = push3(a, "--size", num, NULL, err);
	if (!rc)
		rc = push3(a, "--tmpfs", "/tmp", NULL, err);
	if (!rc)
		rc = push3(a, "--dev", "/dev", NULL, err);
	/* ld.so finds the main program's $ORIGIN through /proc/self/exe, and
	 * nexus_cli finds its bundle the same way; this procfs belongs to the
	 * sandbox's own pid namespace. */
	if (!rc)
		rc = push3(a, "--proc", "/proc", NULL, err);
	for (i = 0; !rc && o->env && o->env[i]; i++) {
		const char *eq = strchr(o->env[i], '=');
		char name[256];

		if (!eq || eq == o->env[i] || (size_t)(eq - o->env[i]) >= sizeof(name))
			return nx_error_set(err, NX_EUSAGE, NULL, 0, -1,
					    "sandbox environment entry '%s' is not NAME=VALUE", o->env[i]);
		memcpy(name, o->env[i], (size_t)(eq - o->env[i]));
		name[eq - o->env[i]] = '\0';
		rc = push3(a, "--setenv", name, eq + 1, err);
	}
	if (!rc)
		rc = push3(a, "--chdir", o->chdir ? o->chdir : bundle_fd_no >= 0 ? NX_SANDBOX_BUNDLE : "/",
			   "--", err);
	for (i = 0; !rc && o->argv[i]; i++)
		rc = nx_sbx__args_push(a, o->argv[i], err);
	return rc;
}

/* The monotonic clock in seconds (the run loops and the wall limit). */
