/* fs.c - opening and walking beneath a directory without following links. */
#include "nexus/fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "util/array_int.h"

#define NX_FS_OPENAT2_RETRIES 8 /* EAGAIN from a concurrent rename */

static bool force_fallback;

void nx_fs_test_force_fallback(bool on)
{
	force_fallback = on;
}

static const char *type_name(mode_t m)
{
	if (S_ISREG(m)) return "regular file";
	if (S_ISDIR(m)) return "directory";
	if (S_ISLNK(m)) return "symlink";
	if (S_ISFIFO(m)) return "fifo";
	if (S_ISSOCK(m)) return "socket";
	if (S_ISCHR(m)) return "character device";
	if (S_ISBLK(m)) return "block device";
	return "special file";
}

static int check_relpath(const char *relpath, nx_error *err)
{
	size_t n = relpath ? strlen(relpath) : 0;

	if (n == 0)
		return nx_error_set(err, NX_EUNSAFE, relpath, 0, -1,
				    "empty path: name a file inside the directory");
	if (n > NX_FS_RELPATH_MAX)
		return nx_error_set(err, NX_ELIMIT, NULL, 0, -1,
				    "path longer than %d bytes", NX_FS_RELPATH_MAX);
	if (relpath[0] == '/')
		return nx_error_set(err, NX_EUNSAFE, relpath, 0, -1,
				    "%s: absolute path; paths must be relative", relpath);
	return 0;
}

/* Map an errno from a beneath-open to an error that says what was found. */
static int open_error(int e, const char *relpath, nx_error *err)
{
	if (e == ELOOP)
		return nx_error_set(err, NX_EUNSAFE, relpath, 0, -1,
				    "%s: is or passes through a symlink; nexus never follows links, "
				    "replace it with the real file", relpath);
	if (e == EXDEV)
		return nx_error_set(err, NX_EUNSAFE, relpath, 0, -1,
				    "%s: escapes the directory or crosses a mount point", relpath);
	return nx_error_errno(err, NX_EIO, e, relpath, "cannot open %s", relpath);
}

/* The checked walk used when openat2 is missing: one component at a time. */
static int open_fallback(int *out, int dirfd, const char *relpath, int flags,
			 nx_error *err)
{
	char comp[NAME_MAX + 1];
	const char *p = relpath, *slash;
	struct stat root, st;
	int cur = -1, next, rc = 0;

	if (fstat(dirfd, &root) < 0)
		return nx_error_errno(err, NX_EIO, errno, relpath, "cannot stat directory of %s", relpath);
	cur = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
	if (cur < 0)
		return nx_error_errno(err, NX_EIO, errno, relpath, "cannot open %s", relpath);
	for (;;) {
		size_t n;
		bool last;

		while (*p == '/')
			p++;
		slash = strchr(p, '/');
		n = slash ? (size_t)(slash - p) : strlen(p);
		last = !slash || slash[strspn(slash, "/")] == '\0';
		if (n > NAME_MAX) {
			rc = nx_error_set(err, NX_ELIMIT, relpath, 0, -1, "%s: name too long", relpath);
			goto out;
		}
		memcpy(comp, p, n);
		comp[n] = '\0';
		if (strcmp(comp, "..") == 0) {
			rc = open_error(EXDEV, relpath, err);
			goto out;
		}
		if (n == 0 || strcmp(comp, ".") == 0)
			comp[0] = '.', comp[1] = '\0';
		if (last)
			next = openat(cur, comp, flags);
		else
			next = openat(cur, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (next < 0) {
			int e = errno;

			/* O_NOFOLLOW|O_DIRECTORY on a symlink may say ENOTDIR. */
			if (e == ENOTDIR && fstatat(cur, comp, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
			    S_ISLNK(st.st_mode))
				e = ELOOP;
			rc = open_error(e, relpath, err);
			goto out;
		}
		close(cur);
		cur = next;
		if (fstat(cur, &st) < 0) {
			rc = nx_error_errno(err, NX_EIO, errno, relpath, "cannot stat %s", relpath);
			goto out;
		}
		if (st.st_dev != root.st_dev) {
			rc = open_error(EXDEV, relpath, err);
			goto out;
		}
		if (last)
			break;
		p = slash;
	}
	*out = cur;
	cur = -1;
out:
	if (cur >= 0)
		close(cur);
	return rc;
}

int nx_fs_open_beneath(int *out, int dirfd, const char *relpath, int flags,
		       nx_error *err)
{
	struct open_how how;
	int rc, fd, tries;

	rc = check_relpath(relpath, err);
	if (rc)
		return rc;
	if (flags & O_CREAT)
		return nx_error_set(err, NX_EINTERNAL, relpath, 0, -1,
				    "nx_fs_open_beneath does not create files");
	flags |= O_CLOEXEC | O_NOFOLLOW;
	if (force_fallback)
		return open_fallback(out, dirfd, relpath, flags, err);
	memset(&how, 0, sizeof(how));
	how.flags = (uint64_t)flags;
	how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS |
		      RESOLVE_NO_XDEV;
	for (tries = 0; tries < NX_FS_OPENAT2_RETRIES; tries++) {
		fd = (int)syscall(SYS_openat2, dirfd, relpath, &how, sizeof(how));
		if (fd >= 0) {
			*out = fd;
			return 0;
		}
		if (errno != EAGAIN)
			break;
	}
	if (errno == ENOSYS || errno == EPERM) /* EPERM: seccomp filters */
		return open_fallback(out, dirfd, relpath, flags, err);
	return open_error(errno, relpath, err);
}

static int too_large(const char *relpath, const struct stat *st, uint64_t max_size,
		     nx_error *err)
{
	char size[NX_SIZE_STR_MAX], max[NX_SIZE_STR_MAX];

	return nx_error_set(err, NX_ELIMIT, relpath, 0, -1,
			    "%s is %s, more than the limit of %s", relpath,
			    nx_size_str(size, (unsigned long long)st->st_size),
			    nx_size_str(max, (unsigned long long)max_size));
}

int nx_fs_open_regular(int *out, struct stat *out_st, int dirfd,
		       const char *relpath, uint64_t max_size, nx_error *err)
{
	struct stat st;
	int fd = -1, rc;

	rc = nx_fs_open_beneath(&fd, dirfd, relpath, O_RDONLY | O_NONBLOCK | O_NOCTTY, err);
	if (rc)
		return rc;
	if (fstat(fd, &st) < 0) {
		rc = nx_error_errno(err, NX_EIO, errno, relpath, "cannot stat %s", relpath);
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = nx_error_set(err, NX_EUNSAFE, relpath, 0, -1,
				  "%s: is a %s, not a regular file", relpath, type_name(st.st_mode));
		goto out;
	}
	if ((uint64_t)st.st_size > max_size) {
		rc = too_large(relpath, &st, max_size, err);
		goto out;
	}
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) < 0) {
		rc = nx_error_errno(err, NX_EIO, errno, relpath, "cannot open %s", relpath);
		goto out;
	}
	if (out_st)
		*out_st = st;
	*out = fd;
	fd = -1;
out:
	if (fd >= 0)
		close(fd);
	return rc;
}

int nx_fs_read_fd(char **out, size_t *out_len, int fd, const char *name,
		  size_t max_size, nx_error *err)
{
	struct stat st;
	char *buf = NULL;
	size_t len = 0, cap;
	int rc = 0;

	if (fstat(fd, &st) < 0)
		return nx_error_errno(err, NX_EIO, errno, name, "cannot stat %s", name);
	if (st.st_size < 0 || (uint64_t)st.st_size > max_size)
		return too_large(name, &st, max_size, err);
	cap = (size_t)st.st_size + 1;
	buf = malloc(cap);
	if (!buf)
		return nx_error_set(err, NX_ENOMEM, name, 0, -1, "out of memory reading %s", name);
	for (;;) {
		ssize_t n;

		if (len + 1 == cap) {
			if (len >= max_size) {
				/* Probe for one more byte: growing past the cap is an error. */
				char c;

				n = read(fd, &c, 1);
				if (n == 0)
					break;
				rc = nx_error_set(err, NX_ELIMIT, name, 0, -1,
						  "%s: grew past the limit of %zu bytes while read",
						  name, max_size);
				goto out;
			}
			if (nx_array_grow(&buf, &cap, cap + 1, 1,
					  max_size < SIZE_MAX ? max_size + 1 : SIZE_MAX)) {
				rc = nx_error_set(err, NX_ENOMEM, name, 0, -1, "out of memory reading %s", name);
				goto out;
			}
		}
		n = read(fd, buf + len, cap - 1 - len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = nx_error_errno(err, NX_EIO, errno, name, "cannot read %s", name);
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	*out = buf;
	*out_len = len;
	buf = NULL;
out:
	free(buf);
	return rc;
}

int nx_fs_read_all(char **out, size_t *out_len, int dirfd, const char *relpath,
		   size_t max_size, nx_error *err)
{
	int fd = -1, rc;

	rc = nx_fs_open_regular(&fd, NULL, dirfd, relpath, max_size, err);
	if (rc)
		return rc;
	rc = nx_fs_read_fd(out, out_len, fd, relpath, max_size, err);
	close(fd);
	return rc;
}

/* ---- walk ---- */

struct walk {
	struct nx_fs_entry *v;
	size_t n, cap, max;
	nx_error *err;
};

static int walk_add(struct walk *w, const char *path, const struct stat *st)
{
	struct nx_fs_entry *e;

	if (w->n >= w->max)
		return nx_error_set(w->err, NX_ELIMIT, path, 0, -1,
				    "more than %zu entries in the directory tree", w->max);
	if (NX_ARRAY_PUSH(w->v, w->cap, w->n))
		return nx_error_oom(w->err, path);
	e = &w->v[w->n];
	e->path = strdup(path);
	if (!e->path)
		return nx_error_oom(w->err, path);
	e->mode = st->st_mode;
	e->size = (uint64_t)st->st_size;
	e->nlink = st->st_nlink;
	e->dev = st->st_dev;
	e->ino = st->st_ino;
	e->mtime = st->st_mtim;
	e->ctime = st->st_ctim;
	w->n++;
	return 0;
}

static int walk_dir(struct walk *w, int fd, const char *prefix, int depth)
{
	char path[NX_FS_RELPATH_MAX + 1];
	struct dirent *d;
	struct stat st, dst;
	DIR *dir = NULL;
	int dfd, sub, rc = 0;

	if (depth > NX_FS_DEPTH_MAX)
		return nx_error_set(w->err, NX_ELIMIT, prefix, 0, -1,
				    "%s: nested deeper than %d directories", prefix, NX_FS_DEPTH_MAX);
	dfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (dfd < 0 || !(dir = fdopendir(dfd))) {
		rc = nx_error_errno(w->err, NX_EIO, errno, prefix, "cannot list %s",
				    *prefix ? prefix : ".");
		if (dfd >= 0)
			close(dfd);
		return rc;
	}
	/* The dup shares the offset of fd: a previous listing left it at the end. */
	rewinddir(dir);
	while ((errno = 0, d = readdir(dir))) {
		if (!strcmp(d->d_name, ".") || !strcmp(d->d_name, ".."))
			continue;
		if ((size_t)snprintf(path, sizeof(path), "%s%s%s", prefix, *prefix ? "/" : "",
				     d->d_name) >= sizeof(path)) {
			rc = nx_error_set(w->err, NX_ELIMIT, prefix, 0, -1, "%s: path too long", prefix);
			goto out;
		}
		if (fstatat(fd, d->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			rc = nx_error_errno(w->err, NX_EIO, errno, path, "cannot stat %s", path);
			goto out;
		}
		rc = walk_add(w, path, &st);
		if (rc)
			goto out;
		if (!S_ISDIR(st.st_mode))
			continue;
		sub = openat(fd, d->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (sub < 0) {
			rc = errno == ELOOP || errno == ENOTDIR
				? nx_error_set(w->err, NX_EUNSAFE, path, 0, -1,
					       "%s: changed while listed", path)
				: nx_error_errno(w->err, NX_EIO, errno, path, "cannot open %s", path);
			goto out;
		}
		if (fstat(sub, &dst) < 0 || dst.st_dev != st.st_dev || dst.st_ino != st.st_ino) {
			close(sub);
			rc = nx_error_set(w->err, NX_EUNSAFE, path, 0, -1, "%s: changed while listed", path);
			goto out;
		}
		rc = walk_dir(w, sub, path, depth + 1);
		close(sub);
		if (rc)
			goto out;
	}
	if (errno)
		rc = nx_error_errno(w->err, NX_EIO, errno, prefix, "cannot list %s",
				    *prefix ? prefix : ".");
out:
	closedir(dir);
	return rc;
}

static int entry_cmp(const void *a, const void *b)
{
	return strcmp(((const struct nx_fs_entry *)a)->path, ((const struct nx_fs_entry *)b)->path);
}

int nx_fs_walk(struct nx_fs_entry **out, size_t *out_n, int dirfd,
	       size_t max_entries, nx_error *err)
{
	struct walk w = { .max = max_entries, .err = err };
	int rc;

	rc = walk_dir(&w, dirfd, "", 1);
	if (rc) {
		nx_fs_entries_free(w.v, w.n);
		return rc;
	}
	if (w.n)
		qsort(w.v, w.n, sizeof(*w.v), entry_cmp);
	*out = w.v;
	*out_n = w.n;
	return 0;
}

void nx_fs_entries_free(struct nx_fs_entry *e, size_t n)
{
	size_t i;

	if (!e)
		return;
	for (i = 0; i < n; i++)
		free(e[i].path);
	free(e);
}

ssize_t nx_pread_full(int fd, void *buf, size_t len, uint64_t off)
{
	size_t got = 0;

	if (len > SSIZE_MAX || off > (uint64_t)INT64_MAX - len) {
		errno = EINVAL;
		return -1;
	}
	while (got < len) {
		ssize_t n = pread(fd, (char *)buf + got, len - got, (off_t)(off + got));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

int nx_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = EIO;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}
