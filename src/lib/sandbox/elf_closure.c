/*
 * elf_closure.c - the load-time closure of a set of binaries (nexus/elf.h):
 * a breadth-first walk over PT_INTERP and DT_NEEDED with the restricted
 * search rules documented in the header.
 */
#include "nexus/elf.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NSYSDIRS 6

struct node {
	char *real;       /* real path: identity of the file */
	int depth;
	bool binary;      /* one of the caller's binaries */
};

struct walk {
	struct node *nodes;
	size_t nnodes;
	char **listed;    /* lookup paths reported to the caller */
	size_t nlisted;
	char *root;       /* real internal_root or NULL */
	char *sysreal[NSYSDIRS];
	const char *sysdirs[NSYSDIRS];
};

static bool under(const char *path, const char *dir)
{
	size_t n;

	if (!dir)
		return false;
	n = strlen(dir);
	if (n == 1 && dir[0] == '/')
		return true;
	return !strncmp(path, dir, n) && path[n] == '/';
}

static bool allowed(const struct walk *w, const char *real)
{
	size_t i;

	if (under(real, w->root))
		return true;
	for (i = 0; i < NSYSDIRS; i++)
		if (under(real, w->sysreal[i]))
			return true;
	return false;
}

/* A regular ELF64 little-endian file of this machine? */
static bool elf_matches(const char *real, uint16_t machine)
{
	Elf64_Ehdr eh;
	struct stat st;
	bool ok = false;
	int fd = open(real, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

	if (fd < 0)
		return false;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
	    pread(fd, &eh, sizeof(eh), 0) == (ssize_t)sizeof(eh))
		ok = !memcmp(eh.e_ident, ELFMAG, SELFMAG) && eh.e_ident[EI_CLASS] == ELFCLASS64 &&
		     eh.e_ident[EI_DATA] == ELFDATA2LSB && eh.e_machine == machine;
	close(fd);
	return ok;
}

static int list_path(struct walk *w, const char *lookup, const char *real, nx_error *err)
{
	size_t i;

	if (under(real, w->root))
		return 0;
	for (i = 0; i < w->nlisted; i++)
		if (!strcmp(w->listed[i], lookup))
			return 0;
	if (w->nlisted >= NX_ELF_CLOSURE_MAX)
		return nx_error_set(err, NX_ELIMIT, lookup, 0, -1,
				    "library closure has more than %d files", NX_ELF_CLOSURE_MAX);
	w->listed[w->nlisted] = strdup(lookup);
	if (!w->listed[w->nlisted])
		return nx_error_set(err, NX_ENOMEM, NULL, 0, -1, "out of memory");
	w->nlisted++;
	return 0;
}

/* Record file `lookup` (real path `real`) needed at `depth`. */
static int add(struct walk *w, const char *lookup, const char *real, int depth, nx_error *err)
{
	size_t i;
	int rc;

	if (depth > NX_ELF_DEPTH_MAX)
		return nx_error_set(err, NX_ELIMIT, lookup, 0, -1,
				    "library chain deeper than %d at %s", NX_ELF_DEPTH_MAX, lookup);
	rc = list_path(w, lookup, real, err);
	if (rc)
		return rc;
	for (i = 0; i < w->nnodes; i++)
		if (!strcmp(w->nodes[i].real, real))
			return 0;
	if (w->nnodes >= NX_ELF_CLOSURE_MAX)
		return nx_error_set(err, NX_ELIMIT, lookup, 0, -1,
				    "library closure has more than %d files", NX_ELF_CLOSURE_MAX);
	w->nodes[w->nnodes].real = strdup(real);
	if (!w->nodes[w->nnodes].real)
		return nx_error_set(err, NX_ENOMEM, NULL, 0, -1, "out of memory");
	w->nodes[w->nnodes].depth = depth;
	w->nodes[w->nnodes].binary = false;
	w->nnodes++;
	return 0;
}

/* Try dir/name; on a match fill real and return true. */
static bool try_dir(const struct walk *w, const char *dir, const char *name, uint16_t machine,
		    char lookup[PATH_MAX], char real[PATH_MAX])
{
	if (snprintf(lookup, PATH_MAX, "%s/%s", dir, name) >= PATH_MAX)
		return false;
	if (!realpath(lookup, real))
		return false;
	return allowed(w, real) && elf_matches(real, machine);
}

/* $ORIGIN-relative RUNPATH entry -> directory, or false to ignore it. */
static bool origin_dir(char out[PATH_MAX], const char *entry, size_t len, const char *origin)
{
	const char *rest;

	if (len >= 7 && !strncmp(entry, "$ORIGIN", 7))
		rest = entry + 7;
	else if (len >= 9 && !strncmp(entry, "${ORIGIN}", 9))
		rest = entry + 9;
	else
		return false;
	if (rest != entry + len && *rest != '/')
		return false;
	return snprintf(out, PATH_MAX, "%s%.*s", origin, (int)(entry + len - rest), rest) <
	       PATH_MAX;
}

static int resolve_needed(struct walk *w, const struct nx_elf_info *info, const char *real_obj,
			  int depth, nx_error *err)
{
	char origin[PATH_MAX], dir[PATH_MAX], lookup[PATH_MAX], real[PATH_MAX];
	char *slash;
	size_t i, j;

	snprintf(origin, sizeof(origin), "%s", real_obj);
	slash = strrchr(origin, '/');
	if (slash)
		*(slash == origin ? slash + 1 : slash) = '\0';
	for (i = 0; i < info->nneeded; i++) {
		const char *name = info->needed[i];
		bool found = false;

		if (!name[0] || strchr(name, '/'))
			continue;
		for (const char *p = info->runpath; p && *p && !found;) {
			size_t len = strcspn(p, ":");

			if (origin_dir(dir, p, len, origin))
				found = try_dir(w, dir, name, info->machine, lookup, real);
			p += len + (p[len] == ':');
		}
		for (j = 0; j < NSYSDIRS && !found; j++)
			found = try_dir(w, w->sysdirs[j], name, info->machine, lookup, real);
		if (found) {
			int rc = add(w, lookup, real, depth + 1, err);

			if (rc)
				return rc;
		}
	}
	return 0;
}

static int visit(struct walk *w, size_t k, nx_error *err)
{
	struct nx_elf_info info = {0};
	char real[PATH_MAX];
	char *obj = w->nodes[k].real;
	int depth = w->nodes[k].depth, fd, rc;

	fd = open(obj, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		if (!w->nodes[k].binary)
			return 0;
		return nx_error_errno(err, NX_EIO, errno, obj, "cannot open %s", obj);
	}
	rc = nx_elf_read(&info, fd, obj, err);
	close(fd);
	if (rc)
		return w->nodes[k].binary ? rc : 0;
	if (info.interp && info.interp[0] == '/' && realpath(info.interp, real) &&
	    allowed(w, real) && elf_matches(real, info.machine)) {
		rc = add(w, info.interp, real, depth + 1, err);
		if (rc)
			goto out;
	}
	rc = resolve_needed(w, &info, obj, depth, err);
out:
	nx_elf_info_release(&info);
	return rc;
}

int nx_elf_closure(char ***out, size_t *out_n, const char *const *binaries,
		   size_t nbinaries, const char *internal_root, nx_error *err)
{
	static const char *const sysdirs[NSYSDIRS] = NX_ELF_SYSTEM_DIRS;
	struct walk w = {0};
	char real[PATH_MAX];
	size_t i;
	int rc;

	w.nodes = calloc(NX_ELF_CLOSURE_MAX, sizeof(*w.nodes));
	w.listed = calloc(NX_ELF_CLOSURE_MAX, sizeof(*w.listed));
	if (!w.nodes || !w.listed) {
		rc = nx_error_set(err, NX_ENOMEM, NULL, 0, -1, "out of memory");
		goto out;
	}
	for (i = 0; i < NSYSDIRS; i++) {
		w.sysdirs[i] = sysdirs[i];
		w.sysreal[i] = realpath(sysdirs[i], NULL);   /* NULL when absent */
	}
	if (internal_root && !(w.root = realpath(internal_root, NULL))) {
		rc = nx_error_errno(err, NX_EIO, errno, internal_root, "cannot resolve %s",
				    internal_root);
		goto out;
	}
	for (i = 0; i < nbinaries; i++) {
		if (!realpath(binaries[i], real)) {
			rc = nx_error_errno(err, NX_EIO, errno, binaries[i], "cannot resolve %s",
					    binaries[i]);
			goto out;
		}
		if (w.nnodes >= NX_ELF_CLOSURE_MAX) {
			rc = nx_error_set(err, NX_ELIMIT, NULL, 0, -1, "too many binaries");
			goto out;
		}
		w.nodes[w.nnodes].real = strdup(real);
		if (!w.nodes[w.nnodes].real) {
			rc = nx_error_set(err, NX_ENOMEM, NULL, 0, -1, "out of memory");
			goto out;
		}
		w.nodes[w.nnodes++].binary = true;
	}
	for (i = 0; i < w.nnodes; i++) {
		rc = visit(&w, i, err);
		if (rc)
			goto out;
	}
	*out = w.listed;
	*out_n = w.nlisted;
	w.listed = NULL;
	w.nlisted = 0;
	rc = 0;
out:
	for (i = 0; i < w.nnodes; i++)
		free(w.nodes[i].real);
	free(w.nodes);
	nx_elf_closure_free(w.listed, w.nlisted);
	for (i = 0; i < NSYSDIRS; i++)
		free(w.sysreal[i]);
	free(w.root);
	return rc;
}
