/*
 * nexus/pack.h - a bundle as one file and back (docs/FORMAT.md §9), and the
 * chores of a bundle on disk: restoring the modes transport dropped and
 * removing a read-only tree.
 *
 * The file is a POSIX tar (pax restricted), optionally zstd-compressed,
 * written by libarchive (opened with dlopen, as libcurl is: see
 * docs/DESIGN-NOTES.md).  The same bundle gives the same bytes: manifest.json
 * first, then the manifest's files in its order, each with the manifest's
 * mode, mtime = build_timestamp, uid/gid 0 and no user or group names; no
 * directory entries.
 *
 * Unpacking treats the file as untrusted transport: manifest.json (first
 * member) decides what may follow; a link, a special file, an unsafe path,
 * a member not listed or listed twice, a size other than the manifest's,
 * a truncated archive, more than max_bytes in all or more than
 * NX_PACK_RATIO_MAX times the archive's own size are refused.  The files
 * stream into a stage (nexus/fs.h) with a running SHA-256, get the
 * manifest's modes, are verified and published atomically, or nothing is.
 *
 * Errors follow nexus/error.h: an archive that breaks the rules above is
 * NX_EUNSAFE, NX_ELIMIT or NX_EFORMAT (truncated, not a tar), a digest or a
 * verification that fails is NX_ECHECK, a missing libarchive NX_EDEP.
 */
#ifndef NEXUS_PACK_H
#define NEXUS_PACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nexus/bundle.h"
#include "nexus/error.h"
#include "nexus/fs.h"
#include "nexus/manifest.h"
#include "nexus/onnx.h"
#include "nexus/sign.h"
#include "nexus/verify.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Unpacked bytes per byte of archive, at most (a zip bomb's ratio is far higher). */
#define NX_PACK_RATIO_MAX 200u
/* Unpacked bytes in all, by default (nx_unpack_opts.max_bytes 0). */
#define NX_PACK_MAX_BYTES_DEFAULT (64ull << 30)

struct nx_pack_opts {
	int zstd_level;          /* 0: no compression, else the zstd level (1..19) */
	bool force;              /* replace out_file if it exists */
};

struct nx_pack_result {
	size_t files;            /* members, manifest.json included */
	uint64_t bytes;          /* bytes of the bundle's files, manifest.json included */
	uint64_t archive_bytes;  /* bytes of the file written */
};

/*
 * Pack the bundle directory at bundle into out_file, written beside it
 * under a temporary name and renamed into place (NX_EEXIST when out_file
 * exists and !o->force).  Every file is the manifest's (size and SHA-256,
 * checked while it is read): a bundle whose content does not match is
 * NX_ECHECK and nothing is written.  *out (may be NULL) on success.
 */
int nx_pack(struct nx_pack_result *out, const char *bundle, const char *out_file,
	    const struct nx_pack_opts *o, nx_error *err);

struct nx_unpack_opts {
	bool force;                            /* replace out_dir if it exists */
	uint64_t max_bytes;                    /* 0: NX_PACK_MAX_BYTES_DEFAULT */
	const struct nx_verify_opts *verify;   /* run on the sealed stage; NULL: do not */
	/* told the stage when it exists and NULL when it is gone (for a signal
	 * handler that removes it); may be NULL */
	void (*on_stage)(void *ctx, nx_stage *stage);
	void *stage_ctx;
};

struct nx_unpack_result {
	size_t files;            /* manifest.json included */
	uint64_t bytes;
	nx_report *report;       /* verify's report (the caller frees), NULL without verify */
};

/*
 * Unpack archive into out_dir (see above).  A verdict of FAIL (or WARN
 * under verify->strict) is NX_ECHECK with out->report set.  On any error
 * nothing exists at out_dir that was not there before.
 */
int nx_unpack(struct nx_unpack_result *out, const char *archive, const char *out_dir,
	      const struct nx_unpack_opts *o, nx_error *err);

/*
 * Give every entry of the bundle at path the mode its manifest records
 * (nx_manifest_file_mode; directories and the bundle directory 0555).  The
 * tree must hold only regular files listed in the manifest (and
 * manifest.json) and directories: anything else is NX_EUNSAFE and nothing
 * is changed.  Content is not checked: `nexus verify` does that.
 * *out_changed (may be NULL) counts the entries whose mode changed.
 */
int nx_bundle_fix_modes(size_t *out_changed, const char *path, nx_error *err);

/*
 * Remove the bundle at path, read-only directories and all.  Only a
 * directory whose manifest.json parses and which holds nothing but the
 * manifest's files and their directories is removed (NX_EUNSAFE otherwise,
 * naming what is not the bundle's); it is first renamed to a hidden name
 * beside it, so that a removal cut short never leaves a partial bundle
 * under its name.
 */
int nx_bundle_remove(const char *path, nx_error *err);

/*
 * A bundle described for `nexus inspect BUNDLE` and `nexus diff A B`: its
 * manifest, its model's summary, every initializer with a SHA-256 of its
 * contents (the element bytes, however the protobuf encodes them), and its
 * signature classified against the given keys.  Reading the digests reads
 * every weight byte once; nothing else is read beyond headers.
 */
struct nx_bundle_tensor {
	const struct nx_onnx_tensor *t;        /* in model's summary */
	unsigned char sha256[NX_SHA256_LEN];   /* contents; valid when hashed */
	bool hashed;                           /* false: not asked, or a string tensor */
};

typedef struct nx_bundle_desc {
	nx_manifest *manifest;
	nx_onnx_model *model;      /* NULL when the model could not be read: model_error */
	char *model_error;         /* why, or NULL */
	struct nx_bundle_tensor *tensors; /* initializers (not attribute tensors), by name */
	size_t ntensors;
	enum nx_sig_status sig;    /* against the keys given; unsigned, unknown-key, ... */
	char keyid[NX_KEY_ID_LEN + 1]; /* the key id the signature names, "" none */
} nx_bundle_desc;

/*
 * Describe the bundle directory at path (its manifest must parse: NX_EFORMAT
 * / NX_EUNSAFE otherwise).  keys (borrowed, may be NULL with nkeys 0) are
 * the trusted keys for the signature.  digests: hash every initializer.
 * A model that cannot be read is not an error: model_error says why.
 */
int nx_bundle_describe(nx_bundle_desc **out, const char *path, nx_key *const *keys,
		       size_t nkeys, bool digests, nx_error *err);
void nx_bundle_desc_free(nx_bundle_desc *d);

#ifdef __cplusplus
}
#endif
#endif
