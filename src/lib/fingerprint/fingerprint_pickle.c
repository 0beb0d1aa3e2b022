/*
 * fingerprint_pickle.c - the element type of each storage of a torch.save
 * zip, read from its data.pkl without running it.
 *
 * torch.save pickles every storage as the persistent id
 *     ('storage', torch.<Type>Storage, '<key>', '<location>', numel)
 * and writes its bytes to "<archive>/data/<key>".  The type is only in
 * the pickle, so without it a bfloat16 storage was known by its own bytes
 * only, and the student holding it widened to float32 passed (red team 7).
 *
 * Hand-written: no Debian C library reads pickles, and nothing here may
 * run one.  This is a scanner over the opcode stream (the argument
 * lengths of protocols 0-5): nothing is constructed or called, and the
 * memo is followed only for strings and storage classes (BINGET of
 * 'storage' or of a class pickled before).  It looks for the sequence
 * "storage", a torch storage class, a key string, which is how both
 * GLOBAL (protocol 2, torch's default) and STACK_GLOBAL (protocol 4)
 * checkpoints spell it.  An opcode it does not know ends the scan with
 * what it found: a storage it found no type for is read as before (its
 * bytes, and cast when its size is a multiple of 4).  Linear in the
 * pickle; memory bounded by FP_PICKLE_MEMO memo entries and `max` types
 * (the caller's count of storages in the zip: a pickle can name one every
 * 6 bytes).
 */
#include "fingerprint_int.h"

#include <stdlib.h>
#include <string.h>

#define FP_PICKLE_MEMO (1u << 18)   /* memo entries followed (strings, classes) */
#define FP_PICKLE_STR 512u          /* longer strings are not followed */

enum { TOK_NONE, TOK_OTHER, TOK_STR, TOK_CLASS };

struct tok {
	int kind;
	int32_t dtype;        /* TOK_CLASS: ONNX type of the storage class, 0 if not a float */
	const unsigned char *s;
	uint32_t n;           /* TOK_STR: its bytes (at most FP_PICKLE_STR) */
};

struct memo {
	uint64_t idx;
	struct tok t;
};

struct scan {
	struct memo *m;
	size_t nm, capm;
	uint64_t nmemoize;        /* MEMOIZE opcodes seen */
	struct tok prev, last;    /* the last two values pushed */
	int state;                /* 1: after 'storage' (11, 12: and one or two
				     strings, STACK_GLOBAL's); 2: after its
				     class; 3: after its key (the location
				     follows) */
	int32_t dtype;
	struct tok name;          /* the last string before 'storage': the
				     state-dict key of the tensor, mostly */
	struct tok name1, name2;  /* name before the last two values (a
				     STACK_GLOBAL's strings are no name) */
	struct nx_fp__dtype *out;
	size_t nout, capout, maxout;
};

static const struct {
	const char *name;
	int32_t dtype;
} storage_types[] = {
	{ "FloatStorage", 1 }, { "HalfStorage", 10 }, { "BFloat16Storage", 16 },
	{ "DoubleStorage", 11 }, { "LongStorage", 7 }, { "IntStorage", 6 },
	{ "ShortStorage", 5 }, { "CharStorage", 3 }, { "ByteStorage", 2 },
	{ "BoolStorage", 9 },
};

/* torch.<Type>Storage: its ONNX type, or -1 */
static int32_t storage_class(const unsigned char *mod, size_t nmod, const unsigned char *name,
			     size_t nname)
{
	size_t i;

	if (nmod != 5 || memcmp(mod, "torch", 5))
		return -1;
	for (i = 0; i < sizeof(storage_types) / sizeof(storage_types[0]); i++)
		if (strlen(storage_types[i].name) == nname &&
		    !memcmp(storage_types[i].name, name, nname))
			return storage_types[i].dtype;
	return -1;
}

static uint64_t le(const unsigned char *p, unsigned n)
{
	uint64_t v = 0;

	while (n--)
		v = v << 8 | p[n];
	return v;
}

/* A value was pushed: follow the pattern. */
static int push(struct scan *s, struct tok t)
{
	s->prev = s->last;
	s->last = t;
	s->name2 = s->name1;
	s->name1 = s->name;
	if (t.kind == TOK_STR && t.n == 7 && !memcmp(t.s, "storage", 7)) {
		s->state = 1;
	} else if (s->state == 3 && t.kind == TOK_STR) {
		s->state = 0;      /* the location ('cpu') is no tensor's name */
	} else if ((s->state == 1 || s->state == 12) && t.kind == TOK_CLASS) {
		s->state = 2;
		s->dtype = t.dtype;
	} else if ((s->state == 1 || s->state == 11) && t.kind == TOK_STR) {
		s->state = s->state == 1 ? 11 : 12;   /* STACK_GLOBAL's module, name */
	} else if (s->state == 2 && t.kind == TOK_STR && t.n < sizeof(s->out->key) &&
		   s->nout < s->maxout) {
		if (NX_ARRAY_PUSH(s->out, s->capout, s->nout))
			return -1;
		memcpy(s->out[s->nout].key, t.s, t.n);
		s->out[s->nout].key[t.n] = '\0';
		s->out[s->nout].dtype = s->dtype;
		s->out[s->nout].name = (const char *)s->name.s;
		s->out[s->nout].nname = s->name.kind == TOK_STR ? s->name.n : 0;
		s->nout++;
		s->name.kind = TOK_NONE;
		s->state = 3;
	} else {
		if (t.kind == TOK_STR)
			s->name = t;
		s->state = 0;
	}
	return 0;
}

/* BINPUT and friends: remember the last value if it is one we follow
 * (indices only increase, as the pickler writes them) */
static int put(struct scan *s, uint64_t idx)
{
	if (s->last.kind != TOK_STR && s->last.kind != TOK_CLASS)
		return 0;
	if (s->nm >= FP_PICKLE_MEMO || (s->nm && s->m[s->nm - 1].idx >= idx))
		return 0;
	if (NX_ARRAY_PUSH(s->m, s->capm, s->nm))
		return -1;
	s->m[s->nm].idx = idx;
	s->m[s->nm].t = s->last;
	s->nm++;
	return 0;
}

static struct tok get(const struct scan *s, uint64_t idx)
{
	size_t lo = 0, hi = s->nm;
	struct tok other = { TOK_OTHER, 0, NULL, 0 };

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (s->m[mid].idx == idx)
			return s->m[mid].t;
		if (s->m[mid].idx < idx)
			lo = mid + 1;
		else
			hi = mid;
	}
	return other;
}

static struct tok str_tok(const unsigned char *p, uint64_t n)
{
	struct tok t = { TOK_OTHER, 0, NULL, 0 };

	if (n <= FP_PICKLE_STR) {
		t.kind = TOK_STR;
		t.s = p;
		t.n = (uint32_t)n;
	}
	return t;
}

/* A line argument (protocol 0 opcodes): its length without the newline,
 * or -1 when the pickle ends first. */
static long long line(const unsigned char *p, const unsigned char *end)
{
	const unsigned char *nl = memchr(p, '\n', (size_t)(end - p));

	return nl ? nl - p : -1;
}

int nx_fp__pickle_dtypes(const unsigned char *p, size_t len, size_t max,
			 struct nx_fp__dtype **out, size_t *nout, nx_error *err)
{
	const unsigned char *end = p + len;
	struct scan s;
	int rc = 0;

	memset(&s, 0, sizeof(s));
	s.maxout = max;
	while (p < end && !rc) {
		unsigned char op = *p++;
		uint64_t avail = (uint64_t)(end - p), n;
		struct tok other = { TOK_OTHER, 0, NULL, 0 };
		long long l1, l2;
		unsigned w = 0;

		switch (op) {
		case '(': case '0': case '1': case 0x94:  /* MARK, POP, POP_MARK, MEMOIZE */
			if (op == 0x94)   /* the memo's next index, whatever is kept */
				rc = put(&s, s.nmemoize++);
			continue;
		case '.':   /* STOP */
			goto done;
		case '2': case 'N': case ')': case ']': case '}': case 'a': case 'e': case 'b':
		case 'l': case 't': case 'd': case 's': case 'u': case 'R': case 'o': case 'Q':
		case 0x81: case 0x85: case 0x86: case 0x87: case 0x88: case 0x89: case 0x92:
		case 0x8f: case 0x90: case 0x91: case 0x97: case 0x98:
			rc = push(&s, other);
			continue;
		case 0x93: {  /* STACK_GLOBAL: module and name pushed before */
			struct tok t = other;
			int32_t dt;

			if (s.prev.kind == TOK_STR && s.last.kind == TOK_STR &&
			    (dt = storage_class(s.prev.s, s.prev.n, s.last.s, s.last.n)) >= 0) {
				t.kind = TOK_CLASS;
				t.dtype = dt;
			}
			if (s.prev.kind == TOK_STR && s.last.kind == TOK_STR)
				s.name = s.name2;
			rc = push(&s, t);
			continue;
		}
		case 'K': case 'q': case 'h': case 0x80: case 0x82:
			w = 1;
			break;
		case 'M': case 0x83:
			w = 2;
			break;
		case 'J': case 'r': case 'j': case 0x84:
			w = 4;
			break;
		case 'G': case 0x95:
			w = 8;
			break;
		case 'U': case 0x8c: case 'C': case 0x8a:   /* 1-byte length, then data */
		case 'T': case 'X': case 'B': case 0x8b:    /* 4-byte length */
		case 0x8d: case 0x8e: case 0x96: {          /* 8-byte length */
			unsigned lw = (op == 'U' || op == 0x8c || op == 'C' || op == 0x8a) ? 1
				      : (op == 0x8d || op == 0x8e || op == 0x96) ? 8 : 4;

			if (avail < lw)
				goto done;
			n = le(p, lw);
			if (n > avail - lw)
				goto done;
			p += lw;
			rc = push(&s, (op == 'U' || op == 0x8c || op == 'T' || op == 'X' || op == 0x8d)
					      ? str_tok(p, n) : other);
			p += n;
			continue;
		}
		case 'c': case 'i':   /* GLOBAL, INST: module\nname\n */
			if ((l1 = line(p, end)) < 0 || (l2 = line(p + l1 + 1, end)) < 0)
				goto done;
			{
				struct tok t = other;
				int32_t dt = op == 'c' ? storage_class(p, (size_t)l1, p + l1 + 1,
								       (size_t)l2) : -1;

				if (dt >= 0) {
					t.kind = TOK_CLASS;
					t.dtype = dt;
				}
				p += l1 + 1 + l2 + 1;
				rc = push(&s, t);
			}
			continue;
		case 'I': case 'L': case 'F': case 'S': case 'V': case 'P': case 'g': case 'p':
			if ((l1 = line(p, end)) < 0)
				goto done;
			if (op == 'S' && l1 >= 2 && (p[0] == '\'' || p[0] == '"') && p[l1 - 1] == p[0])
				rc = push(&s, str_tok(p + 1, (uint64_t)l1 - 2));
			else if (op == 'V')
				rc = push(&s, str_tok(p, (uint64_t)l1));
			else if (op == 'g' || op == 'p') {
				char num[24];
				uint64_t idx;

				if (l1 == 0 || l1 >= (long long)sizeof(num))
					goto done;
				memcpy(num, p, (size_t)l1);
				num[l1] = '\0';
				idx = strtoull(num, NULL, 10);
				rc = op == 'p' ? put(&s, idx) : push(&s, get(&s, idx));
			} else
				rc = push(&s, other);
			p += l1 + 1;
			continue;
		default:
			goto done;   /* not a pickle opcode: keep what was found */
		}
		if (avail < w)
			goto done;
		n = le(p, w);
		p += w;
		if (op == 'q' || op == 'r')
			rc = put(&s, n);
		else if (op == 'h' || op == 'j')
			rc = push(&s, get(&s, n));
		else if (op != 0x80 && op != 0x95)   /* PROTO, FRAME push nothing */
			rc = push(&s, other);
	}
done:
	free(s.m);
	if (rc) {
		free(s.out);
		return nx_error_oom(err, NULL);
	}
	*out = s.out;
	*nout = s.nout;
	return 0;
}
