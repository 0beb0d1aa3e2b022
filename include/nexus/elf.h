/*
 * nexus/elf.h - what an ELF64 program needs at load time, read without
 * running it.
 *
 * The sandbox of TRV-5 (nexus/sandbox.h) shows an untrusted binary nothing
 * but its own ELF library closure, so that closure has to be computed
 * without `ldd` (which may execute the binary).  This module reads the
 * program headers and the dynamic section itself: PT_INTERP, DT_NEEDED,
 * DT_RUNPATH and DT_RPATH.
 *
 * Input is hostile: every offset and size is checked against the file size
 * before it is read, every count has a named cap, and strings must be
 * NUL-terminated inside the string table.  A malformed file is NX_EFORMAT,
 * never a crash.
 *
 * Library search (nx_elf_closure), a deliberate subset of ld.so(8):
 *   1. the object's DT_RUNPATH (or DT_RPATH when it has no DT_RUNPATH),
 *      entries with $ORIGIN / ${ORIGIN} only (the directory of the object's
 *      real path); other absolute entries are ignored, so that a hostile
 *      binary cannot ask for an arbitrary host directory to be exposed;
 *   2. the system directories NX_ELF_SYSTEM_DIRS, in order.
 * /etc/ld.so.cache is not parsed: inside the sandbox it does not exist
 * either, so ld.so falls back to the same system directories.  A candidate
 * is accepted only if it is an ELF64 file of the same class and machine as
 * the object that needs it and its real path lies under `internal_root` or
 * under a system directory.  Names containing '/' and libraries that are
 * not found are skipped: the binary then fails to load inside the sandbox,
 * which the caller reports.
 */
#ifndef NEXUS_ELF_H
#define NEXUS_ELF_H

#include <stddef.h>
#include <stdint.h>

#include "nexus/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NX_ELF_PHDR_MAX 512          /* program headers of one file */
#define NX_ELF_DYN_MAX 8192          /* dynamic entries of one file */
#define NX_ELF_NEEDED_MAX 256        /* DT_NEEDED entries of one file */
#define NX_ELF_STRTAB_MAX (4u << 20) /* bytes of the dynamic string table read */
#define NX_ELF_PATH_MAX 4096         /* bytes of PT_INTERP and of a search path */
#define NX_ELF_CLOSURE_MAX 1024      /* files in one closure */
#define NX_ELF_DEPTH_MAX 32          /* NEEDED chain length */
#define NX_ELF_VERNEED_MAX 4096      /* version needs (files and their versions) of one file */
#define NX_ELF_GLIBC_MAX 16          /* bytes of nx_elf_info.glibc, NUL included */

/* Searched after RUNPATH, in this order (Debian x86_64 multiarch). */
#define NX_ELF_SYSTEM_DIRS                                                   \
	{ "/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64",    \
	  "/usr/lib64", "/lib", "/usr/lib" }

struct nx_elf_info {
	uint16_t type;       /* e_type: ET_EXEC, ET_DYN, ... */
	uint16_t machine;    /* e_machine */
	char *interp;        /* PT_INTERP, NULL when static or a library */
	char **needed;       /* DT_NEEDED names, in file order */
	size_t nneeded;
	char *runpath;       /* DT_RUNPATH, or DT_RPATH when there is no RUNPATH; NULL */
	/* The highest GLIBC_<x.y> its version needs (DT_VERNEED) name, without
	 * the prefix ("2.34"); "" when it names none.  The oldest glibc the
	 * file loads with (docs/FORMAT.md, "platform"). */
	char glibc[NX_ELF_GLIBC_MAX];
};

/*
 * Read the load-time requirements of the ELF64 little-endian file open at
 * fd (borrowed; read with pread only).  path is for messages.  On success
 * *out is filled (release with nx_elf_info_release).  Errors: NX_EFORMAT
 * (not ELF64 or malformed), NX_ELIMIT (a cap above was exceeded), NX_EIO,
 * NX_ENOMEM.
 */
int nx_elf_read(struct nx_elf_info *out, int fd, const char *path, nx_error *err);

/* Free the members of info (not info itself).  Accepts NULL. */
void nx_elf_info_release(struct nx_elf_info *info);

/*
 * The load-time closure of the binaries (absolute host paths): the
 * interpreter and every library they need, recursively, as the paths ld.so
 * opens them (e.g. "/lib64/ld-linux-x86-64.so.2",
 * "/lib/x86_64-linux-gnu/libc.so.6"; these may be symlinks, which the
 * sandbox reproduces), deduplicated, in discovery order.  Files whose real
 * path is under internal_root (may be NULL; e.g. the bundle, which the
 * sandbox binds anyway) are followed for their own needs but not listed;
 * the binaries themselves are not listed.
 *
 * On success *out is a malloc'd array of *out_n malloc'd strings (free
 * with nx_elf_closure_free).  Errors: those of nx_elf_read for one of the
 * binaries (a malformed library is skipped like a missing one), NX_ELIMIT
 * past NX_ELF_CLOSURE_MAX files, NX_ENOMEM.
 */
int nx_elf_closure(char ***out, size_t *out_n, const char *const *binaries,
		   size_t nbinaries, const char *internal_root, nx_error *err);

void nx_elf_closure_free(char **paths, size_t n);

#define NX_ELF_ARCH_MAX 16           /* bytes of an arch name, NUL included */

/*
 * The platform of a bundle's runtime (docs/FORMAT.md, "platform"): the
 * runtime files of manifest m (bin/nexus_cli, lib/<name>; not the notices),
 * opened beneath dirfd without following links.  *arch is the machine of
 * bin/nexus_cli as uname -m names it ("x86_64", "aarch64"), *glibc the
 * highest GLIBC_x.y any of them needs ("2.34"; "2.2.5" when none needs
 * more, the x86-64 baseline).  Errors: NX_EFORMAT (a file is not ELF64, a
 * machine nexus has no name for, files of different machines), NX_EIO,
 * NX_ELIMIT, NX_ENOMEM, each naming the file.
 */
struct nx_manifest;
int nx_elf_platform(char arch[NX_ELF_ARCH_MAX], char glibc[NX_ELF_GLIBC_MAX], int dirfd,
		    const struct nx_manifest *m, nx_error *err);

#ifdef __cplusplus
}
#endif
#endif
