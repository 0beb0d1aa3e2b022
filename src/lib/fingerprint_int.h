/* fingerprint_int.h - the fingerprint set shared by fingerprint*.c. */
#ifndef NEXUS_FINGERPRINT_INT_H
#define NEXUS_FINGERPRINT_INT_H

#include "nexus/fingerprint.h"

struct fp_entry {
	unsigned char sha[NX_SHA256_LEN];
	uint64_t bytes;
	char *name;
	size_t file;     /* index into files */
};

struct nx_fp_set {
	struct fp_entry *e;
	size_t n, cap;
	bool sorted;     /* e sorted by sha (done lazily before lookups) */
	char **files;
	size_t nfiles;
	size_t compressed;
};

/* Record one teacher tensor of the file added last. */
int fp_add(nx_fp_set *s, const char *name, const unsigned char sha[NX_SHA256_LEN],
	   uint64_t bytes, nx_error *err);
/* fingerprint_zip.c: every <archive>/data/<n> record of a torch.save zip. */
int fp_torch_zip(nx_fp_set *set, int fd, const char *path, uint64_t size, size_t min,
		 nx_error *err);

#endif
