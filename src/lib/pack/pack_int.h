/*
 * pack_int.h - private to src/lib/pack/: libarchive's entry points, opened
 * with dlopen (pack_lib.c), and the walk of a bundle's tree that the other
 * files share.
 */
#ifndef NEXUS_PACK_INT_H
#define NEXUS_PACK_INT_H

#include <archive.h>
#include <archive_entry.h>

#include "nexus/manifest.h"
#include "nexus/pack.h"

/* The libarchive functions used here: archive_<name> as libarchive.so.13
 * exports them, held as table-><name> (a member named like the function
 * would change its meaning in C++, which the header check compiles). */
#define NX_PACK__AR_FUNCS(X) \
	X(error_string) \
	X(write_new) X(write_set_format_pax_restricted) \
	X(write_add_filter_zstd) X(write_set_filter_option) \
	X(write_open_fd) X(write_header) X(write_data) \
	X(write_close) X(write_free) \
	X(entry_new) X(entry_free) X(entry_clear) \
	X(entry_set_pathname) X(entry_set_size) X(entry_set_filetype) \
	X(entry_set_perm) X(entry_set_mtime) \
	X(read_new) X(read_support_format_tar) \
	X(read_support_filter_zstd) X(read_open_fd) \
	X(read_next_header) X(read_data) X(read_free) \
	X(entry_pathname) X(entry_filetype) X(entry_size) \
	X(entry_size_is_set) X(entry_hardlink) X(entry_symlink)

#define NX_PACK__AR_SLOT(name) __typeof__(archive_##name) *name;
struct nx_pack__ar {
	NX_PACK__AR_FUNCS(NX_PACK__AR_SLOT)
};
#undef NX_PACK__AR_SLOT

/* The table, loaded on first use; NX_EDEP naming the Debian package when
 * libarchive.so.13 cannot be opened. */
int nx_pack__ar(const struct nx_pack__ar **out, nx_error *err);

/*
 * Open the bundle directory at path and load its manifest.  *dirfd_out is
 * the directory (O_PATH-free, readable), the caller closes it and frees
 * *m_out.  NX_EIO / NX_EFORMAT naming path.
 */
int nx_pack__open_bundle(int *dirfd_out, nx_manifest **m_out, const char *path, nx_error *err);

/*
 * Walk the bundle open at dirfd: every entry must be a directory holding a
 * listed file, a regular file listed in m, or manifest.json.  NX_EUNSAFE
 * naming the first entry that is not the bundle's (bundle names the tree in
 * the message).  *out / *n as nx_fs_walk.
 */
int nx_pack__walk_bundle(struct nx_fs_entry **out, size_t *n, int dirfd, const nx_manifest *m,
			 const char *bundle, nx_error *err);

#endif
