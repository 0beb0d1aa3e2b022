/*
 * serve_mhd.c - libmicrohttpd through dlopen(): only `serve` needs it, so
 * `run` works on a host without it, and the runtime does not carry
 * Debian's static libmicrohttpd.a, which would pull in gnutls
 * (docs/DESIGN-NOTES.md, "nexus_cli serve").
 */
#include <dlfcn.h>
#include <string.h>

#include "serve.h"

#define SYM(field, name) { #name, offsetof(struct sv_mhd, field) }

static const struct { const char *name; size_t off; } syms[] = {
	SYM(start_daemon, MHD_start_daemon),
	SYM(stop_daemon, MHD_stop_daemon),
	SYM(quiesce_daemon, MHD_quiesce_daemon),
	SYM(create_response_from_buffer, MHD_create_response_from_buffer),
	SYM(create_response_from_callback, MHD_create_response_from_callback),
	SYM(add_response_header, MHD_add_response_header),
	SYM(queue_response, MHD_queue_response),
	SYM(destroy_response, MHD_destroy_response),
	SYM(lookup_connection_value, MHD_lookup_connection_value),
};

int sv_mhd_open(struct sv_mhd *m, nx_error *err)
{
	size_t i;

	memset(m, 0, sizeof(*m));
	if (!(m->dl = dlopen(SV_MHD_SONAME, RTLD_NOW | RTLD_LOCAL)))
		return nx_error_set(err, NX_EDEP, NULL, 0, -1,
				    "serve needs %s (%s); install the Debian package %s",
				    SV_MHD_SONAME, dlerror(), SV_MHD_PACKAGE);
	for (i = 0; i < sizeof(syms) / sizeof(syms[0]); i++) {
		void *p = dlsym(m->dl, syms[i].name);

		if (!p) {
			nx_error_set(err, NX_EDEP, NULL, 0, -1,
				     "%s has no %s; install the Debian package %s (0.9.75 or later)",
				     SV_MHD_SONAME, syms[i].name, SV_MHD_PACKAGE);
			sv_mhd_close(m);
			return NX_EDEP;
		}
		/* POSIX: a function pointer has the representation of a void * */
		memcpy((char *)m + syms[i].off, &p, sizeof(p));
	}
	return 0;
}

void sv_mhd_close(struct sv_mhd *m)
{
	if (m->dl)
		dlclose(m->dl);
	memset(m, 0, sizeof(*m));
}
