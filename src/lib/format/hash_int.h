/*
 * hash_int.h - copy-while-hashing for libnexus modules (not public: it
 * takes OpenSSL's digest context so that a caller can hash a whole output
 * made of literal pieces and copied ranges in one running digest).
 */
#ifndef NEXUS_HASH_INT_H
#define NEXUS_HASH_INT_H

#include <stdint.h>

#include <openssl/evp.h>

#include "nexus/hash.h"

/*
 * Copy [src_off, src_off + len) of src_fd to dst_fd at dst_off, feeding the
 * same bytes to ctx: each source byte is read once, written and hashed from
 * the same buffer, the hashing on a second thread.  Errors name src_path
 * (reads; NX_EFORMAT with the offset when the source is shorter) or
 * dst_name (writes).  On error ctx holds a partial digest: abandon it.
 */
int hash_copy_range(EVP_MD_CTX *ctx, int dst_fd, uint64_t dst_off, int src_fd,
		    uint64_t src_off, uint64_t len, const char *src_path, const char *dst_name,
		    nx_error *err);

/*
 * Hand bytes [off, off + len) of fd to fn, NX_HASH_CHUNK at a time, read
 * into one page-aligned buffer (hash.c says why the alignment matters).
 * Errors name path: NX_EIO for a failed read, NX_EFORMAT with the offset
 * when the file ends first, NX_ENOMEM; fn's non-zero return ends the read
 * and is returned as it is.
 */
int read_range(int fd, const char *path, uint64_t off, uint64_t len,
	       int (*fn)(void *ctx, const unsigned char *buf, size_t n), void *ctx,
	       nx_error *err);

/*
 * Fail a write of dst_name (NULL: "the copy") with errno e: NX_EIO naming
 * it, and on a full disk or quota saying what to do.  Returns NX_EIO.
 */
int write_error(nx_error *err, int e, const char *dst_name);

/*
 * The same copy without a digest: copy_file_range (the kernel moves the
 * pages, or the filesystem shares the blocks), falling back to pread/pwrite
 * where it is refused (another filesystem, old kernel).
 */
int copy_range_plain(int dst_fd, uint64_t dst_off, int src_fd, uint64_t src_off, uint64_t len,
		     const char *src_path, const char *dst_name, nx_error *err);

#endif
