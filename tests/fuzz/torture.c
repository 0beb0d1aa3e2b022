/*
 * torture.c - allocation-failure injection for the fuzz replays, as curl's
 * torture tests do it: the replay is linked with -Wl,--wrap for each
 * allocator our code calls, so every call from our objects comes here.
 * While armed, calls are counted and the Nth one fails (returns NULL / -1
 * with errno ENOMEM); the replay first counts the calls an input makes and
 * then replays it once per call, failing that call.  A crash, an ASan or
 * UBSan report, or a leak reported by LSan at exit is a bug in the error
 * path of the allocation that failed.
 *
 * Only our objects' calls are failed.  jansson allocates inside its shared
 * library, where --wrap does not reach; routing its allocation hooks here
 * too was tried: jansson 2.14's json_loadb itself crashes (SEGV in its
 * lexer) when its allocator fails, which is not ours to fix.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "torture.h"

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
int __real_posix_memalign(void **p, size_t align, size_t n);

void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);
char *__wrap_strdup(const char *s);
char *__wrap_strndup(const char *s, size_t n);
int __wrap_posix_memalign(void **p, size_t align, size_t n);
int __wrap_asprintf(char **out, const char *fmt, ...);

static int armed;
static unsigned long calls, fail_at;
static int failed;

void nx_torture_arm(unsigned long nth)
{
	calls = 0;
	fail_at = nth;
	failed = 0;
	armed = 1;
}

unsigned long nx_torture_disarm(int *did_fail)
{
	armed = 0;
	if (did_fail)
		*did_fail = failed;
	return calls;
}

/* Counts the call; true when this is the one to fail. */
static int fail_now(void)
{
	if (!armed)
		return 0;
	if (++calls != fail_at)
		return 0;
	failed = 1;
	errno = ENOMEM;
	return 1;
}

void *__wrap_malloc(size_t n)
{
	return fail_now() ? NULL : __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t size)
{
	return fail_now() ? NULL : __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t n)
{
	return fail_now() ? NULL : __real_realloc(p, n);
}

char *__wrap_strdup(const char *s)
{
	return fail_now() ? NULL : __real_strdup(s);
}

char *__wrap_strndup(const char *s, size_t n)
{
	return fail_now() ? NULL : __real_strndup(s, n);
}

int __wrap_posix_memalign(void **p, size_t align, size_t n)
{
	return fail_now() ? ENOMEM : __real_posix_memalign(p, align, n);
}

int __wrap_asprintf(char **out, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (fail_now())
		return -1;
	va_start(ap, fmt);
	n = vasprintf(out, fmt, ap);
	va_end(ap);
	return n;
}
