"""An LD_PRELOAD shim that fails the Nth call a program makes to one
pthread function (pthread_mutex_init, pthread_cond_init, pthread_create,
pthread_condattr_init or pthread_condattr_setclock), so that the tests can
run every such error path (docs/STYLE: torture what can fail).

Only calls made from the main program's own code count: ONNX Runtime,
libmicrohttpd and glibc make their own, and how they fail is theirs.  The
shim says on stderr which call it failed ("SHIM: failed NAME #N")."""
import subprocess

SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uintptr_t lo, hi;    /* the main program's code */
static int calls;

static int main_text(struct dl_phdr_info *info, size_t size, void *data)
{
	int i;

	(void)size;
	(void)data;
	for (i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *p = &info->dlpi_phdr[i];

		if (p->p_type == PT_LOAD && (p->p_flags & PF_X)) {
			lo = info->dlpi_addr + p->p_vaddr;
			hi = lo + p->p_memsz;
		}
	}
	return 1;               /* the first object is the program */
}

/* true: fail this call (the SHIM_NTH-th of SHIM_FAIL from the program) */
static int fire(const char *name, void *from)
{
	const char *want = getenv("SHIM_FAIL"), *nth = getenv("SHIM_NTH");
	char msg[96];
	ssize_t w;
	int k;

	if (!want || !nth || strcmp(want, name))
		return 0;
	if (!lo)
		dl_iterate_phdr(main_text, NULL);
	if ((uintptr_t)from < lo || (uintptr_t)from >= hi)
		return 0;
	k = __atomic_add_fetch(&calls, 1, __ATOMIC_SEQ_CST);
	if (k != atoi(nth))
		return 0;
	k = snprintf(msg, sizeof(msg), "SHIM: failed %s #%d\n", name, k);
	w = write(2, msg, (size_t)k);
	(void)w;
	return 1;
}

int pthread_mutex_init(pthread_mutex_t *m, const pthread_mutexattr_t *a)
{
	int (*real)(pthread_mutex_t *, const pthread_mutexattr_t *) =
		(int (*)(pthread_mutex_t *, const pthread_mutexattr_t *))dlsym(RTLD_NEXT, "pthread_mutex_init");

	return fire("pthread_mutex_init", __builtin_return_address(0)) ? ENOMEM : real(m, a);
}

int pthread_cond_init(pthread_cond_t *c, const pthread_condattr_t *a)
{
	/* the current condition variables, not the GLIBC_2.2.5 compatibility ones */
	int (*real)(pthread_cond_t *, const pthread_condattr_t *) =
		(int (*)(pthread_cond_t *, const pthread_condattr_t *))
		dlvsym(RTLD_NEXT, "pthread_cond_init", "GLIBC_2.3.2");

	return fire("pthread_cond_init", __builtin_return_address(0)) ? ENOMEM : real(c, a);
}

int pthread_condattr_init(pthread_condattr_t *a)
{
	int (*real)(pthread_condattr_t *) =
		(int (*)(pthread_condattr_t *))dlsym(RTLD_NEXT, "pthread_condattr_init");

	return fire("pthread_condattr_init", __builtin_return_address(0)) ? ENOMEM : real(a);
}

int pthread_condattr_setclock(pthread_condattr_t *a, clockid_t id)
{
	int (*real)(pthread_condattr_t *, clockid_t) =
		(int (*)(pthread_condattr_t *, clockid_t))dlsym(RTLD_NEXT, "pthread_condattr_setclock");

	return fire("pthread_condattr_setclock", __builtin_return_address(0)) ? EINVAL : real(a, id);
}

int pthread_create(pthread_t *t, const pthread_attr_t *a, void *(*fn)(void *), void *arg)
{
	int (*real)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *) =
		(int (*)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *))
		dlsym(RTLD_NEXT, "pthread_create");

	return fire("pthread_create", __builtin_return_address(0)) ? EAGAIN : real(t, a, fn, arg);
}
"""

FUNCTIONS = ("pthread_mutex_init", "pthread_cond_init", "pthread_create",
             "pthread_condattr_init", "pthread_condattr_setclock")


def build(tmp):
    """The shim, compiled into tmp; its path."""
    src, so = tmp / "pthread_shim.c", tmp / "pthread_shim.so"
    src.write_text(SHIM)
    subprocess.run(["cc", "-shared", "-fPIC", "-O1", "-o", so, src, "-ldl"], check=True)
    return so


def env(shim, name, nth, base):
    """base's environment, with the shim failing call nth of name"""
    e = dict(base, LD_PRELOAD=str(shim), SHIM_FAIL=name, SHIM_NTH=str(nth))
    if "ASAN_OPTIONS" in e:     # make e2e-asan: the shim comes before ASan's runtime
        e["ASAN_OPTIONS"] += ":verify_asan_link_order=0"
    return e
