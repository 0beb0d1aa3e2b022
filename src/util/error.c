/* error.c - the error contract of nexus/error.h. */
#include "nexus/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void nx_error_clear(nx_error *err)
{
	if (!err)
		return;
	err->code = NX_OK;
	err->message[0] = '\0';
	err->path[0] = '\0';
	err->line = 0;
	err->offset = -1;
}

static void fill(nx_error *err, int code, const char *path, long line,
		 long long offset, const char *fmt, va_list ap)
{
	err->code = code;
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	snprintf(err->path, sizeof(err->path), "%s", path ? path : "");
	err->line = line;
	err->offset = offset;
}

int nx_error_set(nx_error *err, int code, const char *path, long line,
		 long long offset, const char *fmt, ...)
{
	va_list ap;

	if (!err)
		return code;
	va_start(ap, fmt);
	fill(err, code, path, line, offset, fmt, ap);
	va_end(ap);
	return code;
}

int nx_error_oom(nx_error *err, const char *path)
{
	return nx_error_set(err, NX_ENOMEM, path, 0, -1, "out of memory");
}

int nx_error_errno(nx_error *err, int code, int errnum, const char *path,
		   const char *fmt, ...)
{
	va_list ap;
	size_t n;

	if (!err)
		return code;
	va_start(ap, fmt);
	fill(err, code, path, 0, -1, fmt, ap);
	va_end(ap);
	n = strlen(err->message);
	snprintf(err->message + n, sizeof(err->message) - n, ": %s",
		 strerror(errnum));
	return code;
}

const char *nx_error_name(int code)
{
	switch (code) {
	case NX_OK: return "ok";
	case NX_EUSAGE: return "usage";
	case NX_ECONFIG: return "config";
	case NX_EIO: return "io";
	case NX_EFORMAT: return "format";
	case NX_ENOMEM: return "nomem";
	case NX_ELIMIT: return "limit";
	case NX_EEXIST: return "exists";
	case NX_EUNSAFE: return "unsafe";
	case NX_ECHECK: return "check";
	case NX_EDEP: return "dependency";
	default: return "internal";
	}
}

int nx_error_exit_status(int code)
{
	switch (code) {
	case NX_OK: return 0;
	case NX_ECHECK: return 1;
	case NX_EUSAGE:
	case NX_ECONFIG:
	case NX_EEXIST: return 2;
	default: return 3;
	}
}

char *nx_shell_word(char *out, size_t n, const char *s)
{
	size_t o = 0;
	const char *p;

	if (!s[strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_./:=@%+,-")] &&
	    *s) {
		snprintf(out, n, "%s", s);
		return out;
	}
	/* room for the closing quote and the NUL is kept at every step */
	if (n >= 3)
		out[o++] = '\'';
	for (p = s; *p && n >= 3; p++) {
		const char *w = *p == '\'' ? "'\\''" : NULL;
		size_t len = w ? 4 : 1;

		if (o + len + 2 > n)
			break;
		if (w)
			memcpy(out + o, w, len);
		else
			out[o] = *p;
		o += len;
	}
	if (n >= 3)
		out[o++] = '\'';
	out[o < n ? o : n - 1] = '\0';
	return out;
}

char *nx_size_str(char out[NX_SIZE_STR_MAX], unsigned long long bytes)
{
	static const char *const units[] = { "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
	double v = (double)bytes;
	int u = -1;

	if (bytes < 1024) {
		snprintf(out, NX_SIZE_STR_MAX, "%llu byte%s", bytes, bytes == 1 ? "" : "s");
		return out;
	}
	while (v >= 1024.0 && u < 5) {
		v /= 1024.0;
		u++;
	}
	snprintf(out, NX_SIZE_STR_MAX, "%.1f %s", v, units[u]);
	return out;
}
