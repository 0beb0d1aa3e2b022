/*
 * nexus/error.h - the one error contract of libnexus.
 *
 * Every libnexus function that can fail returns int: 0 on success or a
 * negative NX_E* code.  It also takes an optional `nx_error *err` (may be
 * NULL) that it fills on failure with the code, a lower-case message that
 * names the file and says what to do, and where known the path, line and
 * byte offset.  Errors pass up unchanged: a caller that gets an error from a
 * callee returns it as it is, without rewriting the message.
 *
 * libnexus never prints and never exits; the programs map codes to exit
 * statuses with nx_error_exit_status().
 */
#ifndef NEXUS_ERROR_H
#define NEXUS_ERROR_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

enum nx_code {
	NX_OK = 0,
	NX_EUSAGE = -1,   /* bad option or argument (exit 2) */
	NX_ECONFIG = -2,  /* invalid nexus.yaml / runtime.yaml / key (exit 2) */
	NX_EIO = -3,      /* read/write/open failure (exit 3) */
	NX_EFORMAT = -4,  /* malformed input file: ONNX, JSON, YAML syntax (exit 3) */
	NX_ENOMEM = -5,   /* allocation failed (exit 3) */
	NX_ELIMIT = -6,   /* a named cap on untrusted input was exceeded (exit 3) */
	NX_EEXIST = -7,   /* output exists and --force was not given (exit 2) */
	NX_EUNSAFE = -8,  /* symlink, hard link, escaping path, special file (exit 3) */
	NX_ECHECK = -9,   /* a check failed: the verdict is FAIL (exit 1) */
	NX_EDEP = -10,    /* a required program or library is missing (exit 3) */
	NX_EINTERNAL = -11 /* a bug in nexus (exit 3) */
};

#define NX_ERROR_MSG_MAX 1024
#define NX_ERROR_PATH_MAX 4096

typedef struct nx_error {
	int code;                      /* one of enum nx_code */
	char message[NX_ERROR_MSG_MAX];/* lower-case, names the file, says what to do */
	char path[NX_ERROR_PATH_MAX];  /* file concerned, "" if none */
	long line;                     /* 1-based line, 0 if not applicable */
	long long offset;              /* byte offset, -1 if not applicable */
} nx_error;

/* Reset *err to "no error". Accepts NULL. */
void nx_error_clear(nx_error *err);

/*
 * Fill *err (if not NULL) and return `code`, so that a failing function can
 * `return nx_error_set(err, NX_EIO, path, 0, -1, "cannot read %s: %s", ...)`.
 * path may be NULL; line 0 and offset -1 mean "unknown".
 */
int nx_error_set(nx_error *err, int code, const char *path, long line,
		 long long offset, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));

/* nx_error_set(err, NX_ENOMEM, path, 0, -1, "out of memory"): returns
 * NX_ENOMEM.  path may be NULL. */
int nx_error_oom(nx_error *err, const char *path);

/* Same as nx_error_set with strerror(errnum) appended as ": <reason>". */
int nx_error_errno(nx_error *err, int code, int errnum, const char *path,
		   const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Short stable name of a code ("io", "format", ...). Never NULL. */
const char *nx_error_name(int code);

/* Process exit status for a code: 0, 1 (check failed), 2 (usage/config) or 3. */
int nx_error_exit_status(int code);

/*
 * A size for a message, as people read it and nexus.yaml's sizes are
 * written: "812 bytes", "1.2 KiB", "4.0 MiB", "2.5 GiB" (binary units).
 * Returns out.
 */
#define NX_SIZE_STR_MAX 32
char *nx_size_str(char out[NX_SIZE_STR_MAX], unsigned long long bytes);

/*
 * A path as one shell word, for a command a message tells the user to run:
 * unchanged when it is made of [A-Za-z0-9_./:=@%+,-] only, else in single
 * quotes ('\'' for a quote), so that "nexus fix-modes /tmp/my bundle"
 * pastes as one argument.  Cut to fit n bytes (n >= 1).  Returns out.
 */
char *nx_shell_word(char *out, size_t n, const char *s);

#ifdef __cplusplus
}
#endif
#endif
