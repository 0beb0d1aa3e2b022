/*
 * verify_fs.c - the few filesystem primitives the verifier needs, opened
 * beneath the bundle directory only.  A private stand-in for nexus/fs.h
 * (being written on the build branch) so verify does not wait for it.
 */
#include "verify_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define WALK_DEPTH_MAX 32

static int open_beneath(int dirfd, const char *relpath, int flags)
{
	struct open_how how = {
		.flags = (uint64_t)(flags | O_CLOEXEC | O_NOFOLLOW),
		.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
	};
	long fd;

	do
		fd = syscall(SYS_openat2, dirfd, relpath, &how, sizeof(how));
	while (fd < 0 && errno == EINTR);
	return (int)fd;
}

int vfy_open_regular(int *out, struct stat *out_st, int dirfd, const char *relpath,
		     nx_error *err)
{
	struct stat st;
	int fd, rc;

	/* O_NONBLOCK: a FIFO planted under a manifest name must not hang us */
	fd = open_beneath(dirfd, relpath, O_RDONLY | O_NONBLOCK | O_NOCTTY);
	if (fd < 0)
		return nx_error_errno(err, errno == ELOOP || errno == EXDEV ? NX_EUNSAFE : NX_EIO,
				      errno, relpath, "cannot open %s", relpath);
	if (fstat(fd, &st) < 0) {
		rc = nx_error_errno(err, NX_EIO, errno, relpath, "cannot stat %s", relpath);
		goto out_close;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = nx_error_set(err, NX_EUNSAFE, relpath, 0, -1,
				  "%s is not a regular file", relpath);
		goto out_close;
	}
	*out = fd;
	if (out_st)
		*out_st = st;
	return 0;
out_close:
	close(fd);
	return rc;
}

static int read_fd(char **out, size_t *out_len, int fd, const struct stat *st,
		   const char *relpath, size_t max_size, nx_error *err)
{
	char *buf = NULL;
	size_t off = 0;

	if ((uint64_t)st->st_size > max_size)
		return nx_error_set(err, NX_ELIMIT, relpath, 0, -1,
				    "%s is larger than %zu bytes", relpath, max_size);
	buf = malloc((size_t)st->st_size + 1);
	if (!buf)
		return nx_error_set(err, NX_ENOMEM, relpath, 0, -1, "out of memory reading %s", relpath);
	while (off < (size_t)st->st_size) {
		ssize_t n = pread(fd, buf + off, (size_t)st->st_size - off, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int rc = n < 0 ? nx_error_errno(err, NX_EIO, errno, relpath, "cannot read %s", relpath) :
					 nx_error_set(err, NX_EIO, relpath, 0, -1, "%s shrank while reading", relpath);

			free(buf);
			return rc;
		}
		off += (size_t)n;
	}
	buf[off] = '\0';
	*out = buf;
	*out_len = off;
	return 0;
}

int vfy_read_all(char **out, size_t *out_len, int dirfd, const char *relpath,
		 size_t max_size, nx_error *err)
{
	struct stat st;
	int fd = -1, rc;

	rc = vfy_open_regular(&fd, &st, dirfd, relpath, err);
	if (rc)
		return rc;
	rc = read_fd(out, out_len, fd, &st, relpath, max_size, err);
	close(fd);
	return rc;
}

int vfy_read_path(char **out, size_t *out_len, const char *path, size_t max_size, nx_error *err)
{
	struct stat st;
	int fd, rc;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return nx_error_errno(err, NX_EIO, errno, path, "cannot open %s", path);
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
		rc = nx_error_set(err, NX_EIO, path, 0, -1, "%s is not a readable regular file", path);
	else
		rc = read_fd(out, out_len, fd, &st, path, max_size, err);
	close(fd);
	return rc;
}

struct walk {
	struct vfy_entry *e;
	size_t n, cap, max;
};

static int add_entry(struct walk *w, const char *path, const struct stat *st, nx_error *err)
{
	if (w->n >= w->max)
		return nx_error_set(err, NX_ELIMIT, path, 0, -1,
				    "bundle has more than %zu entries", w->max);
	if (w->n == w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 64;
		struct vfy_entry *n = realloc(w->e, cap * sizeof(*n));

		if (!n)
			return nx_error_set(err, NX_ENOMEM, path, 0, -1, "out of memory walking the bundle");
		w->e = n;
		w->cap = cap;
	}
	w->e[w->n].path = strdup(path);
	if (!w->e[w->n].path)
		return nx_error_set(err, NX_ENOMEM, path, 0, -1, "out of memory walking the bundle");
	w->e[w->n].mode = st->st_mode;
	w->e[w->n].size = (uint64_t)st->st_size;
	w->e[w->n].nlink = st->st_nlink;
	w->n++;
	return 0;
}

static int walk_dir(struct walk *w, int rootfd, const char *prefix, int depth, nx_error *err)
{
	DIR *d = NULL;
	struct dirent *de;
	int fd, rc = 0;

	if (depth > WALK_DEPTH_MAX)
		return nx_error_set(err, NX_ELIMIT, prefix, 0, -1,
				    "directories nested deeper than %d", WALK_DEPTH_MAX);
	fd = prefix[0] ? open_beneath(rootfd, prefix, O_RDONLY | O_DIRECTORY) : dup(rootfd);
	if (fd < 0)
		return nx_error_errno(err, NX_EIO, errno, prefix, "cannot open directory %s",
				      prefix[0] ? prefix : ".");
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return nx_error_errno(err, NX_EIO, errno, prefix, "cannot list %s", prefix);
	}
	rewinddir(d);   /* a dup'ed fd shares its offset */
	while ((errno = 0, de = readdir(d))) {
		char path[NX_ERROR_PATH_MAX];
		struct stat st;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if ((size_t)snprintf(path, sizeof(path), "%s%s%s", prefix, prefix[0] ? "/" : "",
				     de->d_name) >= sizeof(path)) {
			rc = nx_error_set(err, NX_ELIMIT, prefix, 0, -1, "path too long under %s", prefix);
			goto out_close;
		}
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			rc = nx_error_errno(err, NX_EIO, errno, path, "cannot stat %s", path);
			goto out_close;
		}
		rc = add_entry(w, path, &st, err);
		if (!rc && S_ISDIR(st.st_mode))
			rc = walk_dir(w, rootfd, path, depth + 1, err);
		if (rc)
			goto out_close;
	}
	if (errno)
		rc = nx_error_errno(err, NX_EIO, errno, prefix, "cannot list %s", prefix);
out_close:
	closedir(d);
	return rc;
}

static int by_path(const void *a, const void *b)
{
	return strcmp(((const struct vfy_entry *)a)->path, ((const struct vfy_entry *)b)->path);
}

int vfy_walk(struct vfy_entry **out, size_t *out_n, int dirfd, size_t max_entries,
	     nx_error *err)
{
	struct walk w = {.max = max_entries};
	int rc;

	rc = walk_dir(&w, dirfd, "", 0, err);
	if (rc) {
		vfy_entries_free(w.e, w.n);
		return rc;
	}
	if (w.n)
		qsort(w.e, w.n, sizeof(*w.e), by_path);
	*out = w.e;
	*out_n = w.n;
	return 0;
}

void vfy_entries_free(struct vfy_entry *e, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(e[i].path);
	free(e);
}
