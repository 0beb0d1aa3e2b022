/*
 * nexus/pylex.h - a Python tokenizer that returns one token at a time.
 *
 * The lexer is a small state machine over a byte-class table.  It borrows
 * the source buffer (which must outlive it), never allocates, and never
 * fails hard: malformed input (an unterminated string, a stray character)
 * comes back as an NX_PY_ERROR token carrying a static message and the
 * line where the problem starts, after which lexing resumes further on, so
 * a caller may stop at the first error or keep going.
 *
 * Differences from CPython's tokenizer, chosen for a scanner's needs:
 *  - no INDENT/DEDENT; every token carries instead the column of the first
 *    token of its logical line (`lcol`) and whether it starts that line;
 *  - an f-string (any nesting of replacement fields and quotes) is a single
 *    STRING token; the text of its expressions lies inside that token;
 *  - bytes >= 0x80 are identifier bytes (UTF-8 identifiers are not
 *    validated further).
 */
#ifndef NEXUS_PYLEX_H
#define NEXUS_PYLEX_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

enum nx_py_kind {
	NX_PY_ENDMARKER = 0, /* end of input; returned again on every later call */
	NX_PY_NAME,          /* identifier or keyword */
	NX_PY_NUMBER,
	NX_PY_STRING,        /* the whole literal, prefix and quotes included */
	NX_PY_COMMENT,       /* from '#' to the end of the line, newline excluded */
	NX_PY_OP,            /* operator or delimiter, brackets included */
	NX_PY_NEWLINE,       /* end of a logical line (len 0 at end of file) */
	NX_PY_NL,            /* a newline that does not end a logical line */
	NX_PY_ERROR          /* malformed input; see nx_py_token.msg */
};

/* String flags (nx_py_token.flags). */
#define NX_PY_STR_RAW    0x1
#define NX_PY_STR_BYTES  0x2
#define NX_PY_STR_F      0x4  /* f-string (or t-string) */
#define NX_PY_STR_TRIPLE 0x8

typedef struct nx_py_token {
	int kind;           /* enum nx_py_kind */
	size_t start;       /* byte offset of the token in the buffer */
	size_t len;         /* its length in bytes */
	long line;          /* 1-based line where the token starts */
	long col;           /* 1-based byte column where it starts */
	long lcol;          /* col of the first token of its logical line */
	int first;          /* 1 when the token starts its logical line */
	int depth;          /* bracket depth before this token */
	/* STRING only: */
	int flags;          /* NX_PY_STR_* */
	int docstring;      /* first statement of a module, def or class body */
	size_t body;        /* offset of the contents between the quotes */
	size_t body_len;
	/* ERROR only: static lower-case message, e.g. "unterminated string" */
	const char *msg;
} nx_py_token;

/* Lexer state: public so that it can live on the stack; fields are private. */
typedef struct nx_pylex {
	const char *buf;
	size_t len;
	size_t pos;
	long line;
	size_t line_start;    /* offset of the first byte of the current line */
	long depth;           /* open brackets */
	int line_has_tokens;  /* current logical line has a significant token */
	long lcol;
	int nlogical;         /* logical lines completed so far */
	/* docstring context of the current logical line */
	int head_kind;        /* 1 def/class header, 2 "async" seen first */
	int last_colon;       /* last significant token was ':' */
	int doc_next;         /* next logical line may hold a docstring */
	int done;
	int peeking;          /* no docstring look-ahead inside look-ahead */
	size_t ntokens;       /* tokens returned so far (NX_PYLEX_TOKENS_MAX) */
} nx_pylex;

/*
 * Tokens of one file, at most (scan.c starts an f-string field's lexer at the
 * count its enclosing levels hold): the scanners hold a file's tokens at once
 * (about 100 bytes each), so past this an ERROR token ends the input, and
 * verify stays within its 256 MiB (docs/TRV.md, Cost).  Serving code is
 * far below it: a 6 MB statement of 3 M one-byte tokens took 540 MB (red team 8).
 */
#define NX_PYLEX_TOKENS_MAX 1000000u

/* Start lexing buf[0..len).  buf is borrowed; NUL bytes are errors. */
void nx_pylex_init(nx_pylex *lx, const char *buf, size_t len);

/*
 * Fill *out with the next token and return its kind.  Always makes progress;
 * returns NX_PY_ENDMARKER (and keeps returning it) at the end of input,
 * after a final NEWLINE if the last logical line had no newline.
 */
int nx_pylex_next(nx_pylex *lx, nx_py_token *out);

/*
 * The expressions of an f-string's replacement fields are code that runs.
 * For f-string token t lexed from buf[0..len), call fn(ctx, start, n) for
 * each field's expression, buf[start..start+n), in order; fields nested in
 * a format spec ({x:{width}}) are reported too, a conversion (!r) and the
 * format spec are not part of an expression.  An f-string nested in an
 * expression is part of that expression's text.  Stops at the first
 * non-zero return of fn and returns it; 0 otherwise.
 */
typedef int (*nx_pylex_field_fn)(void *ctx, size_t start, size_t n);
int nx_pylex_fstring_fields(const char *buf, size_t len, const nx_py_token *t,
			    nx_pylex_field_fn fn, void *ctx);

/* Short name of a kind ("NAME", "STRING", ...). Never NULL. */
const char *nx_py_kind_name(int kind);

#ifdef __cplusplus
}
#endif
#endif
