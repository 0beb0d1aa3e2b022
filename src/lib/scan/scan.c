/*
 * scan.c - forbidden-term search in Python sources and plain text
 * (nexus/scan.h); YAML is in scan_yaml.c.
 *
 * The Python scanner tokenizes the file once (nexus/pylex.h) and then looks
 * at each token with a little context: runs of string literals joined by
 * juxtaposition or '+' are searched joined too, so "tea" "cher" is caught;
 * calls of the import/eval family are judged by their first argument.
 */
#include "nexus/scan.h"
#include "nexus/pylex.h"
#include "util/array_int.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <utf8proc.h>

/* `import_module as im` aliases remembered per file. */
#define NX_SCAN_ALIASES_MAX 16
/* f-strings nested in f-string replacement fields, each scanned as code. */
#define NX_SCAN_FSTRING_DEPTH_MAX 16

static unsigned char fold(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c;
}

const char *const nx_scan_builtin_terms[NX_SCAN_BUILTIN_TERMS] = {
	"teacher", "distillation", "soft_targets",
};

long long nx_scan_find(const char *hay, size_t n, const char *term)
{
	size_t m = strlen(term), i, j;

	if (m == 0 || m > n)
		return -1;
	for (i = 0; i + m <= n; i++) {
		for (j = 0; j < m; j++)
			if (fold((unsigned char)hay[i + j]) != fold((unsigned char)term[j]))
				break;
		if (j == m)
			return (long long)i;
	}
	return -1;
}

static void excerpt(char *dst, const char *tok, size_t n)
{
	size_t i;

	if (n > NX_SCAN_EXCERPT_MAX)
		n = NX_SCAN_EXCERPT_MAX;
	for (i = 0; i < n; i++)
		dst[i] = (unsigned char)tok[i] < 0x20 || tok[i] == 0x7f ? ' ' : tok[i];
	dst[n] = '\0';
}

int nx_scan_token(const char *tok, size_t n, const char *const *terms, size_t nterms,
		  enum nx_term_where where, long line, long col, nx_term_fn fn, void *ctx)
{
	char ex[NX_SCAN_EXCERPT_MAX + 1];
	size_t i;
	int rc;

	for (i = 0; i < nterms; i++) {
		if (nx_scan_find(tok, n, terms[i]) < 0)
			continue;
		excerpt(ex, tok, n);
		if ((rc = fn(ctx, terms[i], where, line, col, ex)))
			return rc;
	}
	return 0;
}

const char *nx_term_where_name(enum nx_term_where w)
{
	switch (w) {
	case NX_TERM_CODE: return "code";
	case NX_TERM_STRING: return "string";
	case NX_TERM_COMMENT: return "comment";
	case NX_TERM_DOCSTRING: return "docstring";
	case NX_TERM_KEY: return "key";
	case NX_TERM_VALUE: return "value";
	case NX_TERM_DYNAMIC_IMPORT: return "dynamic-import";
	}
	return "unknown";
}

int nx_scan_text(const char *buf, size_t len, const char *const *terms, size_t nterms,
		 nx_term_fn fn, void *ctx, const char *path, nx_error *err)
{
	char ex[NX_SCAN_EXCERPT_MAX + 1];
	size_t p = 0, e, i, off;
	long line = 1;
	long long k;
	int rc;

	while (p < len) {
		for (e = p; e < len && buf[e] != '\n'; e++)
			;
		for (i = 0; i < nterms; i++) {
			off = p;
			while (off < e && (k = nx_scan_find(buf + off, e - off, terms[i])) >= 0) {
				excerpt(ex, buf + p, e - p);
				rc = fn(ctx, terms[i], NX_TERM_STRING, line,
					(long)(off + (size_t)k - p) + 1, ex);
				if (rc)
					return rc;
				off += (size_t)k + 1;
			}
		}
		p = e + 1;
		line++;
	}
	return 0;
}

/* ---- Python ---- */

struct pyscan {
	const char *buf;
	nx_py_token *tok;
	size_t ntok;
	const char *const *terms;
	size_t nterms;
	nx_term_fn fn;
	void *ctx;
	size_t alias[NX_SCAN_ALIASES_MAX];       /* tokens naming an alias */
	const char *alias_of[NX_SCAN_ALIASES_MAX];
	size_t naliases;
	char *cat;            /* joined contents of a run of literals */
	size_t catlen, catcap;
	const char *path;
	nx_error *err;
	/* first significant token of the logical line under way: kept as each
	 * NEWLINE passes, since searching back from every name was quadratic
	 * in a statement's length (500,000 names: minutes) */
	size_t stmt;
	int depth;            /* f-string replacement fields entered */
	size_t held;          /* tokens the enclosing levels hold (pylex's cap is per file) */
	size_t field_of;      /* the f-string token whose fields are scanned */
	/* where the last field of it was: fields come in order, so each one's
	 * line is counted on from there, not from the string's start */
	size_t field_pos, field_line_start;
	long field_line;
};

static int scan_python(const char *buf, size_t len, const char *const *terms, size_t nterms,
		       nx_term_fn fn, void *ctx, const char *path, nx_error *err, int depth,
		       size_t held);

static int op_is(const struct pyscan *s, size_t i, const char *op)
{
	return i < s->ntok && s->tok[i].kind == NX_PY_OP && s->tok[i].len == strlen(op) &&
	       memcmp(s->buf + s->tok[i].start, op, s->tok[i].len) == 0;
}

static int name_is(const struct pyscan *s, size_t i, const char *name)
{
	return i < s->ntok && s->tok[i].kind == NX_PY_NAME && s->tok[i].len == strlen(name) &&
	       memcmp(s->buf + s->tok[i].start, name, s->tok[i].len) == 0;
}

static size_t next_sig(const struct pyscan *s, size_t i)
{
	while (i < s->ntok && (s->tok[i].kind == NX_PY_NL || s->tok[i].kind == NX_PY_COMMENT))
		i++;
	return i;
}

/* Previous token before i that is not a comment/NL, or (size_t)-1. */
static size_t prev_sig(const struct pyscan *s, size_t i)
{
	while (i-- > 0)
		if (s->tok[i].kind != NX_PY_NL && s->tok[i].kind != NX_PY_COMMENT)
			return i;
	return (size_t)-1;
}

/*
 * Join the literal run starting at string token i (literals separated by
 * nothing or by '+') into s->cat.  Sets *end to the index after the run,
 * *count, *fstr (some literal is an f-string) and *plus (some '+' joined).
 */
static int join_run(struct pyscan *s, size_t i, size_t *end, size_t *count, int *fstr,
		    int *plus)
{
	size_t j = i;

	s->catlen = 0;
	*count = 0;
	*fstr = 0;
	*plus = 0;
	while (j < s->ntok && s->tok[j].kind == NX_PY_STRING) {
		const nx_py_token *t = &s->tok[j];

		if (s->catlen + t->body_len > NX_SCAN_CONCAT_MAX)
			return nx_error_set(s->err, NX_ELIMIT, s->path, t->line, (long long)t->start,
					    "%s:%ld: string literals joined exceed %u bytes; "
					    "the file cannot be scanned",
					    s->path ? s->path : "<source>", t->line,
					    NX_SCAN_CONCAT_MAX);
		if (nx_array_grow(&s->cat, &s->catcap, s->catlen + t->body_len, 1, SIZE_MAX))
			return nx_error_set(s->err, NX_ENOMEM, s->path, 0, -1,
					    "%s: out of memory while scanning",
					    s->path ? s->path : "<source>");
		if (t->body_len)
			memcpy(s->cat + s->catlen, s->buf + t->body, t->body_len);
		s->catlen += t->body_len;
		*fstr |= !!(t->flags & NX_PY_STR_F);
		(*count)++;
		j = next_sig(s, j + 1);
		if (op_is(s, j, "+") && next_sig(s, j + 1) < s->ntok &&
		    s->tok[next_sig(s, j + 1)].kind == NX_PY_STRING) {
			j = next_sig(s, j + 1);
			*plus = 1;
		}
	}
	*end = j;
	return 0;
}

static int report_call(struct pyscan *s, size_t name, const char *term);
static size_t unescape(char *dst, const char *b, size_t n);

/* Does literal token j, escapes decoded, contain term? */
static int decoded_has(const struct pyscan *s, size_t j, const char *term, char *tmp)
{
	const nx_py_token *t = &s->tok[j];
	size_t n = unescape(tmp, s->buf + t->body, t->body_len);

	return nx_scan_find(tmp, n, term) >= 0;
}

/*
 * "\x74" "eacher", "te" + "\u0061cher": escapes that spell a term only once
 * the run is joined.  Terms already found raw in the run, or decoded in one
 * literal (scan_escaped), are not reported again.
 */
static int scan_joined_decoded(struct pyscan *s, size_t first, size_t end)
{
	char ex[NX_SCAN_EXCERPT_MAX + 1], *d, *tmp;
	const nx_py_token *t0 = &s->tok[first];
	size_t i, j, n;
	int rc = 0;

	if (!s->catlen || !memchr(s->cat, '\\', s->catlen))
		return 0;
	d = malloc(s->catlen + 1);
	tmp = malloc(s->catlen + 1);
	if (!d || !tmp) {
		free(d);
		free(tmp);
		return nx_error_set(s->err, NX_ENOMEM, s->path, 0, -1, "%s: out of memory while scanning",
				    s->path ? s->path : "<source>");
	}
	n = unescape(d, s->cat, s->catlen);
	for (i = 0; !rc && i < s->nterms; i++) {
		int alone = nx_scan_find(s->cat, s->catlen, s->terms[i]) >= 0;

		if (nx_scan_find(d, n, s->terms[i]) < 0)
			continue;
		for (j = first; j < end && !alone; j++)
			alone = s->tok[j].kind == NX_PY_STRING && !(s->tok[j].flags & NX_PY_STR_RAW) &&
				decoded_has(s, j, s->terms[i], tmp);
		if (alone)
			continue;
		excerpt(ex, d, n);
		rc = s->fn(s->ctx, s->terms[i], t0->docstring ? NX_TERM_DOCSTRING : NX_TERM_STRING,
			   t0->line, t0->col, ex);
	}
	free(d);
	free(tmp);
	return rc;
}

/* Terms found in the joined run but in none of its literals alone. */
static int scan_joined(struct pyscan *s, size_t first, size_t end)
{
	char ex[NX_SCAN_EXCERPT_MAX + 1];
	const nx_py_token *t0 = &s->tok[first];
	size_t i, j;
	int rc;

	/* getattr(__builtins__, "__imp" + "ort__") */
	if ((s->catlen == 10 && !memcmp(s->cat, "__import__", 10)) ||
	    (s->catlen == 13 && !memcmp(s->cat, "import_module", 13)))
		if ((rc = report_call(s, first, s->catlen == 10 ? "__import__" : "import_module")))
			return rc;
	/* getattr(sys, "mod" + "ules") */
	if (((s->catlen == 7 && !memcmp(s->cat, "modules", 7)) ||
	     (s->catlen == 12 && !memcmp(s->cat, "__builtins__", 12))) &&
	    (rc = report_call(s, first, "sys.modules")))
		return rc;
	if (s->catlen == 8 && !memcmp(s->cat, "__path__", 8) &&
	    (rc = report_call(s, first, "__path__")))
		return rc;
	for (i = 0; i < s->nterms; i++) {
		int alone = 0;

		if (nx_scan_find(s->cat, s->catlen, s->terms[i]) < 0)
			continue;
		for (j = first; j < end && !alone; j++)
			alone = s->tok[j].kind == NX_PY_STRING &&
				nx_scan_find(s->buf + s->tok[j].start, s->tok[j].len, s->terms[i]) >= 0;
		if (alone)
			continue;
		excerpt(ex, s->cat, s->catlen);
		rc = s->fn(s->ctx, s->terms[i], t0->docstring ? NX_TERM_DOCSTRING : NX_TERM_STRING,
			   t0->line, t0->col, ex);
		if (rc)
			return rc;
	}
	return 0;
}

static int report_call(struct pyscan *s, size_t name, const char *term)
{
	const nx_py_token *t = &s->tok[name];
	char ex[NX_SCAN_EXCERPT_MAX + 1];
	size_t n = s->tok[s->ntok - 1].start - t->start;

	excerpt(ex, s->buf + t->start, n);
	return s->fn(s->ctx, term, NX_TERM_DYNAMIC_IMPORT, t->line, t->col, ex);
}

/*
 * NAME token i: a call of __import__, import_module, exec, eval or compile?
 * Judge its first argument (see nexus/scan.h).
 */
static const char *const dyn_fns[] = { "__import__", "import_module", "exec", "eval",
	"compile", "run_path", "run_module", "spec_from_file_location", "module_from_spec", NULL };

/* The dyn_fns[] entry that token i names, directly or through an alias. */
static const char *dyn_name(const struct pyscan *s, size_t i)
{
	size_t k;

	for (k = 0; dyn_fns[k]; k++)
		if (name_is(s, i, dyn_fns[k]))
			return dyn_fns[k];
	for (k = 0; k < s->naliases; k++)
		if (s->tok[i].kind == NX_PY_NAME && s->tok[i].len == s->tok[s->alias[k]].len &&
		    memcmp(s->buf + s->tok[i].start, s->buf + s->tok[s->alias[k]].start,
			   s->tok[i].len) == 0)
			return s->alias_of[k];
	return NULL;
}

/* `from importlib import import_module as im`: remember im. */
static void find_aliases(struct pyscan *s)
{
	size_t i, a, b;
	const char *name;

	for (i = 0; i < s->ntok && s->naliases < NX_SCAN_ALIASES_MAX; i++) {
		if (s->tok[i].kind != NX_PY_NAME)
			continue;
		a = next_sig(s, i + 1);
		b = next_sig(s, a + 1);
		if (!name_is(s, a, "as") || b >= s->ntok || s->tok[b].kind != NX_PY_NAME)
			continue;
		if (!(name = dyn_name(s, i)) || dyn_name(s, b))
			continue;
		s->alias[s->naliases] = b;
		s->alias_of[s->naliases++] = name;
	}
}

static int scan_call(struct pyscan *s, size_t i)
{
	size_t open = next_sig(s, i + 1), arg, end, count, p, k;
	const char *name = dyn_name(s, i);
	int fstr, plus, rc, importer, found = 0, method;

	if (!name)
		return 0;
	/* runpy / importlib.util load code by path: never checkable */
	if (name[0] == 'r' || name[0] == 's' || name[0] == 'm')
		return report_call(s, i, name);
	importer = name[0] == '_' || name[0] == 'i';
	p = prev_sig(s, i);
	/* model.eval(), re.compile(): methods, unless of builtins */
	method = p != (size_t)-1 && op_is(s, p, ".") && !name_is(s, prev_sig(s, p), "builtins");
	if (p != (size_t)-1 && (name_is(s, p, "def") || name_is(s, p, "class")))
		return 0;
	if (!op_is(s, open, "(")) {
		/* `f = __import__`, `run = eval`: the function escapes; but not
		 * `def eval`, `import x as eval`, `f(eval=1)`, `x.exec` */
		if (name[0] == 'i' || name[0] == 'c' || method ||
		    (p != (size_t)-1 && (name_is(s, p, "def") || name_is(s, p, "as") ||
					 name_is(s, p, "import") || op_is(s, p, ","))) ||
		    (s->tok[i].depth > 0 && op_is(s, open, "=")))
			return 0;
		return report_call(s, i, name);
	}
	if (!importer && method)
		return 0;
	arg = next_sig(s, open + 1);
	if (arg >= s->ntok || s->tok[arg].kind != NX_PY_STRING)
		return report_call(s, i, name);
	if ((rc = join_run(s, arg, &end, &count, &fstr, &plus)))
		return rc;
	if (fstr || plus || (!op_is(s, end, ",") && !op_is(s, end, ")")))
		return report_call(s, i, name);
	for (k = 0; k < s->nterms; k++) {
		if (nx_scan_find(s->cat, s->catlen, s->terms[k]) < 0)
			continue;
		found = 1;
		if ((rc = report_call(s, i, s->terms[k])))
			return rc;
	}
	if (found || !importer)
		return 0;
	/* getattr(__import__("x"), name) / getattr(importlib.import_module(...), ...) */
	if (p != (size_t)-1 && op_is(s, p, ".") && name_is(s, prev_sig(s, p), "importlib"))
		p = prev_sig(s, prev_sig(s, p));
	if (p != (size_t)-1 && op_is(s, p, "(") && name_is(s, prev_sig(s, p), "getattr"))
		return report_call(s, i, name);
	return 0;
}

/*
 * Modules that turn bytes into code: unpickling imports and calls whatever
 * the data names, marshal loads code objects, shelve unpickles.  Serving
 * code has no use for them, and what they load cannot be checked.
 */
static const char *const loader_mods[] = { "pickle", "_pickle", "cPickle", "marshal", "shelve",
	"dill", "cloudpickle", "joblib", "copyreg",
	/* source text, archives, or native code run by path */
	"code", "codeop", "zipimport", "imp", "ctypes", "_ctypes", "cffi",
	/* pydoc.locate(name) imports by name */
	"pydoc", NULL };
/* Names that load a module from a path whatever they are reached through. */
static const char *const loader_names[] = { "SourceFileLoader", "SourcelessFileLoader",
	"ExtensionFileLoader", "load_module", "exec_module", "load_source", "load_compiled",
	"load_dynamic", "zipimporter",
	/* import a module by a name given as data */
	"resolve_name", "find_spec", "find_module", NULL };

static const char *loader_name(const char *b, size_t n)
{
	size_t k;

	for (k = 0; loader_mods[k]; k++)
		if (strlen(loader_mods[k]) == n && memcmp(b, loader_mods[k], n) == 0)
			return loader_mods[k];
	return NULL;
}

/* Token i is `=` or an augmented assignment (`+=`, `|=`, ...). */
static bool is_assign(const struct pyscan *s, size_t i)
{
	if (i >= s->ntok || s->tok[i].kind != NX_PY_OP ||
	    s->buf[s->tok[i].start + s->tok[i].len - 1] != '=')
		return false;
	return !op_is(s, i, "==") && !op_is(s, i, "<=") && !op_is(s, i, ">=") && !op_is(s, i, "!=");
}

/* Modules whose attributes include the importer or sys.modules. */
static bool reflective(const struct pyscan *s, size_t i)
{
	return name_is(s, i, "builtins") || name_is(s, i, "__builtins__") ||
	       name_is(s, i, "sys") || name_is(s, i, "importlib");
}

/*
 * getattr(sys, <computed>), vars(builtins)[...], importlib.__dict__: an
 * attribute of a module that holds the importer, by a name the scanner
 * cannot read (one plain literal is judged as a string elsewhere).
 */
static int scan_reflective(struct pyscan *s, size_t i)
{
	size_t o = next_sig(s, i + 1), x = next_sig(s, o + 1), cm = next_sig(s, x + 1);
	size_t a = next_sig(s, cm + 1), e = next_sig(s, a + 1);

	if (name_is(s, i, "getattr") && op_is(s, o, "(") && reflective(s, x) && op_is(s, cm, ",") &&
	    !(a < s->ntok && s->tok[a].kind == NX_PY_STRING && !(s->tok[a].flags & NX_PY_STR_F) &&
	      (op_is(s, e, ")") || op_is(s, e, ","))))
		return report_call(s, i, "getattr");
	if (name_is(s, i, "vars") && op_is(s, o, "(") && reflective(s, x))
		return report_call(s, i, "vars");
	if (reflective(s, i) && op_is(s, o, ".") && name_is(s, x, "__dict__"))
		return report_call(s, i, "__dict__");
	return 0;
}

/*
 * NAME token i: an import of a loader module (`import pickle`, `from
 * marshal import loads`), or sys.modules reached other than by one
 * literal name (`sys.modules["x" + y]`, `from sys import modules`).
 */
static int scan_loader(struct pyscan *s, size_t i)
{
	const nx_py_token *t = &s->tok[i];
	const char *mod = loader_name(s->buf + t->start, t->len);
	size_t st = s->stmt, p = prev_sig(s, i), o, a, c, k;
	int rc;

	/* `import pickle`, `from marshal import x`; not `from .a import code`,
	 * `from pkg.code import f` or `import x as code` */
	if (mod && (name_is(s, st, "import") || name_is(s, st, "from")) && p != (size_t)-1 &&
	    !op_is(s, p, ".") && !name_is(s, p, "as") &&
	    !(name_is(s, st, "from") && name_is(s, p, "import") &&
	      op_is(s, next_sig(s, st + 1), ".")))
		return report_call(s, i, mod);
	for (k = 0; loader_names[k]; k++)
		if (name_is(s, i, loader_names[k]))
			return report_call(s, i, loader_names[k]);
	if (name_is(s, i, "__builtins__"))
		return report_call(s, i, "__builtins__");
	if ((rc = scan_reflective(s, i)))
		return rc;
	/* `__path__ = [...]`, `__path__.append(d)`: a module made a package
	 * over places (or files) of its choosing answers later imports */
	o = next_sig(s, i + 1);
	if (name_is(s, i, "__path__") && (is_assign(s, o) || op_is(s, o, ".") || op_is(s, o, "[")))
		return report_call(s, i, "__path__");
	if (!name_is(s, i, "modules"))
		return 0;
	if (name_is(s, st, "from") && name_is(s, next_sig(s, st + 1), "sys"))
		return report_call(s, i, "sys.modules");
	if (p == (size_t)-1 || !op_is(s, p, ".") || !name_is(s, prev_sig(s, p), "sys"))
		return 0;
	o = next_sig(s, i + 1);
	a = next_sig(s, o + 1);
	c = next_sig(s, a + 1);
	/* reading one module by a literal name is fine; writing or deleting
	 * one decides what a later import of that name finds */
	if (op_is(s, o, "[") && a < s->ntok && s->tok[a].kind == NX_PY_STRING &&
	    !(s->tok[a].flags & NX_PY_STR_F) && op_is(s, c, "]") &&
	    !loader_name(s->buf + s->tok[a].body, s->tok[a].body_len) &&
	    !is_assign(s, next_sig(s, c + 1)) && !name_is(s, st, "del"))
		return 0;
	return report_call(s, i, "sys.modules");
}

static int hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 :
	       c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/*
 * "te\x61cher", "\u0074eacher", "\N{LATIN SMALL LETTER T}eacher" spell a
 * term the raw text does not contain.  Decode the escapes that yield ASCII
 * (\xHH, \uHHHH, \UHHHHHHHH, \ooo, \N{LATIN SMALL|CAPITAL LETTER c},
 * \N{LOW LINE}) and drop backslash-newlines into dst (at least n bytes);
 * others are kept as written.
 * Returns the decoded length.
 */
static size_t unescape(char *dst, const char *b, size_t n)
{
	size_t i = 0, o = 0, k, w;
	unsigned long v;

	while (i < n) {
		if (b[i] != '\\' || i + 1 >= n) {
			dst[o++] = b[i++];
			continue;
		}
		/* backslash-newline continues the literal: "teach\<NL>er" */
		if (b[i + 1] == '\n' || b[i + 1] == '\r') {
			i += 2 + (b[i + 1] == '\r' && i + 2 < n && b[i + 2] == '\n');
			continue;
		}
		w = b[i + 1] == 'x' ? 2 : b[i + 1] == 'u' ? 4 : b[i + 1] == 'U' ? 8 : 0;
		if (w && i + 2 + w <= n) {
			for (v = 0, k = 0; k < w && hexval(b[i + 2 + k]) >= 0; k++)
				v = v * 16 + (unsigned long)hexval(b[i + 2 + k]);
			if (k == w && v < 0x80) {
				dst[o++] = (char)v;
				i += 2 + w;
				continue;
			}
		}
		if (b[i + 1] >= '0' && b[i + 1] <= '7') {
			for (v = 0, k = 1; k <= 3 && i + k < n && b[i + k] >= '0' && b[i + k] <= '7'; k++)
				v = v * 8 + (unsigned long)(b[i + k] - '0');
			if (v < 0x80) {
				dst[o++] = (char)v;
				i += k;
				continue;
			}
		}
		if (b[i + 1] == 'N' && i + 2 < n && b[i + 2] == '{') {
			const char *e = memchr(b + i, '}', n - i);
			size_t len = e ? (size_t)(e - (b + i + 3)) : 0;
			const char *nm = b + i + 3;

			if (e && len == 22 && !strncasecmp(nm, "LATIN SMALL LETTER ", 19) && nm[21] == ' ')
				len = 0;   /* not a single letter */
			if (e && len == 20 && !strncasecmp(nm, "LATIN SMALL LETTER ", 19)) {
				dst[o++] = (char)(nm[19] | 0x20);
				i = (size_t)(e - b) + 1;
				continue;
			}
			if (e && len == 22 && !strncasecmp(nm, "LATIN CAPITAL LETTER ", 21)) {
				dst[o++] = (char)(nm[21] & ~0x20);
				i = (size_t)(e - b) + 1;
				continue;
			}
			if (e && len == 8 && !strncasecmp(nm, "LOW LINE", 8)) {
				dst[o++] = '_';
				i = (size_t)(e - b) + 1;
				continue;
			}
		}
		dst[o++] = b[i++];
	}
	return o;
}

/* A literal with escapes: scan what it decodes to, when that differs. */
static int scan_escaped(struct pyscan *s, const nx_py_token *t)
{
	char *d;
	size_t n;
	int rc = 0;

	if ((t->flags & NX_PY_STR_RAW) || !memchr(s->buf + t->body, '\\', t->body_len))
		return 0;
	if (!(d = malloc(t->body_len + 1)))
		return nx_error_set(s->err, NX_ENOMEM, s->path, 0, -1, "%s: out of memory while scanning",
				    s->path ? s->path : "<source>");
	n = unescape(d, s->buf + t->body, t->body_len);
	rc = nx_scan_token(d, n, s->terms, s->nterms,
			   t->docstring ? NX_TERM_DOCSTRING : NX_TERM_STRING, t->line, t->col, s->fn,
			   s->ctx);
	free(d);
	return rc;
}

/*
 * Python NFKC-normalises identifiers (PEP 3131): "\uff54eacher" (fullwidth
 * t) IS the name teacher.  Scan the normalised form of non-ASCII names.
 */
static int scan_nfkc_name(struct pyscan *s, const nx_py_token *t)
{
	utf8proc_uint8_t *d = NULL;
	utf8proc_ssize_t n;
	size_t k;
	int rc;

	for (k = 0; k < t->len && !((unsigned char)s->buf[t->start + k] & 0x80); k++)
		;
	if (k == t->len)
		return 0;
	n = utf8proc_map((const utf8proc_uint8_t *)s->buf + t->start, (utf8proc_ssize_t)t->len,
			 &d, UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT);
	if (n < 0)
		return 0;   /* invalid UTF-8 never reaches here: the lexer rejects it */
	rc = nx_scan_token((const char *)d, (size_t)n, s->terms, s->nterms, NX_TERM_CODE, t->line,
			   t->col, s->fn, s->ctx);
	free(d);
	return rc;
}

/* Findings inside a replacement field, placed at its line in the file. */
struct field_at {
	nx_term_fn fn;
	void *ctx;
	long line, col;    /* of the expression's first byte */
};

static int field_term(void *arg, const char *term, enum nx_term_where where, long line,
		      long col, const char *excerpt)
{
	struct field_at *a = arg;

	return a->fn(a->ctx, term, where, a->line + line - 1, line == 1 ? a->col + col - 2 : col,
		     excerpt);
}

/*
 * One replacement field of the f-string s->tok[s->field_of]: its expression
 * is code Python runs, scanned as a parenthesised expression with all the
 * rules (names, calls, loaders, nested f-strings).
 */
static int scan_field(void *arg, size_t start, size_t n)
{
	struct pyscan *s = arg;
	const nx_py_token *t = &s->tok[s->field_of];
	struct field_at at = { s->fn, s->ctx, 0, 0 };
	char *code;
	size_t i;
	int rc;

	if (s->depth >= NX_SCAN_FSTRING_DEPTH_MAX)
		return nx_error_set(s->err, NX_EFORMAT, s->path, t->line, (long long)start,
				    "%s:%ld: f-strings nested deeper than %d; the file cannot be "
				    "scanned", s->path ? s->path : "<source>", t->line,
				    NX_SCAN_FSTRING_DEPTH_MAX);
	for (i = s->field_pos; i < start; i++)
		if (s->buf[i] == '\n' || (s->buf[i] == '\r' && s->buf[i + 1] != '\n')) {
			s->field_line++;
			s->field_line_start = i + 1;
		}
	s->field_pos = start;
	at.line = s->field_line;
	at.col = (long)(start - s->field_line_start) + 1;
	if (!(code = malloc(n + 2)))
		return nx_error_set(s->err, NX_ENOMEM, s->path, 0, -1, "%s: out of memory while scanning",
				    s->path ? s->path : "<source>");
	code[0] = '(';
	memcpy(code + 1, s->buf + start, n);
	code[n + 1] = ')';
	/* the field's tokens count with those every enclosing level holds */
	rc = scan_python(code, n + 2, s->terms, s->nterms, field_term, &at, s->path, s->err,
			 s->depth + 1, s->held + s->ntok);
	if (rc < 0 && s->err && s->err->line > 0)
		s->err->line += at.line - 1;
	free(code);
	return rc;
}

static int scan_tokens(struct pyscan *s)
{
	size_t i, end, count, prev;
	int rc, fstr, plus;

	for (i = 0; i < s->ntok; i++) {
		const nx_py_token *t = &s->tok[i];
		const char *text = s->buf + t->start;

		if (i == 0 || s->tok[i - 1].kind == NX_PY_NEWLINE)
			s->stmt = next_sig(s, i);

		switch (t->kind) {
		case NX_PY_NAME:
			if ((rc = nx_scan_token(text, t->len, s->terms, s->nterms, NX_TERM_CODE,
						t->line, t->col, s->fn, s->ctx)) ||
			    (rc = scan_nfkc_name(s, t)) || (rc = scan_call(s, i)) ||
			    (rc = scan_loader(s, i)))
				return rc;
			break;
		case NX_PY_COMMENT:
			if ((rc = nx_scan_token(text, t->len, s->terms, s->nterms, NX_TERM_COMMENT,
						t->line, t->col, s->fn, s->ctx)))
				return rc;
			break;
		case NX_PY_STRING:
			if ((rc = nx_scan_token(text, t->len, s->terms, s->nterms,
						t->docstring ? NX_TERM_DOCSTRING : NX_TERM_STRING,
						t->line, t->col, s->fn, s->ctx)) ||
			    (rc = scan_escaped(s, t)))
				return rc;
			s->field_of = i;
			s->field_pos = t->start;
			s->field_line = t->line;
			s->field_line_start = t->start - (size_t)(t->col - 1);
			if ((t->flags & NX_PY_STR_F) &&
			    (rc = nx_pylex_fstring_fields(s->buf, t->start + t->len, t, scan_field, s)))
				return rc;
			/* getattr(importlib, "import_module") reaches the importer too */
			if ((t->body_len == 10 && memcmp(s->buf + t->body, "__import__", 10) == 0) ||
			    (t->body_len == 13 && memcmp(s->buf + t->body, "import_module", 13) == 0))
				if ((rc = report_call(s, i, t->body_len == 10 ? "__import__"
									  : "import_module")))
					return rc;
			/* __import__("pickle"), getattr(sys, "modules") */
			if (loader_name(s->buf + t->body, t->body_len) &&
			    (rc = report_call(s, i, loader_name(s->buf + t->body, t->body_len))))
				return rc;
			if (t->body_len == 12 && memcmp(s->buf + t->body, "__builtins__", 12) == 0 &&
			    (rc = report_call(s, i, "__builtins__")))
				return rc;
			/* setattr(m, "__path__", ...), globals()["__path__"] = ... */
			if (t->body_len == 8 && memcmp(s->buf + t->body, "__path__", 8) == 0 &&
			    (rc = report_call(s, i, "__path__")))
				return rc;
			if (t->body_len == 7 && memcmp(s->buf + t->body, "modules", 7) == 0 &&
			    (rc = report_call(s, i, "sys.modules")))
				return rc;
			/* first literal of a run: search the joined contents */
			prev = prev_sig(s, i);
			if (prev != (size_t)-1 && (s->tok[prev].kind == NX_PY_STRING ||
			    (op_is(s, prev, "+") && prev_sig(s, prev) != (size_t)-1 &&
			     s->tok[prev_sig(s, prev)].kind == NX_PY_STRING)))
				break;
			if ((rc = join_run(s, i, &end, &count, &fstr, &plus)))
				return rc;
			if (count > 1 && ((rc = scan_joined(s, i, end)) ||
					  (rc = scan_joined_decoded(s, i, end))))
				return rc;
			break;
		default:
			break;
		}
	}
	return 0;
}

/* Encodings that read ASCII as ASCII (Python's names, normalised to lower
 * case and '-'): under them the bytes the scanner reads are the text. */
static const char *const ascii_codings[] = { "utf-8", "utf8", "ascii", "us-ascii", "latin-1",
	"latin1", "iso-8859-1", "iso8859-1", "iso-latin-1", "l1", "cp1252", "windows-1252",
	"iso-8859-15", "latin-9", NULL };

static bool ascii_coding(const char *name, size_t n)
{
	char low[32];
	size_t i, k;

	if (n >= sizeof(low))
		return false;
	for (i = 0; i < n; i++)
		low[i] = name[i] == '_' ? '-' : (char)fold((unsigned char)name[i]);
	for (k = 0; ascii_codings[k]; k++) {
		size_t m = strlen(ascii_codings[k]);

		/* "utf-8-unix", "latin-1-dos": Python reads a suffix as the base */
		if (m <= n && !memcmp(low, ascii_codings[k], m) && (m == n || low[m] == '-'))
			return true;
	}
	return false;
}

/*
 * PEP 263: a comment on line 1 or 2 matching `coding[:=]\s*([-\w.]+)`
 * makes Python decode the file with that codec before tokenizing it.  Under
 * utf-7 `"+AHQ-eacher"` is "teacher"; unicode_escape decodes escapes in
 * code.  The scanner reads the bytes as UTF-8, so any other encoding means
 * it would not see what Python runs.  Lines are found as Python finds them
 * (tokenizer.c): a line ends at "\n", "\r\n" or a lone "\r" (a file
 * starting "\r# coding: utf-7" has its cookie on line 2: red team 9), and
 * a "coding:" with no name after it does not end the search of its line.
 */
static int check_coding(const char *buf, size_t len, const char *path, nx_error *err)
{
	size_t p = 0, e, k, n;
	long line;

	for (line = 1; line <= 2 && p < len; line++) {
		for (e = p; e < len && buf[e] != '\n' && buf[e] != '\r'; e++)
			;
		for (k = p; k < e && (buf[k] == ' ' || buf[k] == '\t' || buf[k] == '\f'); k++)
			;
		for (k = k < e && buf[k] == '#' ? k : e; k + 7 <= e; k++) {
			const char *hit = buf + k + 7;

			if (memcmp(buf + k, "coding", 6) || (buf[k + 6] != ':' && buf[k + 6] != '='))
				continue;
			while (hit < buf + e && (*hit == ' ' || *hit == '\t'))
				hit++;
			for (n = 0; hit + n < buf + e && (isalnum((unsigned char)hit[n]) ||
							  hit[n] == '-' || hit[n] == '_' ||
							  hit[n] == '.'); n++)
				;
			if (n && !ascii_coding(hit, n))
				return nx_error_set(err, NX_EFORMAT, path, line, (long long)(hit - buf),
						    "%s:%ld: declares the source encoding '%.*s', which "
						    "Python decodes before it tokenizes; only UTF-8 (or an "
						    "encoding equal to it on ASCII) can be scanned",
						    path ? path : "<source>", line, (int)(n < 32 ? n : 32),
						    hit);
			if (n)
				return 0;   /* Python uses the first cookie */
		}
		p = e + (e + 1 < len && buf[e] == '\r' && buf[e + 1] == '\n' ? 2 : 1);
	}
	return 0;
}

int nx_scan_python(const char *buf, size_t len, const char *const *terms, size_t nterms,
		   nx_term_fn fn, void *ctx, const char *path, nx_error *err)
{
	int rc = check_coding(buf, len, path, err);

	return rc ? rc : scan_python(buf, len, terms, nterms, fn, ctx, path, err, 0, 0);
}

static int scan_python(const char *buf, size_t len, const char *const *terms, size_t nterms,
		       nx_term_fn fn, void *ctx, const char *path, nx_error *err, int depth,
		       size_t held)
{
	struct pyscan s = { 0 };
	nx_pylex lx;
	size_t cap = 0;
	const char *name = path ? path : "<source>";
	int rc = 0, k;

	if (len > NX_SCAN_SRC_MAX)
		return nx_error_set(err, NX_ELIMIT, path, 0, -1,
				    "%s: python file larger than %u bytes; it cannot be scanned",
				    name, NX_SCAN_SRC_MAX);
	s.buf = buf;
	s.terms = terms;
	s.nterms = nterms;
	s.fn = fn;
	s.ctx = ctx;
	s.path = path;
	s.err = err;
	s.depth = depth;
	s.held = held;
	nx_pylex_init(&lx, buf, len);
	lx.ntokens = held;   /* NX_PYLEX_TOKENS_MAX is per file, fields included */
	do {
		if (NX_ARRAY_PUSH(s.tok, cap, s.ntok)) {
			rc = nx_error_set(err, NX_ENOMEM, path, 0, -1,
					  "%s: out of memory while scanning", name);
			goto out;
		}
		k = nx_pylex_next(&lx, &s.tok[s.ntok]);
		if (k == NX_PY_ERROR) {
			rc = nx_error_set(err, NX_EFORMAT, path, s.tok[s.ntok].line,
					  (long long)s.tok[s.ntok].start,
					  "%s:%ld: %s; the file cannot be scanned, fix it",
					  name, s.tok[s.ntok].line, s.tok[s.ntok].msg);
			goto out;
		}
		s.ntok++;
	} while (k != NX_PY_ENDMARKER);
	find_aliases(&s);
	rc = scan_tokens(&s);
out:
	free(s.tok);
	free(s.cat);
	return rc;
}
