/*
 * scan_yaml.c - forbidden-term search in YAML and JSON (nexus/scan.h).
 *
 * A line-oriented lexer that knows just enough YAML to tell keys, values
 * and comments apart: indicators (- ? : , [ ] { }), plain scalars (ended
 * by ": ", " #", or a flow indicator inside [] / {}), quoted scalars (which
 * may run over several lines) and block scalars (| and >, whose lines are
 * the ones indented deeper than the line that opened them).  libyaml is not
 * used because it drops comments, and comments must be reported too.
 *
 * Quoted scalars are scanned as the parser would hand them to a program:
 * escapes decoded ("te\x61cher"), escaped line breaks joined, folds made
 * spaces.  Otherwise the raw text hides a term the value holds.
 */
#include "nexus/scan.h"
#include "util/array_int.h"

#include <stdlib.h>
#include <string.h>

struct ys {
	const char *buf;
	size_t len;
	size_t p;             /* current byte */
	size_t ls;            /* start of the current line */
	long line;
	long flow;            /* open [ and { */
	int block;            /* inside a block scalar */
	int qkey;             /* after a `? ` indicator: scalars are keys up to its ':' */
	int binary;           /* after a !!binary tag: the next scalar is base64 */
	int block_binary;     /* the open block scalar is base64: lines go to bin */
	char *bin;            /* a binary block scalar's text, decoded when it ends */
	size_t binlen, bincap;
	size_t qkey_indent;
	size_t block_indent;  /* its lines are indented deeper than this */
	const char *const *terms;
	size_t nterms;
	nx_term_fn fn;
	void *ctx;
	const char *path;
	nx_error *err;
};

static int blank(char c)
{
	return c == ' ' || c == '\t';
}

static int eol(const struct ys *y, size_t p)
{
	return p >= y->len || y->buf[p] == '\n' || y->buf[p] == '\r';
}

/* blank or end of line at p */
static int sep(const struct ys *y, size_t p)
{
	return eol(y, p) || blank(y->buf[p]);
}

static int flow_char(char c)
{
	return c == ',' || c == '[' || c == ']' || c == '{' || c == '}';
}

/* ':' at p is a mapping indicator (not part of a scalar like "a:b"). */
static int map_colon(const struct ys *y, size_t p)
{
	return p < y->len && y->buf[p] == ':' &&
	       (sep(y, p + 1) || (y->flow > 0 && flow_char(y->buf[p + 1])));
}

static int report(struct ys *y, size_t a, size_t b, enum nx_term_where w, long line, size_t ls)
{
	return nx_scan_token(y->buf + a, b - a, y->terms, y->nterms, w, line,
			     (long)(a - ls) + 1, y->fn, y->ctx);
}

/* Skip the newline at y->p, if any, and start the next line. */
static void next_line(struct ys *y)
{
	while (!eol(y, y->p))
		y->p++;
	if (y->p < y->len) {
		y->p += y->buf[y->p] == '\r' && y->p + 1 < y->len && y->buf[y->p + 1] == '\n' ? 2 : 1;
		y->line++;
	}
	y->ls = y->p;
}

static int hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 :
	       c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static int nl(char c)
{
	return c == '\n' || c == '\r';
}

/*
 * The value of the quoted scalar b[0..n) (quotes excluded) into dst (at
 * least n bytes): '' in single quotes; \xHH \uHHHH \UHHHHHHHH yielding
 * ASCII, \\ \" \/ \t and \<space> in double quotes (other escapes kept as
 * written: they cannot yield an ASCII letter); a backslash before a line
 * break removes the break and the next line's indentation; an unescaped
 * break with the blanks around it folds to one space.  Returns the length.
 */
static size_t yaml_unquote(char *dst, const char *b, size_t n, char q)
{
	size_t i = 0, o = 0, k, w;
	unsigned long v;

	while (i < n) {
		if (q == '\'' && b[i] == '\'' && i + 1 < n && b[i + 1] == '\'') {
			dst[o++] = '\'';
			i += 2;
		} else if (nl(b[i])) {
			while (o > 0 && blank(dst[o - 1]))
				o--;
			i += b[i] == '\r' && i + 1 < n && b[i + 1] == '\n' ? 2 : 1;
			while (i < n && blank(b[i]))
				i++;
			dst[o++] = ' ';
		} else if (q == '"' && b[i] == '\\' && i + 1 < n) {
			char c = b[i + 1];

			if (nl(c)) {
				i += 1 + (c == '\r' && i + 2 < n && b[i + 2] == '\n' ? 2 : 1);
				while (i < n && blank(b[i]))
					i++;
				continue;
			}
			w = c == 'x' ? 2 : c == 'u' ? 4 : c == 'U' ? 8 : 0;
			if (w && i + 2 + w <= n) {
				for (v = 0, k = 0; k < w && hexval(b[i + 2 + k]) >= 0; k++)
					v = v * 16 + (unsigned long)hexval(b[i + 2 + k]);
				if (k == w && v < 0x80) {
					dst[o++] = (char)v;
					i += 2 + w;
					continue;
				}
			}
			if (c == '\\' || c == '"' || c == '/' || c == ' ') {
				dst[o++] = c;
				i += 2;
			} else if (c == 't') {
				dst[o++] = '\t';
				i += 2;
			} else {
				dst[o++] = b[i++];
			}
		} else {
			dst[o++] = b[i++];
		}
	}
	return o;
}

static int b64val(char c)
{
	return c >= 'A' && c <= 'Z' ? c - 'A' : c >= 'a' && c <= 'z' ? c - 'a' + 26 :
	       c >= '0' && c <= '9' ? c - '0' + 52 : c == '+' ? 62 : c == '/' ? 63 : -1;
}

/*
 * A !!binary scalar is base64 the program reads as bytes: scan what it
 * decodes to (`!!binary dGVhY2hlcg==` is "teacher").  Characters that are
 * not base64 (line breaks, blanks, '=') are skipped.
 */
static int scan_base64(struct ys *y, const char *b, size_t n, enum nx_term_where w, long line,
		       long col)
{
	char *d = malloc(n / 4 * 3 + 3);
	size_t i, o = 0;
	unsigned acc = 0;
	int bits = 0, v, rc;

	if (!d)
		return nx_error_set(y->err, NX_ENOMEM, y->path, 0, -1, "%s: out of memory while scanning",
				    y->path ? y->path : "<yaml>");
	for (i = 0; i < n; i++) {
		if ((v = b64val(b[i])) < 0)
			continue;
		acc = (acc << 6) | (unsigned)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			d[o++] = (char)((acc >> bits) & 0xff);
		}
	}
	rc = nx_scan_token(d, o, y->terms, y->nterms, w, line, col, y->fn, y->ctx);
	free(d);
	return rc;
}

/* The text of a scalar, and its base64 value after a !!binary tag. */
static int scalar(struct ys *y, const char *b, size_t n, enum nx_term_where w, long line, long col)
{
	int rc = nx_scan_token(b, n, y->terms, y->nterms, w, line, col, y->fn, y->ctx);

	if (!rc && y->binary)
		rc = scan_base64(y, b, n, w, line, col);
	y->binary = 0;
	return rc;
}

/* A binary block scalar ended: scan its lines joined and decoded. */
static int end_block(struct ys *y)
{
	int rc = 0;

	if (y->block_binary && y->binlen)
		rc = scan_base64(y, y->bin, y->binlen, NX_TERM_VALUE, y->line, 1);
	y->block = 0;
	y->block_binary = 0;
	y->binlen = 0;
	return rc;
}

static int bin_append(struct ys *y, const char *b, size_t n)
{
	if (nx_array_grow(&y->bin, &y->bincap, y->binlen + n, 1, SIZE_MAX))
		return nx_error_set(y->err, NX_ENOMEM, y->path, 0, -1,
				    "%s: out of memory while scanning", y->path ? y->path : "<yaml>");
	memcpy(y->bin + y->binlen, b, n);
	y->binlen += n;
	return 0;
}

/* A quoted scalar at y->p; it may span lines. */
static int quoted(struct ys *y)
{
	size_t a = y->p, ls = y->ls, p = y->p + 1;
	long line = y->line;
	char q = y->buf[a], *d;
	size_t n;
	int rc;

	for (;;) {
		if (p >= y->len)
			return nx_error_set(y->err, NX_EFORMAT, y->path, line, (long long)a,
					    "%s:%ld: unterminated quoted scalar; close the quote",
					    y->path ? y->path : "<yaml>", line);
		/* a backslash before a newline only folds the line */
		if (q == '"' && y->buf[p] == '\\' && !eol(y, p + 1)) {
			p += 2;
			continue;
		}
		if (y->buf[p] == q) {
			if (q == '\'' && p + 1 < y->len && y->buf[p + 1] == '\'') {
				p += 2;
				continue;
			}
			break;
		}
		if (y->buf[p] == '\n' || (y->buf[p] == '\r' && !(p + 1 < y->len && y->buf[p + 1] == '\n'))) {
			y->line++;
			y->ls = p + 1;
		}
		p++;
	}
	y->p = ++p;
	while (p < y->len && blank(y->buf[p]))
		p++;
	if (!(d = malloc(y->p - a)))
		return nx_error_set(y->err, NX_ENOMEM, y->path, 0, -1, "%s: out of memory while scanning",
				    y->path ? y->path : "<yaml>");
	n = yaml_unquote(d, y->buf + a + 1, y->p - a - 2, q);
	rc = scalar(y, d, n, y->qkey || (p < y->len && y->buf[p] == ':') ? NX_TERM_KEY : NX_TERM_VALUE,
		    line, (long)(a - ls) + 1);
	free(d);
	return rc;
}

/* A plain scalar at y->p, up to the end of the line at most. */
static int plain(struct ys *y)
{
	size_t a = y->p, p = y->p, b;
	enum nx_term_where w = NX_TERM_VALUE;

	while (!eol(y, p)) {
		if (map_colon(y, p)) {
			w = NX_TERM_KEY;
			break;
		}
		if (blank(y->buf[p]) && p + 1 < y->len && y->buf[p + 1] == '#')
			break;
		if (y->flow > 0 && flow_char(y->buf[p]))
			break;
		p++;
	}
	for (b = p; b > a && blank(y->buf[b - 1]); b--)
		;
	y->p = p;
	return scalar(y, y->buf + a, b - a, y->qkey ? NX_TERM_KEY : w, y->line,
		      (long)(a - y->ls) + 1);
}

/* The rest of the current line (and of any quoted scalar it opens). */
static int scan_line(struct ys *y, size_t indent)
{
	int rc;

	for (;;) {
		char c;

		while (y->p < y->len && blank(y->buf[y->p]))
			y->p++;
		if (eol(y, y->p))
			return 0;
		c = y->buf[y->p];
		if (c == '#') {
			size_t a = y->p;

			while (!eol(y, y->p))
				y->p++;
			return report(y, a, y->p, NX_TERM_COMMENT, y->line, y->ls);
		}
		if ((c == '-' || c == '?' || c == ':') && (sep(y, y->p + 1) ||
		    (c == ':' && y->flow > 0))) {
			if (c == '?') {
				y->qkey = 1;
				y->qkey_indent = indent;
			} else if (c == ':') {
				y->qkey = 0;
			}
			y->p++;
		} else if (c == '[' || c == '{') {
			y->flow++;
			y->p++;
		} else if (c == ']' || c == '}') {
			if (y->flow > 0)
				y->flow--;
			y->p++;
		} else if (c == ',' && y->flow > 0) {
			y->p++;
		} else if (c == '!') {
			/* a tag: itself text (`!teacher`), and !!binary makes the
			 * scalar after it base64 */
			size_t a = y->p;

			while (!sep(y, y->p) && !(y->flow > 0 && flow_char(y->buf[y->p])))
				y->p++;
			if ((rc = report(y, a, y->p, NX_TERM_VALUE, y->line, y->ls)))
				return rc;
			y->binary = (y->p - a == 8 && !memcmp(y->buf + a, "!!binary", 8)) ||
				    (y->p - a == 27 &&
				     !memcmp(y->buf + a, "!<tag:yaml.org,2002:binary>", 27));
		} else if ((c == '|' || c == '>') && y->flow == 0) {
			y->block = 1;
			y->block_binary = y->binary;
			y->binary = 0;
			y->block_indent = indent;
			while (!sep(y, y->p))
				y->p++;
		} else if (c == '"' || c == '\'') {
			if ((rc = quoted(y)))
				return rc;
		} else if ((rc = plain(y))) {
			return rc;
		}
	}
}

int nx_scan_yaml(const char *buf, size_t len, const char *const *terms, size_t nterms,
		 nx_term_fn fn, void *ctx, const char *path, nx_error *err)
{
	struct ys y = { 0 };
	int rc = 0;

	y.buf = buf;
	y.len = len;
	y.line = 1;
	y.terms = terms;
	y.nterms = nterms;
	y.fn = fn;
	y.ctx = ctx;
	y.path = path;
	y.err = err;
	while (y.p < y.len) {
		size_t indent = 0, q;

		while (y.p + indent < y.len && y.buf[y.p + indent] == ' ')
			indent++;
		for (q = y.p + indent; q < y.len && blank(y.buf[q]); q++)
			;
		if (y.block && !eol(&y, q) && indent <= y.block_indent && (rc = end_block(&y)))
			goto out;
		if (y.block) {
			size_t e = q;

			while (!eol(&y, e))
				e++;
			if (e > q && (rc = report(&y, q, e, NX_TERM_VALUE, y.line, y.ls)))
				goto out;
			if (y.block_binary && (rc = bin_append(&y, y.buf + q, e - q)))
				goto out;
			next_line(&y);
			continue;
		}
		/* a `? key` ends at its ':' or at a line no deeper than the '?' */
		if (y.qkey && !eol(&y, q) && y.buf[q] != '#' && indent <= y.qkey_indent &&
		    y.buf[q] != ':')
			y.qkey = 0;
		y.p += indent;
		/* document markers */
		if (indent == 0 && y.p + 3 <= y.len && (memcmp(y.buf + y.p, "---", 3) == 0 ||
		    memcmp(y.buf + y.p, "...", 3) == 0) && sep(&y, y.p + 3))
			y.p += 3;
		if ((rc = scan_line(&y, indent)))
			goto out;
		next_line(&y);
	}
	rc = y.block ? end_block(&y) : 0;
out:
	free(y.bin);
	return rc;
}
