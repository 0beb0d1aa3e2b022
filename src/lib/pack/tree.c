/*
 * tree.c - a bundle's tree on disk: opening it with its manifest, checking
 * that it holds nothing but the manifest's files, restoring their modes
 * (`nexus fix-modes`) and removing it (`nexus rm`).
 */
#include "pack_int.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#define TREE_ENTRIES_MAX (NX_MANIFEST_FILES_MAX * 2 + 1)

int nx_pack__open_bundle(int *dirfd_out, nx_manifest **m_out, const char *path, nx_error *err)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc;

	if (fd < 0)
		return nx_error_errno(err, errno == ENOTDIR ? NX_EUSAGE : NX_EIO, errno, path,
				      "cannot open the bundle directory %s", path);
	if ((rc = nx_manifest_load(m_out, fd, NULL, err))) {
		close(fd);
		if (rc == NX_EIO || rc == NX_EUNSAFE)
			return nx_error_set(err, NX_EUNSAFE, path, 0, -1,
					    "%s is not a bundle: %s", path, err ? err->message : "");
		return rc;
	}
	*dirfd_out = fd;
	return 0;
}

int nx_pack__walk_bundle(struct nx_fs_entry **out, size_t *n, int dirfd, const nx_manifest *m,
			 const char *bundle, nx_error *err)
{
	struct nx_fs_entry *e = NULL;
	size_t ne = 0, i;
	int rc;

	if ((rc = nx_fs_walk(&e, &ne, dirfd, TREE_ENTRIES_MAX, err)))
		return rc;
	for (i = 0; i < ne; i++) {
		const char *p = e[i].path;
		bool ok = S_ISDIR(e[i].mode) ? nx_manifest_has_dir(m, p) :
			  S_ISREG(e[i].mode) && (!strcmp(p, NX_MANIFEST_NAME) || nx_manifest_find(m, p));

		if (!ok) {
			rc = nx_error_set(err, NX_EUNSAFE, bundle, 0, -1,
					  "%s/%s is not one of the bundle's files (%s): %s holds "
					  "something its manifest does not list; nothing was changed",
					  bundle, p, S_ISLNK(e[i].mode) ? "a symbolic link" :
					  S_ISDIR(e[i].mode) ? "a directory with no listed file" :
					  S_ISREG(e[i].mode) ? "not in the manifest" : "a special file",
					  bundle);
			nx_fs_entries_free(e, ne);
			return rc;
		}
	}
	*out = e;
	*n = ne;
	return 0;
}

static int set_mode(int dirfd, const char *rel, mode_t want, mode_t have, size_t *changed,
		    const char *bundle, nx_error *err)
{
	if ((have & 07777) == want)
		return 0;
	if (fchmodat(dirfd, rel, want, 0) != 0)
		return nx_error_errno(err, NX_EIO, errno, bundle, "cannot set the mode of %s/%s",
				      bundle, rel);
	(*changed)++;
	return 0;
}

int nx_bundle_fix_modes(size_t *out_changed, const char *path, nx_error *err)
{
	struct nx_fs_entry *e = NULL;
	nx_manifest *m = NULL;
	struct stat st;
	size_t ne = 0, i, changed = 0;
	int dirfd = -1, rc;

	if ((rc = nx_pack__open_bundle(&dirfd, &m, path, err)) ||
	    (rc = nx_pack__walk_bundle(&e, &ne, dirfd, m, path, err)))
		goto out;
	/* files first, then directories deepest first (reverse byte order puts
	 * "a/b" before "a"), then the bundle directory */
	for (i = 0; !rc && i < ne; i++) {
		const struct nx_manifest_file *mf = nx_manifest_find(m, e[i].path);

		if (S_ISREG(e[i].mode))
			rc = set_mode(dirfd, e[i].path, mf ? nx_manifest_file_mode(mf) : 0444,
				      e[i].mode, &changed, path, err);
	}
	for (i = ne; !rc && i > 0; i--)
		if (S_ISDIR(e[i - 1].mode))
			rc = set_mode(dirfd, e[i - 1].path, 0555, e[i - 1].mode, &changed, path, err);
	if (!rc && fstat(dirfd, &st) != 0)
		rc = nx_error_errno(err, NX_EIO, errno, path, "cannot stat %s", path);
	if (!rc && (st.st_mode & 07777) != 0555) {
		if (fchmod(dirfd, 0555) != 0)
			rc = nx_error_errno(err, NX_EIO, errno, path, "cannot set the mode of %s", path);
		else
			changed++;
	}
	if (!rc && out_changed)
		*out_changed = changed;
out:
	nx_fs_entries_free(e, ne);
	nx_manifest_free(m);
	if (dirfd >= 0)
		close(dirfd);
	return rc;
}

int nx_bundle_remove(const char *path, nx_error *err)
{
	struct nx_fs_entry *e = NULL;
	nx_manifest *m = NULL;
	char *dcopy = NULL, *bcopy = NULL, hidden[NAME_MAX + 1];
	const char *dir, *base;
	unsigned rnd = 0;
	size_t ne = 0;
	int dirfd = -1, parentfd = -1, rc;

	if ((rc = nx_pack__open_bundle(&dirfd, &m, path, err)) ||
	    (rc = nx_pack__walk_bundle(&e, &ne, dirfd, m, path, err)))
		goto out;
	if (!(dcopy = strdup(path)) || !(bcopy = strdup(path))) {
		rc = nx_error_oom(err, path);
		goto out;
	}
	dir = dirname(dcopy);
	base = basename(bcopy);
	if (!strcmp(base, ".") || !strcmp(base, "..") || !strcmp(base, "/")) {
		rc = nx_error_set(err, NX_EUSAGE, path, 0, -1,
				  "name the bundle directory itself, not '%s'", path);
		goto out;
	}
	parentfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (parentfd < 0) {
		rc = nx_error_errno(err, NX_EIO, errno, dir, "cannot open %s", dir);
		goto out;
	}
	/* hidden first: an interrupted removal leaves no half bundle under its name */
	(void)!getrandom(&rnd, sizeof(rnd), 0);
	snprintf(hidden, sizeof(hidden), ".%.200s.nexus-rm.%ld.%08x", base, (long)getpid(), rnd);
	if (renameat(parentfd, base, parentfd, hidden) != 0) {
		rc = nx_error_errno(err, NX_EIO, errno, path, "cannot rename %s before removing it "
				    "(its parent directory must be writable)", path);
		goto out;
	}
	rc = nx_fs_remove_tree(parentfd, hidden, path, err);
out:
	if (parentfd >= 0)
		close(parentfd);
	if (dirfd >= 0)
		close(dirfd);
	nx_fs_entries_free(e, ne);
	nx_manifest_free(m);
	free(dcopy);
	free(bcopy);
	return rc;
}
