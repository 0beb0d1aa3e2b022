/*
 * nexus/hash.h - SHA-256 of files, ranges and buffers (OpenSSL EVP), and a
 * copy that hashes the bytes it copies.
 *
 * All functions read files with pread() from explicit offsets, so they
 * neither use nor move the file offset, and they read exactly the number of
 * bytes they are told: a file that is shorter than announced (it changed
 * after fstat) is an error, bytes past the announced size are never read.
 * `path` is only used in error messages and may be NULL.
 */
#ifndef NEXUS_HASH_H
#define NEXUS_HASH_H

#include <stddef.h>
#include <stdint.h>

#include "nexus/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NX_SHA256_LEN 32

/*
 * Hash exactly `size` bytes of fd from offset 0.  out is written only on
 * success.  NX_EIO on a read error, NX_EFORMAT if the file ends before
 * `size` bytes, NX_ENOMEM.
 */
int nx_sha256_fd(unsigned char out[NX_SHA256_LEN], int fd, uint64_t size,
		 const char *path, nx_error *err);

/* Same as nx_sha256_fd over [offset, offset + len). */
int nx_sha256_range(unsigned char out[NX_SHA256_LEN], int fd, uint64_t offset,
		    uint64_t len, const char *path, nx_error *err);

/* Hash a buffer.  Returns 0, or NX_EINTERNAL if OpenSSL fails. */
int nx_sha256_buf(unsigned char out[NX_SHA256_LEN], const void *buf, size_t len);

/*
 * Copy `size` bytes from src_fd (offset 0) to dst_fd (offset 0) and hash
 * them, reading every source byte once.  Large copies hash on a second
 * thread while the calling thread reads and writes, so the wall time is about
 * max(copy, hash).  dst_fd is not truncated, synced or closed.  Errors as
 * nx_sha256_fd (naming src_path), plus NX_EIO for a failed write, naming
 * dst_path (may be NULL: "the copy") -- on a full disk the user must learn
 * which output did not fit, not which input was being read.
 */
int nx_copy_hash(unsigned char out[NX_SHA256_LEN], int dst_fd, int src_fd,
		 uint64_t size, const char *src_path, const char *dst_path, nx_error *err);

/*
 * A digest that follows a file while it is written.  A thread hashes fd
 * (duplicated) from offset 0 up to the writer's high-water mark, reading
 * the pages the writer has just written (from the page cache), so the
 * writer never waits for SHA-256 and the caller collects the digest later,
 * after other work.  The writer must write the file sequentially and call
 * advance after each write; finish joins the thread.
 */
typedef struct nx_hash_follow nx_hash_follow;

/* Start following fd, which must be open for reading (it is duplicated);
 * name (borrowed until finish) names it in errors. */
int nx_hash_follow_start(nx_hash_follow **out, int fd, const char *name, nx_error *err);
/* The first `written` bytes of the file are written and final. */
void nx_hash_follow_advance(nx_hash_follow *h, uint64_t written);
/* The file is `size` bytes in all: wait for its digest, then free h.
 * NX_EIO or NX_EFORMAT (shorter than size) naming the file. */
int nx_hash_follow_finish(nx_hash_follow *h, uint64_t size, unsigned char out[NX_SHA256_LEN],
			  nx_error *err);
/* Stop and free without a digest.  Accepts NULL. */
void nx_hash_follow_cancel(nx_hash_follow *h);

/* Lower-case hex of a digest, NUL-terminated. */
void nx_hex(char out[2 * NX_SHA256_LEN + 1], const unsigned char in[NX_SHA256_LEN]);

/*
 * Parse exactly 64 lower-case hex digits (nothing before or after).
 * Returns 0, or NX_EFORMAT without touching out.
 */
int nx_unhex(unsigned char out[NX_SHA256_LEN], const char *hex);

#ifdef __cplusplus
}
#endif
#endif
