/*
 * stage.c - build a directory beside its final place, then publish it with
 * one atomic rename, so that readers of the final path see either nothing,
 * the previous tree, or the complete new one.
 */
#include "nexus/fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#define STAGE_TAG ".nexus-stage."
#define STAGE_NAME_MAX 200      /* bytes of the final name, so the stage name fits NAME_MAX */
#define STAGE_ENTRIES_MAX 100000
#define STAGE_CREATE_TRIES 16

struct nx_stage {
	char *final_path;
	char *name;        /* basename of final_path */
	char *stage_name;  /* ".<name>.nexus-stage.<pid>.<random>" */
	char *stage_path;
	int parentfd;
	int dirfd;
	volatile sig_atomic_t published;
	bool force;
	bool nosync;       /* seal and publish without fsync */
};

/*
 * Remove parentfd/name and everything under it without following links.
 * Only system calls and stack memory, so it is safe in a signal handler.
 * Directories are made writable first: published trees are 0555.
 */
static int rm_tree_at(int parentfd, const char *name, int depth)
{
	char buf[1024];
	int fd, rc = 0;
	bool again = true;

	fd = openat(parentfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		if (errno == ENOTDIR || errno == ELOOP)
			return unlinkat(parentfd, name, 0) < 0 && errno != ENOENT ? -1 : 0;
		return -1;
	}
	if (depth > NX_FS_DEPTH_MAX) {
		close(fd);
		return -1;
	}
	(void)fchmod(fd, 0700);
	while (again && rc == 0) {
		bool seen = false, removed = false;
		long n;

		again = false;
		if (lseek(fd, 0, SEEK_SET) < 0) {
			rc = -1;
			break;
		}
		while ((n = getdents64(fd, buf, sizeof(buf))) > 0) {
			long off = 0;

			while (off < n) {
				struct dirent64 *d = (struct dirent64 *)(buf + off);

				off += d->d_reclen;
				if (!strcmp(d->d_name, ".") || !strcmp(d->d_name, ".."))
					continue;
				seen = true;
				if (d->d_type == DT_DIR ||
				    (unlinkat(fd, d->d_name, 0) < 0 && (errno == EISDIR || errno == EPERM))) {
					if (rm_tree_at(fd, d->d_name, depth + 1) == 0)
						removed = true;
				} else {
					removed = true;
				}
			}
		}
		if (n < 0)
			rc = -1;
		/* Deleting while listing may skip entries: list again until empty. */
		if (seen) {
			if (!removed)
				rc = -1;
			again = true;
		}
	}
	close(fd);
	if (rc == 0 && unlinkat(parentfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
		rc = -1;
	return rc;
}

/* Remove ".<name>.nexus-stage.<pid>.*" left behind by dead processes. */
static void sweep_stale(int parentfd, const char *name)
{
	char prefix[NAME_MAX + 1];
	struct dirent *d;
	size_t plen;
	DIR *dir;
	int fd;

	plen = (size_t)snprintf(prefix, sizeof(prefix), ".%s" STAGE_TAG, name);
	fd = fcntl(parentfd, F_DUPFD_CLOEXEC, 0);
	if (fd < 0)
		return;
	dir = fdopendir(fd);
	if (!dir) {
		close(fd);
		return;
	}
	rewinddir(dir); /* the dup shares parentfd's offset */
	while ((d = readdir(dir))) {
		char *end;
		long pid;

		if (strncmp(d->d_name, prefix, plen) != 0)
			continue;
		errno = 0;
		pid = strtol(d->d_name + plen, &end, 10);
		if (errno || end == d->d_name + plen || *end != '.' || pid <= 0 || pid == getpid())
			continue;
		if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
			continue; /* alive, or not ours to judge */
		(void)rm_tree_at(parentfd, d->d_name, 0);
	}
	closedir(dir);
}

static int split_final(char **out_parent, char **out_name, const char *final_path, nx_error *err)
{
	char *p = strdup(final_path ? final_path : ""), *slash, *name;
	size_t n = strlen(p ? p : "");
	int rc = 0;

	if (!p)
		return nx_error_oom(err, final_path);
	while (n > 1 && p[n - 1] == '/')
		p[--n] = '\0';
	slash = strrchr(p, '/');
	name = slash ? slash + 1 : p;
	if (!*name || !strcmp(name, ".") || !strcmp(name, "..")) {
		rc = nx_error_set(err, NX_EUSAGE, final_path, 0, -1,
				  "output path '%s' does not name a directory to create", final_path);
		goto out;
	}
	if (strlen(name) > STAGE_NAME_MAX) {
		rc = nx_error_set(err, NX_ELIMIT, final_path, 0, -1,
				  "output name longer than %d bytes", STAGE_NAME_MAX);
		goto out;
	}
	*out_name = strdup(name);
	if (slash == p)
		*out_parent = strdup("/");
	else if (slash)
		*out_parent = (*slash = '\0', strdup(p));
	else
		*out_parent = strdup(".");
	if (!*out_name || !*out_parent) {
		free(*out_name);
		free(*out_parent);
		rc = nx_error_oom(err, final_path);
	}
out:
	free(p);
	return rc;
}

int nx_stage_create(nx_stage **out, const char *final_path, bool force, nx_error *err)
{
	nx_stage *s;
	char *parent = NULL;
	struct stat st;
	int rc, tries;

	s = calloc(1, sizeof(*s));
	if (!s)
		return nx_error_oom(err, final_path);
	s->parentfd = s->dirfd = -1;
	s->published = 1; /* nothing to remove until the directory exists */
	s->force = force;
	rc = split_final(&parent, &s->name, final_path, err);
	if (rc)
		goto fail;
	s->final_path = strdup(final_path);
	if (!s->final_path) {
		rc = nx_error_oom(err, final_path);
		goto fail;
	}
	s->parentfd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (s->parentfd < 0) {
		rc = nx_error_errno(err, NX_EIO, errno, parent,
				    "cannot open output directory %s", parent);
		goto fail;
	}
	if (!force && fstatat(s->parentfd, s->name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		rc = nx_error_set(err, NX_EEXIST, final_path, 0, -1,
				  "%s already exists; remove it, choose another path with -o, "
				  "or pass --force to replace it", final_path);
		goto fail;
	}
	sweep_stale(s->parentfd, s->name);
	for (tries = 0; tries < STAGE_CREATE_TRIES; tries++) {
		unsigned char r[8];
		char name[NAME_MAX + 1];

		if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
			rc = nx_error_errno(err, NX_EIO, errno, NULL, "cannot get random bytes");
			goto fail;
		}
		snprintf(name, sizeof(name), ".%s" STAGE_TAG "%ld.%02x%02x%02x%02x%02x%02x%02x%02x",
			 s->name, (long)getpid(), r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]);
		if (mkdirat(s->parentfd, name, 0700) == 0) {
			s->stage_name = strdup(name);
			break;
		}
		if (errno != EEXIST) {
			rc = nx_error_errno(err, NX_EIO, errno, parent,
					    "cannot create a staging directory in %s", parent);
			goto fail;
		}
	}
	if (!s->stage_name) {
		rc = nx_error_set(err, tries == STAGE_CREATE_TRIES ? NX_EIO : NX_ENOMEM, parent, 0, -1,
				  "cannot create a staging directory in %s", parent);
		goto fail;
	}
	s->published = 0;
	if (asprintf(&s->stage_path, "%s/%s", parent, s->stage_name) < 0) {
		s->stage_path = NULL;
		rc = nx_error_oom(err, parent);
		goto fail;
	}
	s->dirfd = openat(s->parentfd, s->stage_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (s->dirfd < 0) {
		rc = nx_error_errno(err, NX_EIO, errno, s->stage_path, "cannot open %s", s->stage_path);
		goto fail;
	}
	free(parent);
	*out = s;
	return 0;
fail:
	free(parent);
	nx_stage_free(s);
	return rc;
}

int nx_stage_dirfd(const nx_stage *s)
{
	return s->dirfd;
}

const char *nx_stage_path(const nx_stage *s)
{
	return s->stage_path;
}

int nx_stage_create_file(int *out, nx_stage *s, const char *relpath, bool exec, nx_error *err)
{
	char buf[NX_FS_RELPATH_MAX + 1];
	char *p;
	int fd;

	if (!relpath || !*relpath || relpath[0] == '/' || strlen(relpath) >= sizeof(buf) ||
	    strstr(relpath, "//") || !strcmp(relpath, "..") || !strncmp(relpath, "../", 3) ||
	    strstr(relpath, "/../") || (strlen(relpath) >= 3 && !strcmp(relpath + strlen(relpath) - 3, "/..")))
		return nx_error_set(err, NX_EINTERNAL, relpath, 0, -1,
				    "bad path '%s' for a staged file", relpath ? relpath : "");
	memcpy(buf, relpath, strlen(relpath) + 1);
	for (p = strchr(buf, '/'); p; p = strchr(p + 1, '/')) {
		*p = '\0';
		if (mkdirat(s->dirfd, buf, 0700) < 0 && errno != EEXIST)
			return nx_error_errno(err, NX_EIO, errno, s->stage_path,
					      "cannot create %s in %s", buf, s->stage_path);
		*p = '/';
	}
	fd = openat(s->dirfd, relpath, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		    exec ? 0700 : 0600);
	if (fd < 0)
		return nx_error_errno(err, NX_EIO, errno, s->stage_path,
				      "cannot create %s in %s", relpath, s->stage_path);
	*out = fd;
	return 0;
}

/* Final mode + fsync of one staged entry. */
static int seal(nx_stage *s, const struct nx_fs_entry *e, nx_error *err)
{
	struct stat st;
	mode_t mode;
	int fd, rc = 0;

	if (S_ISREG(e->mode)) {
		mode = (e->mode & S_IXUSR) ? 0555 : 0444;
		fd = openat(s->dirfd, e->path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	} else if (S_ISDIR(e->mode)) {
		mode = 0555;
		fd = openat(s->dirfd, e->path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	} else {
		return nx_error_set(err, NX_EUNSAFE, e->path, 0, -1,
				    "%s in the staging directory is neither a file nor a directory",
				    e->path);
	}
	if (fd < 0)
		return nx_error_errno(err, NX_EIO, errno, e->path, "cannot open staged %s", e->path);
	/* bundle files are plain: no xattr, ACL or file capability goes out */
	rc = nx_fs_clear_xattrs(fd, e->path, err);
	/* a mode already final is left alone, so that the file's ctime is
	 * what its writer saw (pull takes a digest as known only while the
	 * ctime it recorded holds: DESIGN-NOTES, "pull hashes once") */
	if (!rc && ((fstat(fd, &st) < 0 || (st.st_mode & 07777) != mode) && fchmod(fd, mode) < 0))
		rc = nx_error_errno(err, NX_EIO, errno, e->path, "cannot seal staged %s", e->path);
	if (!rc && !s->nosync && fsync(fd) < 0)
		rc = nx_error_errno(err, NX_EIO, errno, e->path, "cannot seal staged %s", e->path);
	close(fd);
	return rc;
}

void nx_stage_set_nosync(nx_stage *s, bool nosync)
{
	s->nosync = nosync;
}

int nx_stage_seal(nx_stage *s, nx_error *err)
{
	struct nx_fs_entry *e = NULL;
	size_t n = 0, i;
	int rc;

	rc = nx_fs_walk(&e, &n, s->dirfd, STAGE_ENTRIES_MAX, err);
	if (rc)
		goto out;
	for (i = 0; i < n && !rc; i++)
		if (!S_ISDIR(e[i].mode))
			rc = seal(s, &e[i], err);
	/* Children before parents: reverse byte order puts "a/b" before "a". */
	for (i = n; i > 0 && !rc; i--)
		if (S_ISDIR(e[i - 1].mode))
			rc = seal(s, &e[i - 1], err);
	if (rc)
		goto out;
	if ((rc = nx_fs_clear_xattrs(s->dirfd, s->stage_path, err)))
		goto out;
	if (fchmod(s->dirfd, 0555) < 0 || (!s->nosync && fsync(s->dirfd) < 0))
		rc = nx_error_errno(err, NX_EIO, errno, s->stage_path, "cannot seal %s", s->stage_path);
out:
	nx_fs_entries_free(e, n);
	return rc;
}

int nx_stage_publish(nx_stage *s, nx_error *err)
{
	int rc = 0;

	if (s->published)
		return nx_error_set(err, NX_EINTERNAL, s->final_path, 0, -1, "stage already published");
	/* Sealing twice is harmless; it makes sure nothing changed modes since. */
	rc = nx_stage_seal(s, err);
	if (rc)
		return rc;
	if (renameat2(s->parentfd, s->stage_name, s->parentfd, s->name, RENAME_NOREPLACE) == 0) {
		s->published = 1;
	} else if (errno == EEXIST && s->force) {
		if (renameat2(s->parentfd, s->stage_name, s->parentfd, s->name, RENAME_EXCHANGE) < 0) {
			rc = nx_error_errno(err, NX_EIO, errno, s->final_path,
					    "cannot replace %s", s->final_path);
			goto out;
		}
		s->published = 1;
		/* The old tree now has the staging name; a leftover is swept later. */
		(void)rm_tree_at(s->parentfd, s->stage_name, 0);
	} else if (errno == EEXIST) {
		rc = nx_error_set(err, NX_EEXIST, s->final_path, 0, -1,
				  "%s appeared while building; nothing was replaced, pass --force "
				  "to replace it", s->final_path);
		goto out;
	} else {
		rc = nx_error_errno(err, NX_EIO, errno, s->final_path,
				    "cannot rename the staging directory to %s (it must be on a "
				    "filesystem with renameat2)", s->final_path);
		goto out;
	}
	if (!s->nosync && fsync(s->parentfd) < 0)
		rc = nx_error_errno(err, NX_EIO, errno, s->final_path,
				    "published %s but cannot sync its directory", s->final_path);
out:
	return rc;
}

int nx_stage_remove_signal_safe(const nx_stage *s)
{
	if (!s || s->published || s->parentfd < 0 || !s->stage_name)
		return 0;
	return rm_tree_at(s->parentfd, s->stage_name, 0);
}

void nx_stage_free(nx_stage *s)
{
	if (!s)
		return;
	if (!s->published) {
		s->published = 1; /* a signal handler now has nothing to do */
		(void)rm_tree_at(s->parentfd, s->stage_name, 0);
	}
	if (s->dirfd >= 0)
		close(s->dirfd);
	if (s->parentfd >= 0)
		close(s->parentfd);
	free(s->final_path);
	free(s->name);
	free(s->stage_name);
	free(s->stage_path);
	free(s);
}

int nx_fs_remove_tree(int parentfd, const char *name, const char *path, nx_error *err)
{
	if (rm_tree_at(parentfd, name, 0) != 0)
		return nx_error_errno(err, NX_EIO, errno, path, "cannot remove all of %s", path);
	return 0;
}
