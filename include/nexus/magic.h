/*
 * nexus/magic.h - content sniffing by magic bytes.
 *
 * The allow-list check of `nexus verify` (TRV-1) must not trust file names:
 * teacher weights renamed to "utils.py" are still a pickle.  This module
 * recognises model-weight, archive and executable formats from the first
 * bytes of a file, and inspects files that ought to be text for the ways of
 * hiding weights in them: binary regions (NUL, control bytes, invalid
 * UTF-8), one of the known magics at any offset (weights appended to a text
 * file), and long runs of the base64 alphabet (an encoded blob in a config
 * or tokenizer file).
 *
 * Nothing here allocates; nx_magic_scan_fd reads with a fixed buffer.
 */
#ifndef NEXUS_MAGIC_H
#define NEXUS_MAGIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nexus/error.h"

#ifdef __cplusplus
extern "C" {
#endif

enum nx_magic_kind {
	NX_MAGIC_NONE = 0,     /* nothing recognised */
	NX_MAGIC_ONNX,         /* protobuf ModelProto: ir_version varint first */
	NX_MAGIC_PYTORCH_ZIP,  /* torch.save zip: PK\3\4 with data.pkl / data/ */
	NX_MAGIC_PICKLE,       /* protocol 2-5 header, or protocol 0/1 openings */
	NX_MAGIC_SAFETENSORS,  /* u64le header length + '{"' */
	NX_MAGIC_NUMPY,        /* \x93NUMPY */
	NX_MAGIC_HDF5,         /* \x89HDF\r\n\x1a\n (Keras .h5) */
	NX_MAGIC_GGUF,         /* "GGUF" + version */
	NX_MAGIC_ZIP,
	NX_MAGIC_TAR,          /* "ustar" at 257 */
	NX_MAGIC_GZIP,
	NX_MAGIC_ZSTD,
	NX_MAGIC_XZ,
	NX_MAGIC_BZIP2,
	NX_MAGIC_ELF,
	NX_MAGIC_PYC,          /* CPython bytecode: 2-byte magic + "\r\n" */
	NX_MAGIC_COUNT
};

/* Bytes of a file's head that nx_magic_sniff needs to see all formats. */
#define NX_MAGIC_HEAD_LEN 512
/* A run of base64 alphabet longer than this (no whitespace) is a blob. */
#define NX_MAGIC_BASE64_RUN_MAX 4096
/*
 * Payload, in estimated bytes, that the words of one text file may carry as
 * dense literal data (numbers, hex bytes, long base64 words) before it is a
 * blob.  Whitespace and punctuation between the values defeat the base64 run
 * check (a float list, "3f a0 ...", b'\x3f\xa0...', base64 wrapped at 76
 * columns), so the words are counted instead: a number or hex word counts
 * about half its length (at most 4 bytes when short: one float32), a base64
 * word of 24+ characters with a digit 3/4 of its length.  8 KiB is more
 * literal data than code, configuration or prose needs, and less than one
 * layer of a useful teacher.
 */
#define NX_MAGIC_DATA_MAX 8192
/* nx_magic_scan_fd reads at most this many bytes of one file. */
#define NX_MAGIC_SCAN_MAX (1ull << 30)

/* Payload a number or hex word of len characters counts for (as above). */
uint64_t nx_magic_number_payload(size_t len);

/* Kind of the file that starts with buf[0..len). */
enum nx_magic_kind nx_magic_sniff(const unsigned char *buf, size_t len);

/* Stable lower-case name ("onnx", "pytorch-zip", ...); "none" for NONE. */
const char *nx_magic_name(enum nx_magic_kind k);

/* Model-weight / tensor formats (ONNX, PyTorch, pickle, safetensors,
 * NumPy, HDF5, GGUF). */
bool nx_magic_is_weights(enum nx_magic_kind k);

/* Archive or compressed formats (zip, tar, gzip, zstd, xz, bzip2). */
bool nx_magic_is_archive(enum nx_magic_kind k);

/*
 * Streaming inspection of content that should be text.  Feed the bytes in
 * order, in any chunking; results are identical.  Offsets are file offsets
 * of the first occurrence, -1 when none.
 */
struct nx_text_scan {
	uint64_t seen;              /* bytes fed so far */
	int64_t binary_at;          /* first NUL / control byte / invalid UTF-8 */
	int64_t embedded_at;        /* first embedded magic (offset > 0) */
	enum nx_magic_kind embedded;
	int64_t base64_at;          /* start of the first run > BASE64_RUN_MAX */
	uint64_t base64_longest;    /* longest base64 run seen */
	uint64_t data_bytes;        /* estimated literal payload (NX_MAGIC_DATA_MAX) */
	int64_t data_at;            /* end of the word that took data_bytes over the cap */
	/* private */
	uint64_t b64_run;
	uint64_t word_len;          /* current word (alnum . + - / = _) */
	bool word_digit, word_numhex, word_b64;
	unsigned utf8_need;
	unsigned char win[16];      /* last bytes, for magics split across chunks */
	size_t nwin;
};

void nx_text_scan_init(struct nx_text_scan *s);
void nx_text_scan_feed(struct nx_text_scan *s, const unsigned char *buf, size_t len);
/* Call once after the last feed (an unfinished UTF-8 sequence is binary). */
void nx_text_scan_finish(struct nx_text_scan *s);

struct nx_magic_result {
	enum nx_magic_kind head;    /* kind by the file's first bytes */
	struct nx_text_scan text;   /* whole-content scan (up to `size` bytes) */
};

/*
 * Sniff and text-scan exactly min(size, NX_MAGIC_SCAN_MAX) bytes of fd from
 * offset 0 (pread; fd's position is unchanged).  A file shorter than size is
 * NX_EIO.  path is for messages.  *out written on success only.
 */
int nx_magic_scan_fd(struct nx_magic_result *out, int fd, uint64_t size,
		     const char *path, nx_error *err);

#ifdef __cplusplus
}
#endif
#endif
