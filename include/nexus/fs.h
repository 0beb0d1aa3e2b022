/*
 * nexus/fs.h - filesystem access that never follows a link out of where it
 * was asked to look, and the atomic publish of a bundle directory.
 *
 * Every path given to these functions is relative to a directory fd and is
 * resolved *beneath* it: no symlink is followed (not even one that points
 * back inside), no ".." may climb out, no mount point is crossed.  On kernels
 * with openat2(2) the kernel enforces this (RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS
 * | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV); elsewhere a checked walk opens
 * one component at a time with O_NOFOLLOW and refuses "..".
 *
 * Errors follow nexus/error.h: NX_EUNSAFE for a symlink, an escaping path or
 * a file of the wrong type (the message names the path and what it is),
 * NX_EIO for the system saying no (the message carries strerror), NX_ELIMIT
 * for a cap, NX_ENOMEM.  Output parameters are written only on success.
 */
#ifndef NEXUS_FS_H
#define NEXUS_FS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

#include "nexus/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NX_FS_DEPTH_MAX 32      /* directory nesting walked or removed */
#define NX_FS_RELPATH_MAX 4095  /* bytes of one relative path */

/*
 * Open relpath beneath dirfd without following any symlink.  flags are
 * open(2) flags; O_CLOEXEC|O_NOFOLLOW are always added.  O_CREAT is not
 * supported (there is no mode).  relpath must be relative and non-empty.
 * On success *out is a new fd the caller closes.
 */
int nx_fs_open_beneath(int *out, int dirfd, const char *relpath, int flags,
		       nx_error *err);

/*
 * Open a regular file beneath dirfd for reading.  It is opened O_NONBLOCK so
 * that a FIFO cannot block, then fstat'ed: anything but a regular file is
 * NX_EUNSAFE naming the type; st_size > max_size is NX_ELIMIT.  *out_st (may
 * be NULL) is the fstat of the returned fd, so callers check nlink, mode and
 * size of exactly what they read.  O_NONBLOCK is cleared before returning.
 */
int nx_fs_open_regular(int *out, struct stat *out_st, int dirfd,
		       const char *relpath, uint64_t max_size, nx_error *err);

#define NX_FS_SELINUX_XATTR "security.selinux"
#define NX_FS_SELINUX_LABEL_MAX 255   /* bytes of a label we accept */

/*
 * The names of fd's extended attributes (file capabilities included),
 * ", "-joined, in a new string the caller frees; *out is NULL when there
 * are none (also on a filesystem without them).  The SELinux label
 * (NX_FS_SELINUX_XATTR), which the host's policy puts on every file, is
 * left out: see nx_fs_selinux_label.  Errors: NX_EIO, NX_ENOMEM.
 */
int nx_fs_xattrs(char **out, int fd, const char *path, nx_error *err);

/* Remove every extended attribute of fd but its SELinux label (a staged
 * bundle file inherits a default ACL from its directory; the label is the
 * host policy's).  Errors: NX_EIO, NX_ENOMEM. */
int nx_fs_clear_xattrs(int fd, const char *path, nx_error *err);

/*
 * fd's SELinux label in a new string (*out NULL when it has none).  A value
 * that is not label-shaped (user:role:type[:level] in [A-Za-z0-9_.,-], at
 * most NX_FS_SELINUX_LABEL_MAX bytes) is NX_EUNSAFE: it would carry data.
 * Errors: NX_EUNSAFE, NX_EIO, NX_ENOMEM.
 */
int nx_fs_selinux_label(char **out, int fd, const char *path, nx_error *err);

/*
 * Read a whole regular file beneath dirfd (rules of nx_fs_open_regular) into
 * a new NUL-terminated buffer the caller frees; *out_len excludes the NUL.
 * A file that grows past max_size while being read is NX_ELIMIT.
 */
int nx_fs_read_all(char **out, size_t *out_len, int dirfd, const char *relpath,
		   size_t max_size, nx_error *err);

/*
 * Read fd from its current offset to the end into a new NUL-terminated
 * buffer the caller frees; *out_len excludes the NUL.  fd is borrowed and
 * should be a regular file the caller opened and checked (the verifier's
 * trusted list is one named by the user, outside any bundle); its fstat size
 * over max_size, or growing past it while read, is NX_ELIMIT.  name is used
 * in messages only.
 */
int nx_fs_read_fd(char **out, size_t *out_len, int fd, const char *name,
		  size_t max_size, nx_error *err);

struct nx_fs_entry {
	char *path;    /* relative to the walked directory, '/'-separated */
	mode_t mode;   /* lstat st_mode: type and permission bits */
	uint64_t size;
	nlink_t nlink;
	dev_t dev;
	ino_t ino;
	struct timespec mtime, ctime;  /* a write or rename changes ctime */
};

/*
 * List every entry beneath dirfd - files, directories, symlinks and special
 * files, with lstat semantics, never following a link - sorted by path in
 * byte order, dot-files included, dirfd itself excluded.  More than
 * max_entries entries or a nesting deeper than NX_FS_DEPTH_MAX is NX_ELIMIT.
 * A directory swapped for something else while walked is NX_EUNSAFE.
 * *out is an array of *out_n entries the caller frees with
 * nx_fs_entries_free().
 */
int nx_fs_walk(struct nx_fs_entry **out, size_t *out_n, int dirfd,
	       size_t max_entries, nx_error *err);

/* Free what nx_fs_walk returned.  Accepts NULL. */
void nx_fs_entries_free(struct nx_fs_entry *e, size_t n);

/*
 * Test-only: make nx_fs_open_beneath() use the component-by-component walk
 * even when openat2 is available, so that the fallback is exercised.
 */
void nx_fs_test_force_fallback(bool on);

/*
 * Atomic publish of a directory (docs/INTERNALS.md).
 *
 * nx_stage_create() makes a sibling staging directory
 * "<parent>/.<name>.nexus-stage.<pid>.<random>" (mode 0700) on the same
 * filesystem as final_path, after sweeping stale staging directories of the
 * same <name> whose process is no longer alive.  It refuses with NX_EEXIST
 * when final_path exists and !force (it is checked again, atomically, at
 * publish).  The parent directory of final_path must exist.
 *
 * Files are created in the stage with nx_stage_create_file(); a file created
 * with exec=true is published 0555, every other file 0444, every directory
 * 0555.  The stage may hold only regular files and directories.
 */
typedef struct nx_stage nx_stage;

int nx_stage_create(nx_stage **out, const char *final_path, bool force,
		    nx_error *err);

/* The staging directory's fd (owned by the stage) and path. */
int nx_stage_dirfd(const nx_stage *s);
const char *nx_stage_path(const nx_stage *s);

/*
 * Create relpath (new, O_EXCL) in the stage, open for reading and writing
 * (a digest may follow the writes), making missing parent directories.  *out is an fd the caller closes.
 */
int nx_stage_create_file(int *out, nx_stage *s, const char *relpath, bool exec,
			 nx_error *err);

/*
 * Set the final modes (files 0444, executables 0555, directories 0555) and
 * fsync every file and directory, without publishing: the tree is then in
 * the exact state it will be published in, so it can be verified as such.
 * Nothing can be added to a sealed stage.
 */
int nx_stage_seal(nx_stage *s, nx_error *err);

/*
 * Seal and publish without any fsync: the publish is still atomic for
 * every process (rename after all writes), but after a power loss or
 * kernel crash the published tree may hold files whose contents never
 * reached the disk.  For throw-away build hosts that upload the bundle
 * at once; a torn bundle then fails its manifest's size/SHA-256 check.
 */
void nx_stage_set_nosync(nx_stage *s, bool nosync);

/*
 * Seal (see above), then
 * renameat2(RENAME_NOREPLACE) the stage to final_path.  With force and an
 * existing target: RENAME_EXCHANGE, then remove the old tree.  Finally fsync
 * the parent.  NX_EEXIST if final_path appeared and !force.  After success
 * the stage no longer exists under its staging name.
 */
int nx_stage_publish(nx_stage *s, nx_error *err);

/*
 * Remove the staging tree if not published, close and free.  Accepts NULL.
 */
void nx_stage_free(nx_stage *s);

/*
 * Remove parentfd/name and everything beneath it without following links,
 * making read-only (0555) directories writable first.  NX_EIO naming path
 * when something could not be removed (what could is gone).
 */
int nx_fs_remove_tree(int parentfd, const char *name, const char *path, nx_error *err);

/*
 * Write all len bytes of buf to fd, again after EINTR and short writes.
 * 0, or -1 with errno set (EIO if write made no progress): the caller
 * words the error, naming its file.
 */
int nx_write_all(int fd, const void *buf, size_t len);

/*
 * Read len bytes of fd at offset off into buf, again after EINTR and short
 * reads; only the end of the file stops it early.  Returns the bytes read
 * (less than len only at the end of the file), or -1 with errno set: the
 * caller words the error, naming its file.
 */
ssize_t nx_pread_full(int fd, void *buf, size_t len, uint64_t off);

/*
 * Remove the staging tree using only async-signal-safe system calls and no
 * allocation, for a SIGINT/SIGTERM handler.  Does not free s; a no-op after
 * publish.  Returns 0 or -1.
 */
int nx_stage_remove_signal_safe(const nx_stage *s);

#ifdef __cplusplus
}
#endif
#endif
