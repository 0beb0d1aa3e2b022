/*
 * pack_lib.c - libarchive through dlopen.  libarchive13 links some fifteen
 * shared libraries (libxml2, nettle, lzma, bz2, lz4, acl, ...); linking it
 * would load them at every start of every nexus verb, inspect's included,
 * for the two verbs that need them: the same reason libcurl is opened by
 * src/lib/oci/http.c (docs/DESIGN-NOTES.md).
 */
#include "pack_int.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

static struct nx_pack__ar table;
static int loaded;                  /* 1 loaded, -1 failed */
static char load_error[512];
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void load(void)
{
	static const char *const names[] = {
#define NAME(name) "archive_" #name,
		NX_PACK__AR_FUNCS(NAME)
#undef NAME
	};
	void **slot = (void **)&table;
	void *h = dlopen("libarchive.so.13", RTLD_NOW | RTLD_LOCAL);
	size_t i;

	loaded = -1;
	if (!h) {
		snprintf(load_error, sizeof(load_error),
			 "pack and unpack need libarchive (Debian package libarchive13): %s",
			 dlerror());
		return;
	}
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (!(slot[i] = dlsym(h, names[i]))) {
			snprintf(load_error, sizeof(load_error),
				 "libarchive.so.13 has no %s: install Debian's libarchive13 (3.6 or "
				 "later)", names[i]);
			return;
		}
	}
	loaded = 1;
}

int nx_pack__ar(const struct nx_pack__ar **out, nx_error *err)
{
	pthread_once(&once, load);
	if (loaded != 1)
		return nx_error_set(err, NX_EDEP, NULL, 0, -1, "%s", load_error);
	*out = &table;
	return 0;
}
