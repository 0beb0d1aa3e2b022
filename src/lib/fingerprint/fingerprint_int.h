/* fingerprint_int.h - the fingerprint set shared by fingerprint*.c. */
#ifndef NEXUS_FINGERPRINT_INT_H
#define NEXUS_FINGERPRINT_INT_H

#include "nexus/fingerprint.h"
#include "nexus/onnx.h"
#include "nexus/fs.h"
#include "util/array_int.h"

struct fp_entry {
	uint64_t whole;  /* fp_hash.whole: its whole contents */
	uint64_t bytes;
	char *name;
	size_t file;     /* index into files */
};

/*
 * Content-defined chunks (fingerprint_chunk.c): with g = (g << 1) +
 * gear[byte] rolled over a tensor's bytes, a chunk ends after the byte
 * that makes it n >= FP_CHUNK_MIN bytes long when g & FP_CHUNK_MASK is 0,
 * or when n reaches FP_CHUNK_MAX.
 */
#define FP_CHUNK_MIN 1024u                 /* bytes before a boundary may fall */
#define FP_CHUNK_MASK ((1u << 11) - 1)     /* a boundary every ~2 KiB after that */
#define FP_CHUNK_MAX (16u << 10)           /* a boundary at the latest here */

/* The 256 gear values (fixed: teacher and student runs must agree). */
const uint64_t *nx_fp__gear(void);

/* A content-defined chunk of a teacher tensor (fingerprint_chunk.c). */
struct fp_chunk {
	uint64_t hash;       /* of its bytes (chunk_hash) */
	uint32_t len;
	const char *name;    /* its tensor's (owned by the entry; set by fp_add_chunks) */
	size_t file;         /* index into files */
};

struct fp_values;
struct fp_patterns;
struct fp_corr;
struct fp_pool;
struct fp_units;
struct fp_perm;

struct nx_fp_set {
	struct fp_entry *e;
	size_t n, cap;
	bool sorted;     /* e sorted by sha (done lazily before lookups) */
	char **files;
	size_t nfiles;
	size_t compressed;
	size_t ncasts;   /* entries of e that are casts of a teacher tensor */
	struct fp_chunk *chunks;
	size_t nchunks, capchunks;
	bool chunks_sorted;
	uint64_t *chunk_bits;  /* a bit per chunk hash's top chunk_shift bits:
				  set for every chunk (fingerprint_chunk.c) */
	unsigned chunk_shift;
	struct fp_values *values;   /* fingerprint_values.c, NULL until a float32 tensor */
	struct fp_patterns *patterns;  /* fingerprint_pattern.c, NULL until a small tensor */
	struct fp_corr *corr;          /* fingerprint_corr.c, NULL until a float tensor */
	struct fp_pool *pool;          /* fingerprint_pool.c, NULL until a small tensor */
	struct fp_units *units;        /* fingerprint_units.c, NULL until a float tensor */
	struct fp_perm *perm;          /* fingerprint_perm.c, NULL until a float matrix */
	uint64_t (*qshapes)[3];  /* the student's int8 matrices [rows, cols, 0] and int4
				    MatMulNBits weights [N, blocks, block bytes]
				    (nx_fp_set_quant_shapes) */
	size_t nqshapes;
};

/*
 * fingerprint_values.c: the value fingerprint.  A teacher's float32 tensor feeds
 * its values (nx_fp__vfeed_teacher, then nx_fp__vfeed as an nx_onnx_bytes_fn); a
 * student tensor of ONNX type dtype is looked up (nx_fp__vfeed_student: false
 * when the set has no values or on ENOMEM, then nothing to do) and judged
 * after its last byte (nx_fp__vfeed_judge: m->hits 0 when it holds no teacher
 * tensor's values).
 */
#define FP_VALUES_MIN 32   /* samples a teacher tensor needs to be judged */
struct nx_fp__vfeed {
	struct fp_values *s;
	uint32_t owner;
	bool teacher, bf16;
	unsigned width;
	unsigned char carry[8];
	size_t ncarry;
	int rc;
	nx_error *err;
};
struct fp_values_match {
	uint32_t hits, samples;
	int shift;           /* the student's values are the teacher's x 2^shift */
	const char *name;    /* the teacher tensor (owned by the set) */
	size_t file;
};
int nx_fp__vfeed_teacher(struct nx_fp__vfeed *f, nx_fp_set *set, const char *name, nx_error *err);
bool nx_fp__vfeed_student(struct nx_fp__vfeed *f, const nx_fp_set *set, int32_t dtype, nx_error *err);
int nx_fp__vfeed(void *ctx, const unsigned char *buf, size_t len);
void nx_fp__vfeed_judge(struct nx_fp__vfeed *f, struct fp_values_match *m);
void nx_fp__values_free(struct fp_values *s);
/* Before a student model: clear the whole-model counts.  After it: each
 * call gives one teacher tensor whose samples the model holds only across
 * tensors (*next starts at 0; false when there are no more). */
int nx_fp__values_begin_model(const nx_fp_set *set, nx_error *err);
bool nx_fp__values_judge_model(const nx_fp_set *set, size_t *next, struct fp_values_match *m);
/* The sampling rate the set ended at, out of 2^32 (0: no values). */
uint32_t nx_fp__values_rate(const nx_fp_set *set);

/*
 * fingerprint_chunk.c: one tensor's contents, fed in pieces, cut into
 * content-defined chunks and hashed whole (whole: the chunks' hashes and
 * lengths in order, so two tensors with the same whole and size are, but
 * for a 2^-64 accident, equal).  Teacher (collect): the
 * chunks go into the set, for the entry nx_fp__add records next.  Student
 * (match): chunks cut by content on both sides are looked up in the set;
 * matched counts their bytes, match_chunk is the first teacher chunk found.
 */
/*
 * fingerprint_pattern.c: small teacher tensors (up to FP_PATTERN_MAX bytes,
 * each form) kept whole with an anchor (nx_fp__pattern_add, after
 * nx_fp__add of h's entry), and a student tensor scanned for them at every
 * offset (nx_fp__pscan_*, riding on nx_fp__hash_feed): hits lists each
 * one found whole inside it, once, as its entry's (whole, bytes).
 */
#define FP_PATTERN_MAX NX_FP_MIN_BYTES
struct nx_fp__pscan_hit {
	uint64_t whole, bytes;
};
struct nx_fp__pscan {
	struct fp_patterns *s;
	unsigned char *ring, *lin;
	uint64_t pos;              /* bytes fed */
	uint64_t next;             /* the next offset an anchor is tested at */
	size_t step;               /* the element size (8 at most) */
	struct pending *pending;
	size_t npending, cappending;
	struct nx_fp__pscan_hit *hits;
	size_t nhits, caphits;
	nx_error *err;
};
struct fp_hash;
/*
 * fingerprint_pool.c: the small teacher tensors' windows of 4 and 5
 * elements (float32, or 16-bit widened), keyed on their shape (any
 * a x + b, and for 5 any added ramp; either order), pooled
 * (nx_fp__pool_add, the file added last).  Student side: per model
 * (nx_fp__pool_begin_model), every float tensor is fed through a scan
 * (nx_fp__pool_feed, an nx_onnx_bytes_fn, riding on nx_fp__hash_feed as
 * h->pl) and the attribute numbers (nx_fp__pool_attrs); nx_fp__pool_judge
 * fills its verdict when any pool window was found in a run, and is true
 * when the distinct pool windows found in chains imply over
 * NX_FP_SMALL_TOTAL_MAX teacher bytes.
 */
#define FP_POOL_RUN 4        /* hits that make a chain */
#define FP_POOL_LOOSE 8      /* or hits, some a neighbouring quantum's */
#define FP_POOL_BLOCK 1024   /* elements read at a time (a small tensor fits) */
#define FP_POOL_HIST 64      /* the last ones kept: windows across blocks */
#define FP_POOL_STRIDES 4    /* lanes read every element .. every 4th */
#define FP_POOL_LANES (FP_POOL_STRIDES * (FP_POOL_STRIDES + 1) / 2)
struct nx_fp__pool_lane {
	uint64_t next;           /* the first window (stream index) not looked at */
	uint64_t last;           /* the last hit's window + 1 (0: none) */
	unsigned run, exact;     /* hits in the run; of them exact */
	bool sure;               /* the run is a chain */
	uint32_t pend[FP_POOL_LOOSE - 1];
	uint32_t prev;           /* the last hit's slot */
};
struct nx_fp__pool_scan {
	struct fp_pool *s;       /* NULL: nothing to scan for */
	struct nx_fp__pool_lane lane[4][FP_POOL_LANES];   /* family; stride s, lane l */
	float x[FP_POOL_HIST + FP_POOL_BLOCK];
	size_t nx;               /* elements in x */
	uint64_t base;           /* x[0]'s index in the stream */
	uint64_t done[FP_POOL_STRIDES];   /* anchors below looked at */
	unsigned char carry[4];
	size_t ncarry;
	unsigned width;          /* 4: float32; 2: float16 or bfloat16, widened */
	bool bf16;
	uint32_t marks;          /* teacher elements this tensor covered first */
};
struct nx_fp__pool_found {
	char *student;           /* a student tensor, or "(node attributes)" */
	uint32_t windows;        /* teacher elements it covered first */
};
struct nx_fp__pool_verdict {
	size_t windows, pool, tensors;   /* elements covered; pooled */
	size_t unpooled;         /* teacher windows left out at FP_POOL_MAX */
	const struct nx_fp__pool_found *found;   /* owned by the set */
	size_t nfound;
	const char *teacher;     /* the teacher tensor most found (owned by the set) */
	size_t file;
};
/* dtype: 1 (float32), 10 (float16) or 16 (bfloat16); p holds n bytes of it. */
int nx_fp__pool_add(nx_fp_set *set, const char *name, int32_t dtype, const unsigned char *p,
		    size_t n, nx_error *err);
size_t nx_fp__pool_count(const nx_fp_set *set);
void nx_fp__pool_free(struct fp_pool *s);
void nx_fp__pool_begin_model(const nx_fp_set *set);
/* dtype: the student tensor's, 1, 10 or 16 (anything else: float32). */
void nx_fp__pool_scan_begin(struct nx_fp__pool_scan *ps, const nx_fp_set *set, int32_t dtype);
int nx_fp__pool_feed(void *ctx, const unsigned char *buf, size_t len);
int nx_fp__pool_scan_end(struct nx_fp__pool_scan *ps, const char *name, nx_error *err);
int nx_fp__pool_attrs(const nx_fp_set *set, int fd, const char *path, nx_error *err);
bool nx_fp__pool_judge(const nx_fp_set *set, struct nx_fp__pool_verdict *v);
int nx_fp__pattern_add(nx_fp_set *set, const struct fp_hash *h, nx_error *err);
size_t nx_fp__patterns_count(const nx_fp_set *set);
void nx_fp__patterns_free(struct fp_patterns *s);
/* width: the student tensor's element size (anchors are tested at each element). */
int nx_fp__pscan_begin(struct nx_fp__pscan *ps, const nx_fp_set *set, unsigned width,
		       nx_error *err);
int nx_fp__pscan_feed(struct nx_fp__pscan *ps, const unsigned char *buf, size_t len);
void nx_fp__pscan_end(struct nx_fp__pscan *ps);

struct fp_hash {
	nx_fp_set *collect;
	const nx_fp_set *match;
	nx_error *err;
	uint64_t whole;              /* every chunk's hash and length, in order */
	uint64_t total;              /* bytes fed */
	uint64_t gear;               /* rolling boundary hash */
	unsigned char *buf;          /* the chunk under way, when it spans feeds */
	uint32_t len;                /* bytes of the chunk under way */
	size_t nchunks, first_chunk;
	uint64_t matched;
	const struct fp_chunk *match_chunk;   /* the first chunk matched */
	struct nx_fp__vfeed *vf;                  /* also fed the bytes, when set */
	struct nx_fp__pscan *ps;                  /* student: also scanned, when set */
	struct nx_fp__pool_scan *pl;              /* student: the pool scan, when set */
	unsigned char head[FP_PATTERN_MAX];       /* teacher: the first bytes */
	struct fp_values_match values;        /* student: set after the last byte */
	bool varied;      /* a chunk that is not a repeated 1-8 byte pattern was cut */
	bool canonical;   /* a 16-bit canonical stream (fingerprint_canon.c) */
};

int nx_fp__hash_begin(struct fp_hash *h, nx_fp_set *collect, const nx_fp_set *match,
		  nx_error *err);
/* nx_onnx_bytes_fn: feed buf[0..len) (ctx is the fp_hash). */
int nx_fp__hash_feed(void *ctx, const unsigned char *buf, size_t len);
/* Finish the last chunk and whole; keep false (a teacher tensor under the
 * size floor, or an error before) drops the chunks collected for it.
 * Always frees what begin allocated. */
int nx_fp__hash_end(struct fp_hash *h, bool keep);

/* fingerprint_chunk.c: record one teacher tensor of the file added last. */
int nx_fp__add(nx_fp_set *s, const char *name, uint64_t whole, uint64_t bytes, nx_error *err);
/* The smallest tensor a walk with this min reads (NX_FP_SMALL_MIN_BYTES). */
static inline size_t nx_fp__floor(size_t min)
{
	return min < NX_FP_SMALL_MIN_BYTES ? min : NX_FP_SMALL_MIN_BYTES;
}
/* fingerprint_small.c: n bytes of a small teacher tensor that any model
 * may hold (a constant fill, two values, an arithmetic sequence). */
bool nx_fp__trivial(const unsigned char *p, size_t n);
/*
 * fingerprint_corr.c: approximate copies.  A teacher float tensor of
 * FP_CORR_MIN elements or more keeps FP_CORR_K sampled values
 * (nx_fp__corr_teacher, for the file added last); a student tensor of any
 * numeric type and a kept tensor's element count is read at the same
 * positions (as is, reversed, transposed when dims are 2-D) and fn is
 * called once with the teacher tensor it correlates best with, when
 * |r| >= FP_CORR_R (nx_fp__corr_student).
 */
#define FP_CORR_K 1024          /* positions sampled in a teacher tensor */
#define FP_CORR_MIN 256         /* elements (and usable positions) needed */
#define FP_CORR_TENSORS 4096    /* teacher tensors kept (the largest) */
#define FP_CORR_R 0.99
#define FP_CORR_SIGN 0.95      /* the signs' agreement (2 x share - 1) that is a hit */
#define FP_CORR_SAME_MIN 8      /* exact positions that make a part kept in place */
struct nx_fp__corr_hit {
	const char *teacher;   /* owned by the set */
	size_t file;
	uint64_t bytes;        /* the teacher tensor's */
	double r;
	uint32_t used;         /* positions compared */
	uint32_t same;         /* |r| < FP_CORR_R: positions holding the teacher's
				* value exactly (the sign aside; not 0, not one the
				* teacher's sample repeats): a part kept in place */
	bool reversed, transposed;
	uint64_t f32_bytes;    /* same: the teacher tensor's elements x 4 */
};
typedef int (*nx_fp__corr_fn)(void *ctx, const char *student, const struct nx_fp__corr_hit *hit,
			      nx_error *err);
int nx_fp__corr_teacher(nx_fp_set *set, const char *name, int32_t dtype, int fd,
			const char *path, uint64_t off, uint64_t len, nx_error *err);
int nx_fp__corr_student(const nx_fp_set *set, const char *name, int32_t dtype, int fd,
			const char *path, uint64_t off, uint64_t len, const int64_t *dims,
			size_t ndims, nx_fp__corr_fn fn, void *ctx, nx_error *err);
void nx_fp__corr_free(struct fp_corr *c);

/*
 * fingerprint_units.c: per-vector fingerprints.  Every aligned block of
 * FP_UNITS_B elements along a teacher float tensor's rows and columns is
 * kept under a key an affine map a v + b leaves alone (nx_fp__units_teacher,
 * for the file added last; dims may be NULL: one row); a student tensor's
 * blocks are looked up and verified (nx_fp__units_student, between
 * nx_fp__units_begin and _end), and fn is called once per teacher tensor
 * with the count of its blocks verified there (each teacher block counted
 * once per run) and their bytes.
 */
/*
 * The 3 x 3 system m[i][0..2] c = m[i][3] (normal equations of the order-2
 * recurrences the per-vector checks leave out: fingerprint_units.c,
 * fingerprint_perm.c) solved by Cramer's rule; false when it is singular.
 */
static inline double nx_fp__det3(const double a[3][4])
{
	return a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1]) -
	       a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0]) +
	       a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0]);
}

static inline bool nx_fp__solve3(const double m[3][4], double coef[3])
{
	double det = nx_fp__det3(m);

	if (det < 1e-300 && det > -1e-300)   /* fabs(det) < 1e-300: a NaN goes on */
		return false;
	for (int k = 0; k < 3; k++) {
		double a[3][4];

		for (int i = 0; i < 3; i++)
			for (int j = 0; j < 3; j++)
				a[i][j] = j == k ? m[i][3] : m[i][j];
		coef[k] = nx_fp__det3((const double (*)[4])a) / det;
	}
	return true;
}

#define FP_UNITS_B 64             /* elements in a block */
#define FP_UNITS_K 4              /* the largest |v - mean| whose positions key it */
#define FP_UNITS_MAX (1u << 19)   /* teacher blocks kept (the largest tensors') */
#define FP_UNITS_R 0.99           /* |Pearson r| a verified block has */
struct nx_fp__perm_run;
/* A block as the check reads it: its centred values c, its FP_UNITS_TOP
 * largest |c| (a[], descending, ties the earlier first; -1 where fewer
 * are numbers) at positions ord[], bit i of up (down): c[2i] > (<)
 * c[2i + 1], and the sum of c^2.  nx_fp__units_block_ref defines it;
 * nx_fp__units_block gives the same, four lanes at a time where the CPU
 * has AVX2 (tests/unit/test_fingerprint.c holds them equal). */
#define FP_UNITS_TOP 8
struct nx_fp__units_block {
	double c[FP_UNITS_B];
	int ord[FP_UNITS_TOP];
	double a[FP_UNITS_TOP];
	uint32_t up, down;
	double var;
};
void nx_fp__units_block_ref(struct nx_fp__units_block *b, const double *v);
void nx_fp__units_block(struct nx_fp__units_block *b, const double *v);
struct nx_fp__units_run {
	struct fp_units *u;
	struct nx_fp__perm_run *perm;   /* set after nx_fp__units_begin (fingerprint_perm.c) */
	uint64_t *seen;       /* a bit per teacher block verified */
	uint32_t *count;      /* per teacher tensor, in the current student tensor */
	uint32_t *touched;
	size_t ntouched, captouched;
};
typedef int (*nx_fp__units_fn)(void *ctx, const char *student, const char *teacher, size_t file,
			       uint32_t blocks, uint64_t bytes, nx_error *err);
int nx_fp__units_teacher(nx_fp_set *set, const char *name, int32_t dtype, int fd,
			 const char *path, uint64_t off, uint64_t len, const int64_t *dims,
			 size_t ndims, nx_error *err);
int nx_fp__units_begin(struct nx_fp__units_run *run, const nx_fp_set *set, nx_error *err);
int nx_fp__units_student(struct nx_fp__units_run *run, const char *name, int32_t dtype, int fd,
			 const char *path, uint64_t off, uint64_t len, const int64_t *dims,
			 size_t ndims, nx_fp__units_fn fn, void *ctx, nx_error *err);
void nx_fp__units_end(struct nx_fp__units_run *run);
void nx_fp__units_free(struct fp_units *u);

/*
 * fingerprint_fold.c: the student's main graph read as linear maps: sums
 * of MatMul/Gemm terms of one input (A + B, W' - U V) folded into their
 * effective matrix, each handed to one (fingerprint.c: the consumers a
 * stored tensor goes through) as a float32 tensor t at [0, len) of fd.
 * s and fd are the model's (path in dirfd).
 */
struct tensors;
typedef int (*nx_fp__fold_fn)(struct tensors *w, const struct nx_onnx_tensor *t, int fd,
			      const char *path, nx_error *err);
int nx_fp__fold(struct tensors *w, int dirfd, const char *path, int fd, const nx_onnx_summary *s,
		nx_fp__fold_fn one, nx_error *err);

/*
 * fingerprint_perm.c: order-invariant per-vector fingerprints.  Every
 * vector of 64+ elements along the first and last axis of a teacher float
 * tensor is kept as the features of its sorted, standardised profile (a
 * permutation within it and a v + b leave them alone; nx_fp__perm_teacher,
 * for the file added last); a student tensor's vectors along every axis of
 * a teacher vector's length are looked up (nx_fp__perm_student, between
 * _begin and _end), and fn is called once per teacher tensor with the
 * count of its vectors found (each counted once per run) and their bytes.
 */
struct nx_fp__perm_run {
	struct fp_perm *u;
	uint64_t *seen;       /* a bit per teacher vector found */
	uint32_t *count;      /* per teacher tensor, in the current student tensor */
	uint64_t *bytes;
	uint32_t *touched;
	size_t ntouched, captouched;
};
int nx_fp__perm_teacher(nx_fp_set *set, const char *name, int32_t dtype, int fd,
			const char *path, uint64_t off, uint64_t len, const int64_t *dims,
			size_t ndims, nx_error *err);
int nx_fp__perm_begin(struct nx_fp__perm_run *run, const nx_fp_set *set, nx_error *err);
int nx_fp__perm_student(struct nx_fp__perm_run *run, const char *name, int32_t dtype, int fd,
			const char *path, uint64_t off, uint64_t len, const int64_t *dims,
			size_t ndims, nx_fp__units_fn fn, void *ctx, nx_error *err);
void nx_fp__perm_end(struct nx_fp__perm_run *run);
void nx_fp__perm_free(struct fp_perm *u);

/* fingerprint_tensor.c */
/* Each tensor of an ONNX model of at least min bytes, hashed (h). */
typedef int (*tensor_fn)(void *ctx, const char *name, const struct fp_hash *h, bool transposed,
			 nx_error *err);

/* What a walk over the tensors of one file does with each. */
struct tensors {
	nx_fp_set *collect;          /* teacher: record into this set */
	const nx_fp_set *match;      /* student: look up in this set */
	tensor_fn fn;
	void *ctx;
	size_t min;
	const uint64_t *sizes;       /* student: distinct teacher tensor sizes, sorted */
	size_t nsizes;
	nx_fp__corr_fn corr;         /* student: approximate copies go here (ctx) */
	struct nx_fp__units_run *units;  /* student: re-encoded vectors (fingerprint_units.c) */
	nx_fp__units_fn units_fn;
};

/* How a tensor is read: t (inline, decoded) or bytes [off, off + len) of
 * fd; f32 if it may hold float32 values (a teacher's are then also cast);
 * rows x cols of width bytes if it is a 2-D float matrix (a student's is
 * then also hashed transposed). */
struct tensor_src {
	const struct nx_onnx_tensor *t;
	uint64_t off, len;
	bool f32;
	uint64_t rows, cols;
	unsigned width;
	int32_t dtype;      /* student: its ONNX type, how its values are read */
	int32_t widen;      /* teacher: 10 (float16) or 16 (bfloat16) read widened
			     * to float32, len bytes of it becoming 2 x len */
};
/* The float32 bits of float16 h (exact). */
uint32_t nx_fp__f16_to_f32(uint16_t h);
/* A tensor's elements as numbers (fingerprint_num.c): the bytes an
 * element of dtype takes (0: not read as numbers), whether dtype is a
 * float type, element p's value, and n elements stride bytes apart. */
unsigned nx_fp__num_width(int32_t dtype);
bool nx_fp__num_float(int32_t dtype);
double nx_fp__num_get(const unsigned char *p, int32_t dtype);
void nx_fp__num_get_n(double *out, const unsigned char *p, size_t n, size_t stride,
		      int32_t dtype);
int nx_fp__u64_cmp(const void *a, const void *b);
/* Hash a tensor (src) and hand it on to w->fn (see the file). */
int nx_fp__one_tensor(struct tensors *w, const char *name, int fd, const char *path,
		  const struct tensor_src *src, nx_error *err);
/* w->fn of a teacher walk: record the tensor and name its chunks. */
int nx_fp__add_cb(void *ctx, const char *name, const struct fp_hash *h, bool transposed,
	      nx_error *err);

/* Record a teacher tensor of min bytes or more at [off, off + len) of fd,
 * with its chunks. */
int nx_fp__add_range(nx_fp_set *set, const char *name, bool f32, int fd, uint64_t off, uint64_t len,
		 size_t min, const char *path, nx_error *err);
/* A float16 (dtype 10) or bfloat16 (16) teacher tensor at [off, off + len)
 * of fd, recorded widened to float32 as a float32 teacher tensor (bytes,
 * chunks, casts, values) named "<name> widened to float32". */
int nx_fp__add_widened(struct tensors *w, const char *name, int32_t dtype, int fd,
		       const char *path, const struct nx_onnx_tensor *t, uint64_t off,
		       uint64_t len, nx_error *err);
/* fingerprint_pickle.c: the element type of each storage a torch.save
 * data.pkl names (its ONNX type: 1 float32, 10 float16, 16 bfloat16, ...);
 * *out (caller frees) is in pickle order.  A data.pkl over FP_PICKLE_MAX
 * is not read. */
#define FP_PICKLE_MAX (32u << 20)
struct nx_fp__dtype {
	char key[24];      /* the storage's record: "<archive>/data/<key>" */
	int32_t dtype;
	const char *name;  /* the string pickled before it (its state-dict key,
			    * mostly; nname 0: none), in the pickle's bytes */
	size_t nname;
};
int nx_fp__pickle_dtypes(const unsigned char *p, size_t len, size_t max,
			 struct nx_fp__dtype **out, size_t *nout, nx_error *err);
/* fingerprint_zip.c: every <archive>/data/<n> record of a torch.save zip. */
int nx_fp__torch_zip(nx_fp_set *set, int fd, const char *path, uint64_t size, size_t min,
		 nx_error *err);

/*
 * fingerprint_forms.c: a float32 teacher tensor is also recorded cast to
 * float16 and to bfloat16 (entries named "<name> as float16" ...), and each
 * cast in its canonical form (fingerprint_canon.c: "... as float16, any
 * sign or power-of-two scale"), hashed
 * in the same pass as its own bytes: nx_fp__casts_feed (an nx_onnx_bytes_fn,
 * ctx the fp_casts) feeds orig and the casts.  The casts collect into
 * sets of their own, moved into `set` by nx_fp__casts_end for those of at
 * least min bytes (set NULL: only release).
 */
#define FP_CASTS 4   /* float16, bfloat16, and each canonical (fingerprint_canon.c) */
typedef void (*fp_casts_fn)(uint16_t *o16, uint16_t *obf, const unsigned char *p, size_t n);
struct fp_casts_part {   /* the forms h[from .. to) one feed makes */
	unsigned from, to;
	unsigned char carry[4];
	size_t ncarry;
	unsigned char *out;
};
struct fp_casts {
	struct fp_hash *orig;
	struct fp_hash h[FP_CASTS];
	nx_fp_set tmp[FP_CASTS];
	int prev[2];        /* the canonical forms' last exponents */
	struct fp_casts_part part[2];
	fp_casts_fn cast;   /* AVX2 + F16C where the CPU has them */
};
int nx_fp__casts_begin(struct fp_casts *c, struct fp_hash *orig, nx_error *err);
int nx_fp__casts_feed(void *ctx, const unsigned char *buf, size_t len);
/* Split the forms in two for two threads (fingerprint_par.c):
 * nx_fp__casts_feed then feeds orig and the plain casts,
 * nx_fp__casts_feed_canon the canonical forms (the casts made again). */
int nx_fp__casts_split(struct fp_casts *c, nx_error *err);
int nx_fp__casts_feed_canon(void *ctx, const unsigned char *buf, size_t len);
int nx_fp__casts_end(struct fp_casts *c, nx_fp_set *set, const char *name, size_t min,
		 nx_error *err);
/* Feed h the rows x cols matrix of width-byte elements at off of fd,
 * transposed (column after column); nothing when a column would take
 * over 64 MiB. */
int nx_fp__hash_transposed(struct fp_hash *h, int fd, const char *path, uint64_t off,
		       uint64_t rows, uint64_t cols, unsigned width, nx_error *err);

/*
 * fingerprint_canon.c: 16-bit streams with signs cleared and exponents as
 * differences, so any sign pattern and power-of-two scale hash alike.
 * nx_fp__canon16 converts n elements (float16, or bfloat16 when bf16;
 * *prev: the last element's exponent, FP_CANON_START before the first).  Student side:
 * nx_fp__canon_feed (an nx_onnx_bytes_fn, ctx the fp_canon) feeds orig the
 * raw bytes and h[0 .. n) the canonical forms of a tensor of ONNX type
 * dtype: float16 or bfloat16 itself (n 1), or float32's elements a 16-bit
 * type holds exactly (h[0] float16, h[1] bfloat16).  The caller ends each
 * h[i] (nx_fp__hash_end) and hands it on; nx_fp__canon_end frees the rest.
 */
/* The first element of float32 p[i .. n) a 16-bit type may hold exactly. */
typedef size_t (*fp_cand_fn)(const unsigned char *p, size_t i, size_t n);
struct fp_canon {
	struct fp_hash *orig;
	struct fp_hash h[2];
	unsigned n;
	bool from_f32, bf16[2];
	int prev[2];
	unsigned char carry[4];
	size_t ncarry;
	uint16_t *in;
	fp_cand_fn next_cand;   /* AVX2 where the CPU has it */
};
#define FP_CANON_START (-1000)   /* *prev before the first element */
#define FP_CANON_DROP 3           /* 2^3 below the element before: FP_CANON_SMALL */
#define FP_CANON_SMALL 0x8000u
void nx_fp__canon16(uint16_t *out, const uint16_t *in, size_t n, bool bf16, int *prev);
/* The same one element at a time (what the AVX2 loop must equal; tests). */
void nx_fp__canon16_ref(uint16_t *out, const uint16_t *in, size_t n, bool bf16, int *prev);
int nx_fp__canon_begin(struct fp_canon *c, struct fp_hash *orig, const nx_fp_set *match,
		       int32_t dtype, nx_error *err);
int nx_fp__canon_feed(void *ctx, const unsigned char *buf, size_t len);
void nx_fp__canon_end(struct fp_canon *c);

/*
 * fingerprint_par.c: bytes [off, off + len) of fd read once, each buffer
 * fed to fn0 on the calling thread and to fn1 on a second one (both in
 * order; without a thread, fn1 then fn0 here).  fn1's consumers must say
 * their errors in err1 (copied to err when only fn1 failed) and share no
 * state with fn0's while the read lasts.
 */
#define FP_FAN_MIN (4u << 20)   /* bytes a tensor needs to be read so */
int nx_fp__read_fanned(int fd, const char *path, uint64_t off, uint64_t len,
		       nx_onnx_bytes_fn fn0, void *ctx0, nx_onnx_bytes_fn fn1, void *ctx1,
		       const nx_error *err1, nx_error *err);

/* fingerprint_quant.c: a float32 teacher tensor of rows x cols elements
 * of a shape in set->qshapes, read whole (t inline, else [off, off + len)
 * of fd), recorded in the int8 forms export.quantize writes. */
int nx_fp__quant_forms(nx_fp_set *set, const char *name, int fd, const char *path,
		   const struct nx_onnx_tensor *t, uint64_t off, uint64_t len, size_t min,
		   nx_error *err);
#endif
