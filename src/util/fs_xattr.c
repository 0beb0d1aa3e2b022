/*
 * fs_xattr.c - extended attributes of a bundle file (nexus/fs.h).  A bundle
 * file is its bytes and its mode, nothing else: an xattr carries data the
 * manifest does not cover, and security.capability grants privileges as a
 * setuid bit does.
 */
#include "nexus/fs.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>

#define XATTR_LIST_MAX_BYTES 65536   /* the kernel's own limit (XATTR_LIST_MAX) */

/* The policy's label, which every file on an SELinux host carries: not ours
 * to copy or remove, and judged by nx_fs_selinux_label's callers. */
static bool is_label(const char *name)
{
	return strcmp(name, NX_FS_SELINUX_XATTR) == 0;
}

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
		if (is_label(names + i))
			continue;
		if (s[0])
			strcat(s, ", ");
		strncat(s, names + i, n - i);
	}
	if (s[0])
		*out = s, s = NULL;
out_free:
	free(s);
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
		if (!is_label(names + i) && fremovexattr(fd, names + i) < 0 && errno != ENODATA)
			rc = nx_error_errno(err, NX_EIO, errno, path,
					    "cannot remove extended attribute %s of %s", names + i, path);
	free(names);
	return rc;
}

/* A label is what SELinux policies write: user:role:type[:level], in a
 * short alphabet; anything else is data. */
static bool plausible_label(const char *v, size_t n)
{
	size_t i, colons = 0;

	for (i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)v[i];
		if (ch == ':')
			colons++;
		else if (!isalnum(ch) && !strchr("_.,-", ch))
			return false;
	}
	return n > 0 && colons >= 2 && colons <= 4;
}

int nx_fs_selinux_label(char **out, int fd, const char *path, nx_error *err)
{
	char buf[NX_FS_SELINUX_LABEL_MAX + 1];
	ssize_t n;

	*out = NULL;
	n = fgetxattr(fd, NX_FS_SELINUX_XATTR, buf, sizeof(buf));
	if (n < 0 && (errno == ENODATA || errno == ENOTSUP))
		return 0;
	if (n < 0 && errno != ERANGE)
		return nx_error_errno(err, NX_EIO, errno, path,
				      "cannot read the SELinux label of %s", path);
	if (n > 0 && buf[n - 1] == '\0')
		n--;   /* the kernel's labels end in a NUL */
	if (n < 0 || (size_t)n > NX_FS_SELINUX_LABEL_MAX || !plausible_label(buf, (size_t)n))
		return nx_error_set(err, NX_EUNSAFE, path, 0, -1,
				    "%s has a %s attribute that is no SELinux label: it carries "
				    "data the manifest does not cover", path, NX_FS_SELINUX_XATTR);
	if (!(*out = strndup(buf, (size_t)n)))
		return nx_error_set(err, NX_ENOMEM, path, 0, -1, "out of memory");
	return 0;
}
