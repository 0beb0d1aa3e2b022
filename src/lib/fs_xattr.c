/*
 * fs_xattr.c - extended attributes of a bundle file (nexus/fs.h).  A bundle
 * file is its bytes and its mode, nothing else: an xattr carries data the
 * manifest does not cover, and security.capability grants privileges as a
 * setuid bit does.
 */
#include "nexus/fs.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>

#define XATTR_LIST_MAX_BYTES 65536   /* the kernel's own limit (XATTR_LIST_MAX) */

/* The NUL-separated list of names into a new buffer; *out_len 0 when none. */
static int list(char **out, size_t *out_len, int fd, const char *path, nx_error *err)
{
	char *names = malloc(XATTR_LIST_MAX_BYTES);
	ssize_t n;

	*out = NULL;
	*out_len = 0;
	if (!names)
		return nx_error_set(err, NX_ENOMEM, path, 0, -1, "out of memory");
	n = flistxattr(fd, names, XATTR_LIST_MAX_BYTES);
	if (n < 0 && (errno == ENOTSUP || errno == ENODATA))
		n = 0;   /* a filesystem without xattrs has none */
	if (n < 0) {
		free(names);
		return nx_error_errno(err, NX_EIO, errno, path,
				      "cannot list the extended attributes of %s", path);
	}
	*out = names;
	*out_len = (size_t)n;
	return 0;
}

int nx_fs_xattrs(char **out, int fd, const char *path, nx_error *err)
{
	char *names = NULL, *s = NULL;
	size_t n = 0, i;
	int rc;

	*out = NULL;
	if ((rc = list(&names, &n, fd, path, err)) || !n)
		goto out_free;
	if (!(s = malloc(2 * n + 1))) {
		rc = nx_error_set(err, NX_ENOMEM, path, 0, -1, "out of memory");
		goto out_free;
	}
	for (i = 0, s[0] = '\0'; i < n; i += strlen(names + i) + 1) {
		if (s[0])
			strcat(s, ", ");
		strncat(s, names + i, n - i);
	}
	*out = s;
out_free:
	free(names);
	return rc;
}

int nx_fs_clear_xattrs(int fd, const char *path, nx_error *err)
{
	char *names = NULL;
	size_t n = 0, i;
	int rc;

	if ((rc = list(&names, &n, fd, path, err)))
		return rc;
	for (i = 0; !rc && i < n; i += strlen(names + i) + 1)
		if (fremovexattr(fd, names + i) < 0 && errno != ENODATA)
			rc = nx_error_errno(err, NX_EIO, errno, path,
					    "cannot remove extended attribute %s of %s", names + i, path);
	free(names);
	return rc;
}
