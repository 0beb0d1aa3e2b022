/*
 * strset_int.h - hash tables over untrusted names (not public).
 *
 * Every table keyed by a name from a bundle or workspace (ONNX initializer
 * and value names, vocabulary tokens, Python names) hashes with
 * nx_keyhash: SipHash-2-4 under a key drawn from the kernel once per
 * process.  An unkeyed hash (FNV-1a, as these tables had) lets an input be
 * chosen so that every name lands in one probe chain: 80,000 such
 * initializer names took `nexus inspect` 137 s.  With a secret key the
 * chains stay short whatever the names are.
 */
#ifndef NEXUS_STRSET_INT_H
#define NEXUS_STRSET_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * SipHash-2-4 of the bytes a[0..alen) followed by b[0..blen) (two pieces,
 * so that "##" + piece needs no copy; either may be NULL when its length
 * is 0), under this process's key.  Never fails: the key comes from
 * getrandom(2), and where that is refused from the clock and addresses
 * (still unknown to whoever wrote the input).
 */
uint64_t nx_keyhash(const void *a, size_t alen, const void *b, size_t blen);

/* SipHash-2-4 under a given 16-byte key (the unit test checks it against
 * OpenSSL's EVP_MAC "SIPHASH"). */
uint64_t nx_siphash24(const unsigned char key[16], const void *a, size_t alen,
		      const void *b, size_t blen);

/*
 * A set of owned NUL-terminated strings: open addressing, linear probing,
 * at most half full.  Zero-initialise it; release with nx_strset_release.
 * slots[0..cap) may be walked to visit the members (in no stable order:
 * the order depends on the key, so nothing written out may follow it).
 */
struct strset {
	char **slots;
	size_t cap, n;
};

/* Add a copy of str (nothing when present).  0 or NX_ENOMEM; *added (may
 * be NULL) says whether it was new. */
int nx_strset_add(struct strset *s, const char *str, bool *added);
/* The member equal to str[0..len) (str need not be NUL-terminated), or NULL. */
const char *nx_strset_find(const struct strset *s, const char *str, size_t len);
bool nx_strset_has(const struct strset *s, const char *str);
/* Free the members and the slots; s is zeroed (and may be reused). */
void nx_strset_release(struct strset *s);

#endif
