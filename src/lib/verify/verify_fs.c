/*
 * verify_fs.c - the verifier's two uses of nexus/fs.h that need a twist:
 * bundle files opened with no size cap, and the trusted list, which the user
 * names by a path of their own (so links are followed).
 */
#include "verify_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

int vfy_open_regular(int *out, struct stat *out_st, int dirfd, const char *relpath,
		     nx_error *err)
{
	return nx_fs_open_regular(out, out_st, dirfd, relpath, UINT64_MAX, err);
}

int vfy_read_path(char **out, size_t *out_len, struct stat *out_st, const char *path,
		  size_t max_size, nx_error *err)
{
	struct stat st;
	int fd, rc;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd < 0)
		return nx_error_errno(err, NX_EIO, errno, path, "cannot open %s", path);
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
		rc = nx_error_set(err, NX_EIO, path, 0, -1, "%s is not a readable regular file", path);
	else
		rc = nx_fs_read_fd(out, out_len, fd, path, max_size, err);
	if (!rc && out_st)
		*out_st = st;
	close(fd);
	return rc;
}
