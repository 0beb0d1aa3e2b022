/* magic.c - content sniffing by magic bytes (nexus/magic.h). */
#include "nexus/magic.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SCAN_CHUNK (256u << 10)
#define SAFETENSORS_HEADER_MAX (100ull << 20)

static const char *const names[NX_MAGIC_COUNT] = {
	[NX_MAGIC_NONE] = "none",
	[NX_MAGIC_ONNX] = "onnx",
	[NX_MAGIC_PYTORCH_ZIP] = "pytorch-zip",
	[NX_MAGIC_PICKLE] = "pickle",
	[NX_MAGIC_SAFETENSORS] = "safetensors",
	[NX_MAGIC_NUMPY] = "numpy",
	[NX_MAGIC_HDF5] = "hdf5",
	[NX_MAGIC_GGUF] = "gguf",
	[NX_MAGIC_ZIP] = "zip",
	[NX_MAGIC_TAR] = "tar",
	[NX_MAGIC_GZIP] = "gzip",
	[NX_MAGIC_ZSTD] = "zstd",
	[NX_MAGIC_XZ] = "xz",
	[NX_MAGIC_BZIP2] = "bzip2",
	[NX_MAGIC_ELF] = "elf",
	[NX_MAGIC_PYC] = "pyc",
};

const char *nx_magic_name(enum nx_magic_kind k)
{
	return (unsigned)k < NX_MAGIC_COUNT ? names[k] : "none";
}

bool nx_magic_is_weights(enum nx_magic_kind k)
{
	return k == NX_MAGIC_ONNX || k == NX_MAGIC_PYTORCH_ZIP || k == NX_MAGIC_PICKLE ||
	       k == NX_MAGIC_SAFETENSORS || k == NX_MAGIC_NUMPY || k == NX_MAGIC_HDF5 ||
	       k == NX_MAGIC_GGUF;
}

bool nx_magic_is_archive(enum nx_magic_kind k)
{
	return k == NX_MAGIC_ZIP || k == NX_MAGIC_TAR || k == NX_MAGIC_GZIP ||
	       k == NX_MAGIC_ZSTD || k == NX_MAGIC_XZ || k == NX_MAGIC_BZIP2;
}

static bool starts(const unsigned char *b, size_t len, const char *m, size_t mlen)
{
	return len >= mlen && memcmp(b, m, mlen) == 0;
}

/* Multi-byte signatures that are unambiguous wherever they appear. */
struct sig {
	const char *bytes;
	size_t len;
	enum nx_magic_kind kind;
};

static const struct sig sigs[] = {
	{"PK\x03\x04", 4, NX_MAGIC_ZIP},
	{"\x1f\x8b\x08", 3, NX_MAGIC_GZIP},
	{"\x28\xb5\x2f\xfd", 4, NX_MAGIC_ZSTD},
	{"\xfd" "7zXZ\x00", 6, NX_MAGIC_XZ},
	{"\x93NUMPY", 6, NX_MAGIC_NUMPY},
	{"\x89HDF\r\n\x1a\n", 8, NX_MAGIC_HDF5},
	{"\x7f" "ELF", 4, NX_MAGIC_ELF},
	{"GGUF\x02\x00\x00\x00", 8, NX_MAGIC_GGUF},
	{"GGUF\x03\x00\x00\x00", 8, NX_MAGIC_GGUF},
	{"ustar\x00", 6, NX_MAGIC_TAR},
	{"ustar  \x00", 8, NX_MAGIC_TAR},
	{"1AY&SY", 6, NX_MAGIC_BZIP2},  /* after "BZh[1-9]" */
	{"\x80\x02}", 3, NX_MAGIC_PICKLE},
	{"\x80\x02]", 3, NX_MAGIC_PICKLE},
	{"\x80\x02" "c", 3, NX_MAGIC_PICKLE},
	{"\x80\x03}", 3, NX_MAGIC_PICKLE},
	{"\x80\x03]", 3, NX_MAGIC_PICKLE},
	{"\x80\x03" "c", 3, NX_MAGIC_PICKLE},
	{"\x80\x04\x95", 3, NX_MAGIC_PICKLE},
	{"\x80\x05\x95", 3, NX_MAGIC_PICKLE},
};
#define NSIGS (sizeof(sigs) / sizeof(sigs[0]))

/* Protocol 0/1 pickles are mostly ASCII; these openings are what
 * pickle.dumps / torch.save(_use_new_zipfile_serialization=False) emit. */
static const char *const pickle01[] = {
	"(dp0\n", "(dp1\n", "(lp0\n", "(lp1\n", "(tp0\n", "(i", "ccollections\n",
	"c__builtin__\n", "ccopy_reg\n", "ctorch", "cnumpy", "c_codecs\n",
	"}q\x00", "]q\x00", "}q\x01", "](", "}(",
};

static bool is_pickle(const unsigned char *b, size_t len)
{
	size_t i;

	if (len >= 2 && b[0] == 0x80 && b[1] >= 2 && b[1] <= 5)
		return true;
	for (i = 0; i < sizeof(pickle01) / sizeof(pickle01[0]); i++)
		if (starts(b, len, pickle01[i], strlen(pickle01[i])))
			return true;
	return false;
}

/* A ModelProto serialized by protobuf begins with field 1 (ir_version,
 * varint 1..~20) followed by another ModelProto field tag. */
static bool is_onnx(const unsigned char *b, size_t len)
{
	static const unsigned char next[] = {0x12, 0x1a, 0x22, 0x28, 0x32, 0x3a, 0x42, 0x72, 0xa2, 0xca};

	if (len < 3 || b[0] != 0x08 || b[1] == 0 || b[1] > 32)
		return false;
	return memchr(next, b[2], sizeof(next)) != NULL;
}

static bool is_pyc(const unsigned char *b, size_t len)
{
	unsigned v;

	if (len < 16 || b[2] != '\r' || b[3] != '\n')
		return false;
	v = b[0] | (unsigned)b[1] << 8;
	return v >= 3000 && v < 4000;   /* CPython 3.x bytecode magic numbers */
}

static bool is_safetensors(const unsigned char *b, size_t len)
{
	uint64_t n = 0;
	int i;

	if (len < 10 || b[8] != '{')
		return false;
	for (i = 7; i >= 0; i--)
		n = n << 8 | b[i];
	return n >= 2 && n <= SAFETENSORS_HEADER_MAX && (b[9] == '"' || b[9] == '}');
}

static bool mem_has(const unsigned char *b, size_t len, const char *s)
{
	return memmem(b, len, s, strlen(s)) != NULL;
}

enum nx_magic_kind nx_magic_sniff(const unsigned char *b, size_t len)
{
	if (starts(b, len, "PK\x03\x04", 4))
		return mem_has(b, len < NX_MAGIC_HEAD_LEN ? len : NX_MAGIC_HEAD_LEN, "data.pkl") ||
		       mem_has(b, len < NX_MAGIC_HEAD_LEN ? len : NX_MAGIC_HEAD_LEN, "/data/") ?
			       NX_MAGIC_PYTORCH_ZIP : NX_MAGIC_ZIP;
	if (starts(b, len, "\x93NUMPY", 6))
		return NX_MAGIC_NUMPY;
	if (starts(b, len, "\x89HDF\r\n\x1a\n", 8))
		return NX_MAGIC_HDF5;
	if (starts(b, len, "GGUF", 4))
		return NX_MAGIC_GGUF;
	if (starts(b, len, "\x7f" "ELF", 4))
		return NX_MAGIC_ELF;
	if (starts(b, len, "\x1f\x8b", 2))
		return NX_MAGIC_GZIP;
	if (starts(b, len, "\x28\xb5\x2f\xfd", 4))
		return NX_MAGIC_ZSTD;
	if (starts(b, len, "\xfd" "7zXZ\x00", 6))
		return NX_MAGIC_XZ;
	if (len >= 10 && starts(b, len, "BZh", 3) && b[3] >= '1' && b[3] <= '9' &&
	    (memcmp(b + 4, "1AY&SY", 6) == 0 || memcmp(b + 4, "\x17rE8P\x90", 6) == 0))
		return NX_MAGIC_BZIP2;
	if (len >= 262 && memcmp(b + 257, "ustar", 5) == 0)
		return NX_MAGIC_TAR;
	if (is_safetensors(b, len))
		return NX_MAGIC_SAFETENSORS;
	if (is_pickle(b, len))
		return NX_MAGIC_PICKLE;
	if (is_pyc(b, len))
		return NX_MAGIC_PYC;
	if (is_onnx(b, len))
		return NX_MAGIC_ONNX;
	return NX_MAGIC_NONE;
}

void nx_text_scan_init(struct nx_text_scan *s)
{
	memset(s, 0, sizeof(*s));
	s->binary_at = -1;
	s->embedded_at = -1;
	s->base64_at = -1;
	s->data_at = -1;
}

static bool word_byte(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '+' || c == '-' || c == '/' || c == '=' || c == '_';
}

/* Characters of numbers and hex bytes: 0.5, -1e-3, 0x3f, x3f (from \x3f), 3f. */
static bool numhex_byte(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ||
	       c == '.' || c == '+' || c == '-' || c == 'x' || c == 'X';
}

uint64_t nx_magic_number_payload(size_t n)
{
	return n < 8 ? (n + 1) / 2 > 4 ? 4 : (n + 1) / 2 : n / 2;
}

/* A word ended at off: add what it can carry to the literal payload. */
static void word_end(struct nx_text_scan *s, uint64_t off)
{
	uint64_t n = s->word_len, add = 0;

	if (n && s->word_digit && s->word_numhex)
		add = nx_magic_number_payload(n);
	else if (n >= 24 && s->word_digit && s->word_b64)
		add = n * 3 / 4;
	s->data_bytes += add;
	if (s->data_bytes > NX_MAGIC_DATA_MAX && s->data_at < 0)
		s->data_at = (int64_t)off;
	s->word_len = 0;
}

static void word_byte_feed(struct nx_text_scan *s, unsigned char c, uint64_t off)
{
	if (!word_byte(c)) {
		if (s->word_len)
			word_end(s, off);
		return;
	}
	if (!s->word_len) {
		s->word_digit = false;
		s->word_numhex = true;
		s->word_b64 = true;
	}
	s->word_len++;
	s->word_digit |= c >= '0' && c <= '9';
	s->word_numhex &= numhex_byte(c);
	s->word_b64 &= c != '.';
}

static bool b64_byte(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '+' || c == '/' || c == '=' || c == '-' || c == '_';
}

/* Bytes that may begin one of sigs[]: a cheap filter before memcmp. */
static bool sig_first(unsigned char c)
{
	return c == 'P' || c == 0x1f || c == 0x28 || c == 0xfd || c == 0x93 || c == 0x89 ||
	       c == 0x7f || c == 'G' || c == 'u' || c == '1' || c == 0x80;
}

/* Match sigs at p, where p..end are available bytes. */
static enum nx_magic_kind sig_at(const unsigned char *p, const unsigned char *end)
{
	size_t i;

	for (i = 0; i < NSIGS; i++)
		if ((size_t)(end - p) >= sigs[i].len && memcmp(p, sigs[i].bytes, sigs[i].len) == 0)
			return sigs[i].kind;
	return NX_MAGIC_NONE;
}

static void utf8_byte(struct nx_text_scan *s, unsigned char c, uint64_t off)
{
	bool bad = false;

	if (s->utf8_need) {
		if ((c & 0xc0) == 0x80) {
			s->utf8_need--;
			return;
		}
		bad = true;
		s->utf8_need = 0;
	}
	if (c < 0x20 && c != '\t' && c != '\n' && c != '\r' && c != '\f' && c != '\v')
		bad = true;
	else if (c >= 0x80 && c < 0xc2)   /* stray continuation or overlong lead */
		bad = true;
	else if (c >= 0xf5)
		bad = true;
	else if (c >= 0xf0)
		s->utf8_need = 3;
	else if (c >= 0xe0)
		s->utf8_need = 2;
	else if (c >= 0xc2)
		s->utf8_need = 1;
	if (bad && s->binary_at < 0)
		s->binary_at = (int64_t)off;
}

void nx_text_scan_feed(struct nx_text_scan *s, const unsigned char *buf, size_t len)
{
	unsigned char junction[32];
	size_t i, nj, take;

	/* magics straddling the previous chunk: look at window + new head */
	if (s->nwin && s->embedded_at < 0) {
		take = len < sizeof(junction) - s->nwin ? len : sizeof(junction) - s->nwin;
		memcpy(junction, s->win, s->nwin);
		memcpy(junction + s->nwin, buf, take);
		nj = s->nwin + take;
		for (i = 0; i < s->nwin && s->embedded_at < 0; i++) {
			enum nx_magic_kind k = sig_first(junction[i]) ?
				sig_at(junction + i, junction + nj) : NX_MAGIC_NONE;

			if (k != NX_MAGIC_NONE && s->seen - s->nwin + i > 0) {
				s->embedded = k;
				s->embedded_at = (int64_t)(s->seen - s->nwin + i);
			}
		}
	}
	for (i = 0; i < len; i++) {
		unsigned char c = buf[i];
		uint64_t off = s->seen + i;

		utf8_byte(s, c, off);
		word_byte_feed(s, c, off);
		if (b64_byte(c)) {
			if (++s->b64_run > s->base64_longest)
				s->base64_longest = s->b64_run;
			if (s->b64_run == NX_MAGIC_BASE64_RUN_MAX + 1 && s->base64_at < 0)
				s->base64_at = (int64_t)(off + 1 - s->b64_run);
		} else {
			s->b64_run = 0;
		}
		/* offset 0 is the head; nx_magic_sniff judges it */
		if (s->embedded_at < 0 && off > 0 && sig_first(c)) {
			enum nx_magic_kind k = sig_at(buf + i, buf + len);

			if (k != NX_MAGIC_NONE) {
				s->embedded = k;
				s->embedded_at = (int64_t)off;
			}
		}
	}
	/* keep the last bytes (fewer than the longest signature) for the junction */
	if (len >= 15) {
		memcpy(s->win, buf + len - 15, 15);
		s->nwin = 15;
	} else {
		size_t keep = s->nwin + len > 15 ? 15 - len : s->nwin;

		memmove(s->win, s->win + s->nwin - keep, keep);
		memcpy(s->win + keep, buf, len);
		s->nwin = keep + len;
	}
	s->seen += len;
}

void nx_text_scan_finish(struct nx_text_scan *s)
{
	if (s->utf8_need && s->binary_at < 0)
		s->binary_at = (int64_t)s->seen;
	if (s->word_len)
		word_end(s, s->seen);
}

int nx_magic_scan_fd(struct nx_magic_result *out, int fd, uint64_t size,
		     const char *path, nx_error *err)
{
	struct nx_magic_result res;
	unsigned char *buf = NULL;
	uint64_t off = 0, want = size < NX_MAGIC_SCAN_MAX ? size : NX_MAGIC_SCAN_MAX;
	int rc = 0;

	buf = malloc(SCAN_CHUNK);
	if (!buf)
		return nx_error_set(err, NX_ENOMEM, path, 0, -1, "out of memory scanning %s", path);
	res.head = NX_MAGIC_NONE;
	nx_text_scan_init(&res.text);
	while (off < want) {
		size_t n = want - off < SCAN_CHUNK ? (size_t)(want - off) : SCAN_CHUNK;
		ssize_t got = pread(fd, buf, n, (off_t)off);

		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			rc = nx_error_errno(err, NX_EIO, errno, path, "cannot read %s", path);
			goto out_free;
		}
		if (got == 0) {
			rc = nx_error_set(err, NX_EIO, path, 0, (long long)off,
					  "%s is shorter than expected (file changed while reading?)", path);
			goto out_free;
		}
		if (off == 0)
			res.head = nx_magic_sniff(buf, (size_t)got);
		nx_text_scan_feed(&res.text, buf, (size_t)got);
		off += (uint64_t)got;
	}
	nx_text_scan_finish(&res.text);
	*out = res;
out_free:
	free(buf);
	return rc;
}
