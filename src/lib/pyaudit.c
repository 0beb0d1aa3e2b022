/*
 * pyaudit.c - the static import audit of Python serving code
 * (nexus/pyaudit.h); its lists are in pyaudit_lists.c.
 *
 * One pass collects the import statements (anywhere: a statement is found
 * by its keyword, not by its indentation) and resolves each module; the
 * names they bind are sorted once.  A second pass looks at every name with
 * the tokens around it: a bare name (builtins, getattr, a module used as a
 * value), an attribute (what it reaches; the dotted path of a chain that
 * starts at an imported module, carried along the chain), a keyword
 * argument.  Bracket pairs and argument commas are matched once up front,
 * so no token is looked at more than a constant number of times.
 */
#include "nexus/pyaudit.h"
#include "nexus/pylex.h"
#include "pyaudit_int.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <utf8proc.h>

/* Distinct modules one name may be bound to by imports in a file
 * (try/except fallbacks); each is followed along attribute chains. */
#define TARGETS_MAX 4
#define NONE SIZE_MAX

enum origin { O_NONE, O_STDLIB, O_DECLARED, O_BUNDLE };
enum root { R_UNKNOWN, R_SELF, R_BUNDLE, R_MODULE };

/* What the audit keeps of a token (nx_py_token is twice the size). */
struct ctok {
	uint32_t start, len, body, body_len;   /* files are under 4 GiB (the cap) */
	int32_t line, col, depth;
	uint8_t kind, flags;
};

struct ptok {
	struct ctok t;
	const char *name;      /* NAME: NFKC form (into the buffer when ASCII) */
	uint32_t nlen;
	bool owned;            /* name was allocated */
};

struct binding {
	const char *name;
	size_t nlen;
	char *target;          /* dotted module (or module.attribute) */
	enum origin origin;
	bool module;           /* bound by `import`: a module object */
	size_t tok;            /* the name's token (of the file's top level) */
	bool own;              /* name was copied (an NFKC form outlives its token) */
};

struct bindings {
	struct binding *v;
	size_t n, cap;
	const struct nx_pyaudit_export **ex;   /* opts' exports sorted by name */
	const struct nx_pyaudit_export **exb;  /* the same by bound name (after the stem) */
	size_t nex;
};

struct audit {
	const char *buf;
	struct ptok *t;
	size_t n;
	size_t *match;         /* bracket -> its partner */
	size_t *next;          /* open bracket or comma -> next comma of its level or close */
	unsigned char *skip;   /* inside an import statement, or getattr's module argument */
	unsigned char *param;  /* inside a def's parameter list */
	const struct nx_pyaudit_opts *o;
	struct bindings *b;
	nx_pyaudit_fn fn;
	void *ctx;
	const char *path;
	nx_error *err;
	int depth;
	long line0, col0;      /* where this text starts in the file (f-string fields) */
	long last_line;
	const char *last_code;
	/* the attribute chain being followed */
	size_t chain;          /* its last NAME token */
	enum root root;
	size_t ntargets;
	char cpath[TARGETS_MAX][NX_PYAUDIT_DOTTED_MAX + 1];
	bool cdead[TARGETS_MAX];
	bool on_module;        /* the chain stands on an imported module object */
	char bpath[NX_PYAUDIT_DOTTED_MAX + 1];   /* bundle name the chain follows */
	bool bvalid;
	/* f-string fields: line counting carried from one field to the next */
	size_t field_of, field_pos, field_line_start;
	long field_line;
};

static int audit_text(const char *buf, size_t len, const struct nx_pyaudit_opts *o,
		      struct bindings *b, nx_pyaudit_fn fn, void *ctx, const char *path,
		      nx_error *err, int depth, long line0, long col0);

static int oom(struct audit *a)
{
	return nx_error_set(a->err, NX_ENOMEM, a->path, 0, -1, "%s: out of memory while auditing "
			    "imports", a->path ? a->path : "<source>");
}

__attribute__((format(printf, 4, 5)))
static int report(struct audit *a, const char *code, size_t i, const char *fmt, ...)
{
	char msg[768];
	const struct ctok *t = &a->t[i < a->n ? i : a->n - 1].t;
	long line = a->line0 + t->line - 1;
	long col = t->line == 1 ? a->col0 + t->col - 1 : t->col;
	va_list ap;

	/* one finding of a kind per line: `eval(eval(x))` is one problem */
	if (line == a->last_line && a->last_code == code)
		return 0;
	a->last_line = line;
	a->last_code = code;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return a->fn(a->ctx, code, line, col, msg);
}

/* ---- tokens ---- */

static bool is_op(const struct audit *a, size_t i, const char *op)
{
	return i < a->n && a->t[i].t.kind == NX_PY_OP && a->t[i].t.len == strlen(op) &&
	       !memcmp(a->buf + a->t[i].t.start, op, a->t[i].t.len);
}

static bool is_name(const struct audit *a, size_t i)
{
	return i < a->n && a->t[i].t.kind == NX_PY_NAME;
}

static bool name_is(const struct audit *a, size_t i, const char *s)
{
	return is_name(a, i) && a->t[i].nlen == strlen(s) && !memcmp(a->t[i].name, s, a->t[i].nlen);
}

static bool has_prefix(const char *s, size_t n, const char *p)
{
	size_t m = strlen(p);

	return n >= m && !memcmp(s, p, m);
}

static bool is_dunder(const char *s, size_t n)
{
	return n > 4 && has_prefix(s, n, "__") && s[n - 1] == '_' && s[n - 2] == '_';
}

/* Python compares identifiers in NFKC form: `ｅｖａｌ` is eval. */
static int normalise(struct audit *a, struct ptok *p, size_t *budget)
{
	utf8proc_uint8_t *d = NULL;
	utf8proc_ssize_t n;
	size_t k;

	p->name = a->buf + p->t.start;
	p->nlen = p->t.len;
	for (k = 0; k < p->t.len && !((unsigned char)p->name[k] & 0x80); k++)
		;
	if (k == p->t.len)
		return 0;
	n = utf8proc_map((const utf8proc_uint8_t *)p->name, (utf8proc_ssize_t)p->t.len, &d,
			 UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT);
	if (n < 0)
		return 0;   /* the lexer rejects invalid UTF-8 */
	if ((size_t)n > *budget) {
		free(d);
		return nx_error_set(a->err, NX_ELIMIT, a->path, p->t.line, (long long)p->t.start,
				    "%s:%ld: identifiers expand past %u bytes when normalised; the "
				    "file cannot be audited", a->path ? a->path : "<source>",
				    (long)p->t.line, NX_PYAUDIT_SRC_MAX);
	}
	*budget -= (size_t)n;
	p->name = (const char *)d;
	p->nlen = (uint32_t)n;
	p->owned = true;
	return 0;
}

static int lex(struct audit *a, size_t len)
{
	nx_pylex lx;
	size_t cap = 0, budget = NX_PYAUDIT_SRC_MAX;
	nx_py_token tk;
	int k, rc;

	nx_pylex_init(&lx, a->buf, len);
	do {
		k = nx_pylex_next(&lx, &tk);
		if (k == NX_PY_ERROR)
			return nx_error_set(a->err, NX_EFORMAT, a->path, a->line0 + tk.line - 1,
					    (long long)tk.start, "%s:%ld: %s; the file cannot be audited",
					    a->path ? a->path : "<source>", a->line0 + tk.line - 1,
					    tk.msg);
		if (k == NX_PY_NL || k == NX_PY_COMMENT)
			continue;
		if (a->n == cap) {
			struct ptok *p;

			cap = cap ? cap * 2 : 256;
			if (!(p = realloc(a->t, cap * sizeof(*p))))
				return oom(a);
			a->t = p;
		}
		memset(&a->t[a->n], 0, sizeof(a->t[a->n]));
		a->t[a->n].t = (struct ctok){ (uint32_t)tk.start, (uint32_t)tk.len, (uint32_t)tk.body,
					      (uint32_t)tk.body_len, (int32_t)tk.line,
					      (int32_t)tk.col, (int32_t)tk.depth, (uint8_t)tk.kind,
					      (uint8_t)tk.flags };
		if (k == NX_PY_NAME && (rc = normalise(a, &a->t[a->n], &budget)))
			return rc;
		a->n++;
	} while (k != NX_PY_ENDMARKER);
	return 0;
}

/* Bracket partners, and for each open bracket and comma the next comma of
 * the same bracket (or its close).  One pass with a stack. */
static int pair(struct audit *a)
{
	size_t *stack, *last, sp = 0, i;

	a->match = malloc(a->n * sizeof(size_t));
	a->next = malloc(a->n * sizeof(size_t));
	a->skip = calloc(a->n, 1);
	a->param = calloc(a->n, 1);
	stack = malloc(a->n * sizeof(size_t));
	last = malloc(a->n * sizeof(size_t));
	if (!a->match || !a->next || !a->skip || !a->param || !stack || !last) {
		free(stack);
		free(last);
		return oom(a);
	}
	for (i = 0; i < a->n; i++) {
		a->match[i] = a->next[i] = NONE;
		if (a->t[i].t.kind != NX_PY_OP || a->t[i].t.len != 1)
			continue;
		switch (a->buf[a->t[i].t.start]) {
		case '(': case '[': case '{':
			stack[sp] = i;
			last[sp++] = i;
			break;
		case ')': case ']': case '}':
			if (!sp)
				break;
			sp--;
			a->match[i] = stack[sp];
			a->match[stack[sp]] = i;
			a->next[last[sp]] = i;
			break;
		case ',':
			if (sp) {
				a->next[last[sp - 1]] = i;
				last[sp - 1] = i;
			}
			break;
		}
	}
	/* def f(...): parameter lists do not nest, so marking them is linear */
	for (i = 0; i + 2 < a->n; i++)
		if (name_is(a, i, "def") && is_op(a, i + 2, "(") && a->match[i + 2] != NONE) {
			size_t k;

			for (k = i + 3; k < a->match[i + 2]; k++)
				a->param[k] = 1;
			i = a->match[i + 2];
		}
	free(stack);
	free(last);
	return 0;
}

/* ---- bindings ---- */

static int cmp_binding(const void *x, const void *y)
{
	const struct binding *p = x, *q = y;
	size_t n = p->nlen < q->nlen ? p->nlen : q->nlen;
	int c = memcmp(p->name, q->name, n);

	if (c)
		return c;
	if (p->nlen != q->nlen)
		return p->nlen < q->nlen ? -1 : 1;
	return strcmp(p->target, q->target);
}

static int bind(struct audit *a, size_t name_tok, const char *target, enum origin origin,
		bool module)
{
	struct bindings *b = a->b;
	struct binding *v;

	if (b->n >= NX_PYAUDIT_BINDINGS_MAX)
		return nx_error_set(a->err, NX_ELIMIT, a->path, a->t[name_tok].t.line, -1,
				    "%s:%ld: more than %d names bound by imports; the file cannot be "
				    "audited", a->path ? a->path : "<source>", (long)a->t[name_tok].t.line,
				    NX_PYAUDIT_BINDINGS_MAX);
	if (b->n == b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 32;

		if (!(v = realloc(b->v, cap * sizeof(*v))))
			return oom(a);
		b->v = v;
		b->cap = cap;
	}
	v = &b->v[b->n];
	if (!(v->target = strdup(target)))
		return oom(a);
	v->name = a->t[name_tok].name;
	v->nlen = a->t[name_tok].nlen;
	v->own = a->t[name_tok].owned;
	if (v->own && !(v->name = strndup(v->name, v->nlen))) {
		free(v->target);
		return oom(a);
	}
	v->origin = origin;
	v->module = module;
	v->tok = name_tok;
	b->n++;
	return 0;
}

/* The bindings of name[0..n): *lo and the count (0 when none). */
static size_t lookup(const struct bindings *b, const char *name, size_t n, size_t *lo)
{
	size_t l = 0, h = b->n, k;

	while (l < h) {
		size_t m = l + (h - l) / 2;
		const struct binding *v = &b->v[m];
		size_t c = v->nlen < n ? v->nlen : n;
		int r = memcmp(v->name, name, c);

		if (r < 0 || (r == 0 && v->nlen < n))
			l = m + 1;
		else
			h = m;
	}
	*lo = l;
	for (k = l; k < b->n && b->v[k].nlen == n && !memcmp(b->v[k].name, name, n); k++)
		;
	return k - l;
}

/* Sort, drop duplicates, and refuse a name bound to more modules than the
 * chains can follow. */
static int seal_bindings(struct audit *a)
{
	struct bindings *b = a->b;
	size_t i, w = 0, run = 0;
	int rc = 0;

	if (b->n > 1)
		qsort(b->v, b->n, sizeof(b->v[0]), cmp_binding);
	for (i = 0; i < b->n; i++) {
		if (w && !cmp_binding(&b->v[w - 1], &b->v[i])) {
			b->v[w - 1].module |= b->v[i].module;
			free(b->v[i].target);
			if (b->v[i].own)
				free((void *)b->v[i].name);
			continue;
		}
		run = w && b->v[w - 1].nlen == b->v[i].nlen &&
		      !memcmp(b->v[w - 1].name, b->v[i].name, b->v[i].nlen) ? run + 1 : 1;
		b->v[w++] = b->v[i];
		if (run == TARGETS_MAX + 1 && !rc)
			rc = report(a, "import-unresolved", b->v[i].tok, "'%.*s' is bound to more than "
				    "%d modules by import statements; the audit follows at most %d: "
				    "use distinct names", (int)b->v[i].nlen, b->v[i].name,
				    TARGETS_MAX, TARGETS_MAX);
	}
	b->n = w;
	return rc;
}

/* ---- import statements ---- */

static bool declared(const struct audit *a, const char *mod)
{
	size_t k, n;

	for (k = 0; k < a->o->npackages; k++) {
		n = strlen(a->o->packages[k]);
		if (n && !strncmp(mod, a->o->packages[k], n) && (mod[n] == '\0' || mod[n] == '.'))
			return true;
	}
	return false;
}

static bool bundle_module(const struct audit *a, const char *s, size_t n)
{
	size_t k;

	for (k = 0; k < a->o->nmodules; k++)
		if (strlen(a->o->modules[k]) == n && !memcmp(a->o->modules[k], s, n))
			return true;
	return false;
}

/*
 * Resolve module `mod` imported at token i; report what is refused.
 * *bundle_stem gets the bundle module's stem ("" for the package itself)
 * when the origin is O_BUNDLE.  Returns the origin (O_NONE when refused)
 * or a negative error / fn's value through *rc.
 */
static enum origin resolve(struct audit *a, const char *mod, size_t i, const char **stem, int *rc)
{
	const char *why, *dot = strchr(mod, '.');
	size_t top = dot ? (size_t)(dot - mod) : strlen(mod);
	char first[NX_PYAUDIT_DOTTED_MAX + 1];

	*rc = 0;
	*stem = NULL;
	memcpy(first, mod, top);
	first[top] = '\0';
	if ((why = nx_pyaudit_training(mod))) {
		*rc = report(a, "import-training", i, "import of '%s' refused: %s; a training package "
			     "or submodule is refused even when python_packages declares its "
			     "package", mod, why);
		return O_NONE;
	}
	if ((why = nx_pyaudit__denied(mod))) {
		*rc = report(a, "import-denied", i, "import of '%s' refused: %s; serving code never "
			     "needs it and the audit cannot see what it would run", mod, why);
		return O_NONE;
	}
	if (!strcmp(first, "src")) {
		if (!dot) {
			*stem = "";
			return O_BUNDLE;
		}
		if (!strchr(dot + 1, '.') && bundle_module(a, dot + 1, strlen(dot + 1))) {
			*stem = dot + 1;
			return O_BUNDLE;
		}
	} else if (nx_pyaudit_stdlib(first)) {
		if (first[0] == '_' && strcmp(first, "__future__")) {
			*rc = report(a, "import-denied", i, "import of '%s' refused: a private module "
				     "of the standard library's implementation; import its public "
				     "module", mod);
			return O_NONE;
		}
		return O_STDLIB;
	} else if (declared(a, mod)) {
		return O_DECLARED;
	} else if (!dot && bundle_module(a, mod, top)) {
		*stem = mod;
		return O_BUNDLE;
	}
	*rc = report(a, "import-unresolved", i, "import of '%s' refused: it is not in the standard "
		     "library of python %s, the bundle's src/ or runtime.yaml python_packages "
		     "(a training library or teacher code? declare a serving package, or remove "
		     "the import)", mod, nx_pyaudit__stdlib_version());
	return O_NONE;
}

/* Dotted name at *j into out; *j moves past it.  False if it is not one. */
static bool dotted(const struct audit *a, size_t *j, char *out)
{
	size_t o = 0;

	for (;;) {
		if (!is_name(a, *j) || o + a->t[*j].nlen + 1 > NX_PYAUDIT_DOTTED_MAX)
			return false;
		memcpy(out + o, a->t[*j].name, a->t[*j].nlen);
		o += a->t[*j].nlen;
		out[o] = '\0';
		(*j)++;
		if (!is_op(a, *j, ".") || !is_name(a, *j + 1))
			return true;
		out[o++] = '.';
		(*j)++;
	}
}

static int name_rules(struct audit *a, size_t i, const char *s, size_t n, enum root root,
		      const char *module);

/* `import a.b as c, d` at token i; *end is the token after it. */
static int import_stmt(struct audit *a, size_t i, size_t *end)
{
	char mod[NX_PYAUDIT_DOTTED_MAX + 1];
	size_t j = i + 1, k;
	const char *stem;
	enum origin org;
	int rc = 0;

	for (;;) {
		size_t first = j, as = NONE;

		if (!dotted(a, &j, mod)) {
			rc = report(a, "import-unresolved", first, "import statement does not parse "
				    "(or names a module over %d bytes); it cannot be audited",
				    NX_PYAUDIT_DOTTED_MAX);
			break;
		}
		if (name_is(a, j, "as") && is_name(a, j + 1)) {
			as = j + 1;
			j += 2;
		}
		org = resolve(a, mod, first, &stem, &rc);
		if (rc)
			break;
		if (org == O_BUNDLE)   /* `import src.utils` binds src, the package */
			rc = bind(a, as != NONE ? as : first,
				  *stem && (as != NONE || !strchr(mod, '.')) ? stem : "__init__", org,
				  true);
		else if (org != O_NONE && as != NONE)
			rc = bind(a, as, mod, org, true);
		else if (org != O_NONE) {
			mod[a->t[first].nlen] = '\0';   /* `import a.b` binds a */
			rc = bind(a, first, mod, org, true);
		}
		if (rc || !is_op(a, j, ","))
			break;
		j++;
	}
	for (k = i; k < j && k < a->n; k++)
		a->skip[k] = 1;
	*end = j;
	return rc;
}

/* The names of `from M import ...` from token j; bind each to prefix.name. */
static int from_names(struct audit *a, size_t *jp, const char *prefix, enum origin org,
		      size_t stmt)
{
	char full[NX_PYAUDIT_DOTTED_MAX + 1];
	size_t j = *jp, nm;
	bool paren = is_op(a, j, "(");
	const char *why;
	int rc = 0;

	if (paren)
		j++;
	if (is_op(a, j, "*")) {
		*jp = j + 1;
		return report(a, "import-unresolved", stmt, "'from %s%s import *' refused: a star "
			      "import binds names the audit cannot see; import the names you use",
			      org == O_BUNDLE ? "." : "", prefix);
	}
	while (is_name(a, j)) {
		size_t as = NONE;

		nm = j++;
		if (name_is(a, j, "as") && is_name(a, j + 1)) {
			as = j + 1;
			j += 2;
		}
		if (org == O_NONE && *prefix &&
		    snprintf(full, sizeof(full), "%s.%.*s", prefix, (int)a->t[nm].nlen,
			     a->t[nm].name) < (int)sizeof(full) && (why = nx_pyaudit_training(full)))
			rc = report(a, "import-training", nm, "import of '%s' refused: %s", full, why);
		if (org != O_NONE) {
			/* a bundle name: "<stem>.<name>", or a stem, or "__init__.<name>" */
			bool pkg = org == O_BUNDLE && !*prefix;
			int w = pkg && bundle_module(a, a->t[nm].name, a->t[nm].nlen) ?
				snprintf(full, sizeof(full), "%.*s", (int)a->t[nm].nlen, a->t[nm].name) :
				snprintf(full, sizeof(full), "%s%s%.*s", pkg ? "__init__" : prefix,
					 pkg || *prefix ? "." : "", (int)a->t[nm].nlen, a->t[nm].name);

			if (w < 0 || (size_t)w >= sizeof(full))
				rc = report(a, "import-unresolved", nm, "imported name over %d bytes",
					    NX_PYAUDIT_DOTTED_MAX);
			else if ((why = nx_pyaudit_training(full)))
				rc = report(a, "import-training", nm, "import of '%s' refused: %s; a "
					    "training package or submodule is refused even when "
					    "python_packages declares its package", full, why);
			else if ((why = nx_pyaudit__denied(full)))
				rc = report(a, "import-denied", nm, "import of '%s' refused: %s", full,
					    why);
			else if (!(rc = name_rules(a, nm, a->t[nm].name, a->t[nm].nlen,
						   org == O_BUNDLE ? R_BUNDLE : R_MODULE,
						   org == O_BUNDLE ? NULL : prefix)))
				rc = bind(a, as != NONE ? as : nm, full, org, false);
		}
		if (rc || !is_op(a, j, ","))
			break;
		j++;
	}
	if (paren && is_op(a, j, ")"))
		j++;
	*jp = j;
	return rc;
}

/* `from [.]*M import ...` at token i. */
static int from_stmt(struct audit *a, size_t i, size_t *end)
{
	char mod[NX_PYAUDIT_DOTTED_MAX + 1] = "";
	size_t j = i + 1, level = 0, k;
	const char *stem = NULL;
	enum origin org = O_NONE;
	int rc = 0;

	while (is_op(a, j, ".") || is_op(a, j, "...")) {
		level += a->t[j].t.len;
		j++;
	}
	if ((!name_is(a, j, "import") && !dotted(a, &j, mod)) || !name_is(a, j, "import")) {
		rc = report(a, "import-unresolved", i, "import statement does not parse (or names "
			    "a module over %d bytes); it cannot be audited", NX_PYAUDIT_DOTTED_MAX);
		while (j < a->n && a->t[j].t.kind != NX_PY_NEWLINE && !is_op(a, j, ";"))
			j++;
		goto out;
	}
	j++;
	if (level == 1 && (!*mod || (!strchr(mod, '.') && bundle_module(a, mod, strlen(mod))))) {
		org = O_BUNDLE;
		stem = mod;
	} else if (level) {
		rc = report(a, "import-unresolved", i, "relative import '%.*s%s' refused: the "
			    "bundle's sources are the modules of src/, one level, nothing above it "
			    "or below it", (int)(level < 16 ? level : 16), "................", mod);
	} else {
		org = resolve(a, mod, i + 1, &stem, &rc);
	}
	if (!rc)
		rc = from_names(a, &j, org == O_BUNDLE ? stem : mod, org, i);
out:
	for (k = i; k < j && k < a->n; k++)
		a->skip[k] = 1;
	*end = j;
	return rc;
}

/* Does a statement start at token i? (`try: import x` and `a; import x` too) */
static bool stmt_start(const struct audit *a, size_t i)
{
	return i == 0 || a->t[i - 1].t.kind == NX_PY_NEWLINE || is_op(a, i - 1, ";") ||
	       (is_op(a, i - 1, ":") && a->t[i - 1].t.depth == 0);
}

static int imports(struct audit *a)
{
	size_t i = 0, end;
	int rc = 0;

	while (!rc && i < a->n) {
		if (name_is(a, i, "from") && stmt_start(a, i))
			rc = from_stmt(a, i, &end);
		else if (name_is(a, i, "import") && !a->skip[i])
			rc = import_stmt(a, i, &end);
		else
			end = i + 1;
		i = end > i ? end : i + 1;
	}
	return rc;
}

/* ---- names ---- */

/* What attribute s[0..n) of a chain with this root reaches; module is the
 * dotted path it is an attribute of when that is an imported module. */
static int name_rules(struct audit *a, size_t i, const char *s, size_t n, enum root root,
		      const char *module)
{
	const char *why;

	if (is_dunder(s, n)) {
		if (nx_pyaudit__dunder_ok(s, n) || (root == R_SELF && n == 8 &&
						    !memcmp(s, "__dict__", 8)))
			return 0;
		return report(a, "python-reflective", i, "'%.*s' refused: a dunder outside the data "
			      "model reaches namespaces, frames or the import system", (int)n, s);
	}
	if (n > 1 && s[0] == '_' && root != R_SELF && root != R_BUNDLE &&
	    !nx_pyaudit__private_ok(s, n))
		return report(a, "python-reflective", i, "private attribute '%.*s' of an object that "
			      "is not self, cls, super() or a bundle module refused: library "
			      "internals reach modules and importers", (int)n, s);
	if ((why = nx_pyaudit__attr(s, n)))
		return report(a, "python-reflective", i, "'%.*s' refused: %s", (int)n, s, why);
	if (module && (why = nx_pyaudit__member(module, s, n)))
		return report(a, "python-reflective", i, "'%s.%.*s' refused: %s", module, (int)n, s,
			      why);
	return 0;
}

/* The export bundle name p (a "<stem>.<name>") leads to, following
 * re-exports between bundle modules; NULL when p is no import binding. */
static const struct nx_pyaudit_export *exported(const struct audit *a, const char *p)
{
	int hops;

	for (hops = 0; hops < 8 && a->b->nex; hops++) {
		size_t l = 0, h = a->b->nex;

		while (l < h) {
			size_t m = l + (h - l) / 2;

			if (strcmp(a->b->ex[m]->name, p) < 0)
				l = m + 1;
			else
				h = m;
		}
		if (l == a->b->nex || strcmp(a->b->ex[l]->name, p))
			return NULL;
		if (!a->b->ex[l]->bundle)
			return a->b->ex[l];
		p = a->b->ex[l]->target;
	}
	return NULL;
}

/* The chain reached a module through a bundle module's import of it. */
static void add_target(struct audit *a, const struct nx_pyaudit_export *e)
{
	if (a->ntargets < TARGETS_MAX) {
		snprintf(a->cpath[a->ntargets], sizeof(a->cpath[0]), "%s", e->target);
		a->cdead[a->ntargets++] = false;
	}
	a->on_module |= e->module;
	a->root = R_MODULE;
}

/* Start a chain at NAME i. */
static void chain_start(struct audit *a, size_t i)
{
	const struct nx_pyaudit_export *e;
	size_t lo, cnt, k;

	a->chain = i;
	a->ntargets = 0;
	a->root = R_UNKNOWN;
	a->on_module = false;
	a->bvalid = false;
	if (name_is(a, i, "self") || name_is(a, i, "cls")) {
		a->root = R_SELF;
		return;
	}
	cnt = lookup(a->b, a->t[i].name, a->t[i].nlen, &lo);
	if (cnt)
		a->root = R_BUNDLE;
	for (k = lo; k < lo + cnt; k++) {
		const struct binding *v = &a->b->v[k];

		if (v->origin == O_BUNDLE && (e = exported(a, v->target))) {
			add_target(a, e);
		} else if (v->origin == O_BUNDLE) {
			if (!a->bvalid)
				snprintf(a->bpath, sizeof(a->bpath), "%s", v->target);
			a->bvalid = true;
		} else if (a->ntargets < TARGETS_MAX) {
			snprintf(a->cpath[a->ntargets], sizeof(a->cpath[0]), "%s", v->target);
			a->cdead[a->ntargets++] = false;
			a->on_module |= v->module;
			a->root = R_MODULE;
		}
	}
}

/*
 * Follow the bundle name of the chain to attribute NAME i, s[0..n).  A
 * bundle module named like a package (src/torch.py) is judged as that
 * package, since production may import the real one under its name.
 */
static int bundle_step(struct audit *a, size_t i, const char *s, size_t n)
{
	const struct nx_pyaudit_export *e;
	size_t len = strlen(a->bpath);
	const char *why;

	if (!a->bvalid)
		return 0;
	if (!strcmp(a->bpath, "__init__") && bundle_module(a, s, n)) {
		memcpy(a->bpath, s, n);
		a->bpath[n] = '\0';
		return 0;
	}
	if (len + 1 + n > NX_PYAUDIT_DOTTED_MAX) {
		a->bvalid = false;
		return 0;
	}
	a->bpath[len] = '.';
	memcpy(a->bpath + len + 1, s, n);
	a->bpath[len + 1 + n] = '\0';
	if ((e = exported(a, a->bpath))) {
		add_target(a, e);
		a->bvalid = false;
	} else if ((why = nx_pyaudit_training(a->bpath))) {
		a->bvalid = false;
		return report(a, "import-training", i, "'%s' refused: %s (a bundle module named "
			      "like the package it shadows)", a->bpath, why);
	} else if ((why = nx_pyaudit__denied(a->bpath))) {
		a->bvalid = false;
		return report(a, "import-denied", i, "'%s' refused: %s (a bundle module named like "
			      "the package it shadows)", a->bpath, why);
	}
	return 0;
}

/* The chain ends here: a module, or a package holding training or denied
 * modules, is a value the audit would stop following. */
static int chain_end(struct audit *a, size_t i)
{
	size_t k;

	/* a bundle module is a namespace of modules too (utils.torch); a
	 * module is not callable, so `resp.json()` is no module */
	if ((a->on_module || (a->bvalid && !strchr(a->bpath, '.'))) && !is_op(a, i + 1, "("))
		return report(a, "python-reflective", i, "module '%.*s' used as a value (passed, "
			      "stored or returned) refused: the audit follows a module only through "
			      "its attributes", (int)a->t[i].nlen, a->t[i].name);
	for (k = 0; k < a->ntargets; k++)
		if (!a->cdead[k] && nx_pyaudit__holds(a->cpath[k]))
			return report(a, "python-reflective", i, "'%s' used as a value refused: it "
				      "holds training or denied modules the audit would stop "
				      "following", a->cpath[k]);
	return 0;
}

static const char *bound_name(const struct nx_pyaudit_export *e)
{
	const char *d = strchr(e->name, '.');

	return d ? d + 1 : e->name;
}

/*
 * Attribute NAME i of an object the audit does not follow, named like a
 * name some import binds (here, or in another bundle module): `class A:
 * import torch` makes A.torch (and self.torch) that module.  Continue the
 * chain as that module; false when no import binds the name.
 */
static bool rebind(struct audit *a, size_t i)
{
	const struct nx_pyaudit_export *e;
	const char *s = a->t[i].name;
	size_t n = a->t[i].nlen, lo, cnt, k, l = 0, h = a->b->nex;

	cnt = lookup(a->b, s, n, &lo);
	for (k = lo; k < lo + cnt && a->ntargets < TARGETS_MAX; k++)
		if (a->b->v[k].origin != O_BUNDLE) {
			snprintf(a->cpath[a->ntargets], sizeof(a->cpath[0]), "%s", a->b->v[k].target);
			a->cdead[a->ntargets++] = false;
			a->on_module |= a->b->v[k].module;
		}
	while (l < h) {
		size_t m = l + (h - l) / 2;
		if (strncmp(bound_name(a->b->exb[m]), s, n) < 0)
			l = m + 1;
		else
			h = m;
	}
	for (k = l; k < a->b->nex && !strncmp(bound_name(a->b->exb[k]), s, n) &&
	     bound_name(a->b->exb[k])[n] == '\0'; k++)
		if ((e = exported(a, a->b->exb[k]->name)))
			add_target(a, e);
	if (a->ntargets)
		a->root = R_MODULE;
	return a->ntargets > 0;
}

/* Extend the chain by attribute NAME i: judge what the path reaches. */
static int chain_step(struct audit *a, size_t i, const char *s, size_t n)
{
	const char *why;
	size_t k, len;
	int rc = 0;

	for (k = 0; !rc && k < a->ntargets; k++) {
		char *p = a->cpath[k];

		if (a->cdead[k])
			continue;
		len = strlen(p);
		if ((why = nx_pyaudit__member(p, s, n)))
			rc = report(a, "python-reflective", i, "'%s.%.*s' refused: %s", p, (int)n, s,
				    why);
		if (rc || len + 1 + n > NX_PYAUDIT_DOTTED_MAX) {
			/* no list entry is this long: nothing further can match */
			a->cdead[k] = true;
			continue;
		}
		p[len] = '.';
		memcpy(p + len + 1, s, n);
		p[len + 1 + n] = '\0';
		if ((why = nx_pyaudit_training(p))) {
			rc = report(a, "import-training", i, "'%s' refused: %s; a training package or "
				    "submodule is refused even when python_packages declares its "
				    "package", p, why);
			a->cdead[k] = true;
		} else if ((why = nx_pyaudit__denied(p))) {
			rc = report(a, "import-denied", i, "'%s' refused: %s", p, why);
			a->cdead[k] = true;
		}
	}
	return rc;
}

/* Tokens [lo, hi): one literal (adjacent literals joined) naming an
 * attribute, identifier characters and dots only, into out. */
static bool plain_literal(const struct audit *a, size_t lo, size_t hi, char *out, size_t cap)
{
	size_t o = 0, i, k;

	if (lo >= hi)
		return false;
	for (i = lo; i < hi; i++) {
		const struct ctok *t = &a->t[i].t;

		if (t->kind != NX_PY_STRING || (t->flags & (NX_PY_STR_F | NX_PY_STR_BYTES)))
			return false;
		for (k = 0; k < t->body_len; k++) {
			char c = a->buf[t->body + k];

			if (!(c == '_' || c == '.' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			      (c >= '0' && c <= '9')) || o + 1 >= cap)
				return false;
			out[o++] = c;
		}
	}
	out[o] = '\0';
	return o > 0;
}

/* getattr/setattr/delattr/hasattr at NAME i: only called, with a plain
 * literal name, which is judged as an attribute of the first argument. */
static int getattr_call(struct audit *a, size_t i)
{
	char lit[NX_PYAUDIT_DOTTED_MAX + 1];
	size_t o = i + 1, c, e, first = i + 2;
	enum root root = R_UNKNOWN;
	int rc;

	if (!is_op(a, o, "(") || a->match[o] == NONE)
		return report(a, "python-reflective", i, "'%.*s' used other than called with a "
			      "literal attribute name: a lookup by computed name", (int)a->t[i].nlen,
			      a->t[i].name);
	c = a->next[o];
	e = c != NONE && c != a->match[o] ? a->next[c] : NONE;
	if (e == NONE || !plain_literal(a, c + 1, e, lit, sizeof(lit)) || strchr(lit, '.'))
		return report(a, "python-reflective", i, "'%.*s' with a computed attribute name "
			      "refused: the audit cannot see what it reaches; use the attribute "
			      "itself", (int)a->t[i].nlen, a->t[i].name);
	if (c == first + 1 && is_name(a, first)) {
		/* getattr(module, "name"): the module is not passed on */
		chain_start(a, first);
		root = a->root;
		a->skip[first] = 1;
		if ((rc = name_rules(a, c + 1, lit, strlen(lit), root, NULL)))
			return rc;
		a->on_module = false;
		if ((rc = chain_step(a, c + 1, lit, strlen(lit))) ||
		    (rc = bundle_step(a, c + 1, lit, strlen(lit))))
			return rc;
		return chain_end(a, c + 1);   /* what getattr returns is a value */
	}
	return name_rules(a, c + 1, lit, strlen(lit), root, NULL);
}

/* operator.attrgetter / methodcaller at NAME i: literal names only. */
static int getter_call(struct audit *a, size_t i, bool all)
{
	char lit[NX_PYAUDIT_DOTTED_MAX + 1];
	size_t o = i + 1, c, start;
	int rc = 0;

	if (!is_op(a, o, "(") || a->match[o] == NONE)
		return report(a, "python-reflective", i, "'%.*s' used other than called with "
			      "literal attribute names: a lookup by computed name",
			      (int)a->t[i].nlen, a->t[i].name);
	for (start = o + 1, c = a->next[o]; !rc && c != NONE; start = c + 1, c = a->next[c]) {
		char *p, *dot;

		if (!plain_literal(a, start, c, lit, sizeof(lit)))
			return report(a, "python-reflective", i, "'%.*s' with a computed attribute "
				      "name refused", (int)a->t[i].nlen, a->t[i].name);
		for (p = lit; !rc && p; p = dot ? dot + 1 : NULL) {
			dot = strchr(p, '.');
			rc = name_rules(a, start, p, dot ? (size_t)(dot - p) : strlen(p), R_UNKNOWN,
					NULL);
		}
		if (!all || c == a->match[o])
			break;
	}
	return rc;
}

static bool one_of(const struct audit *a, size_t i, const char *const *names)
{
	for (; *names; names++)
		if (name_is(a, i, *names))
			return true;
	return false;
}

static bool is_assign(const struct audit *a, size_t i)
{
	return is_op(a, i, "=");
}

/* An imported module used other than through its attributes. */
static int module_value(struct audit *a, size_t i)
{
	static const char *const cond[] = { "if", "elif", "while", "not", "and", "or", NULL };
	static const char *const after[] = { "del", "global", "nonlocal", NULL };
	static const char *const logic[] = { "and", "or", NULL };

	if ((a->root != R_MODULE && !a->bvalid) || a->skip[i] || is_op(a, i + 1, "."))
		return 0;
	if ((is_assign(a, i + 1) && stmt_start(a, i)) || (i && one_of(a, i - 1, after)) ||
	    name_is(a, i + 1, "is") || (i && name_is(a, i - 1, "is")) ||
	    (i > 1 && name_is(a, i - 1, "not") && name_is(a, i - 2, "is")) ||
	    (i && one_of(a, i - 1, cond) && (is_op(a, i + 1, ":") || one_of(a, i + 1, logic))))
		return 0;
	return chain_end(a, i);
}

/* NAME i followed by '=' inside a call: a keyword argument. */
static bool keyword_arg(const struct audit *a, size_t i)
{
	return a->t[i].t.depth > 0 && is_assign(a, i + 1) && i &&
	       (is_op(a, i - 1, "(") || is_op(a, i - 1, ","));
}

static int bare_name(struct audit *a, size_t i)
{
	const char *s = a->t[i].name, *why;
	size_t n = a->t[i].nlen;

	if (keyword_arg(a, i)) {
		if ((why = nx_pyaudit__keyword(s, n)) &&
		    !(name_is(a, i + 2, "False") && (is_op(a, i + 3, ",") || is_op(a, i + 3, ")"))))
			return report(a, "python-reflective", i, "keyword '%.*s' refused unless False: "
				      "%s", (int)n, s, why);
		return 0;
	}
	if (i && (name_is(a, i - 1, "def") || name_is(a, i - 1, "class")))
		return 0;
	if ((why = nx_pyaudit__builtin(s, n)))
		return report(a, "python-reflective", i, "'%.*s' refused: %s; serving code must "
			      "import and call only what the audit can see", (int)n, s, why);
	if (is_dunder(s, n) && !nx_pyaudit__dunder_ok(s, n))
		return report(a, "python-reflective", i, "'%.*s' refused: a dunder outside the data "
			      "model reaches namespaces, frames or the import system", (int)n, s);
	if (name_is(a, i, "getattr") || name_is(a, i, "setattr") || name_is(a, i, "delattr") ||
	    name_is(a, i, "hasattr"))
		return getattr_call(a, i);
	/* `from operator import attrgetter as ag`: ag is attrgetter */
	if (a->root == R_MODULE && a->ntargets &&
	    (!strcmp(a->cpath[0], "operator.attrgetter") ||
	     !strcmp(a->cpath[0], "operator.methodcaller")))
		return getter_call(a, i, !strcmp(a->cpath[0], "operator.attrgetter"));
	return module_value(a, i);
}

/* Audit an f-string's replacement field as code. */
static int field(void *arg, size_t start, size_t n)
{
	struct audit *a = arg;
	const struct ctok *t = &a->t[a->field_of].t;
	char *code;
	size_t i;
	long line, col;
	int rc;

	if (a->depth >= NX_PYAUDIT_FSTRING_DEPTH_MAX)
		return nx_error_set(a->err, NX_EFORMAT, a->path, t->line, (long long)start,
				    "%s:%ld: f-strings nested deeper than %d; the file cannot be "
				    "audited", a->path ? a->path : "<source>", (long)t->line,
				    NX_PYAUDIT_FSTRING_DEPTH_MAX);
	for (i = a->field_pos; i < start; i++)
		if (a->buf[i] == '\n') {
			a->field_line++;
			a->field_line_start = i + 1;
		}
	a->field_pos = start;
	line = a->line0 + a->field_line - 1;
	col = (long)(start - a->field_line_start) + (a->field_line == 1 ? a->col0 : 1);
	if (!(code = malloc(n + 2)))
		return oom(a);
	code[0] = '(';
	memcpy(code + 1, a->buf + start, n);
	code[n + 1] = ')';
	rc = audit_text(code, n + 2, a->o, a->b, a->fn, a->ctx, a->path, a->err, a->depth + 1,
			line, col - 1);
	free(code);
	return rc;
}

/* STRING i is an annotation: `-> "T"`, `def f(x: "T")`, `x: "T" = ...`. */
static bool annotation(const struct audit *a, size_t i)
{
	const struct ctok *t = &a->t[i].t;

	if (!i || (t->flags & (NX_PY_STR_F | NX_PY_STR_BYTES)) || is_name(a, i + 1))
		return false;
	if (is_op(a, i - 1, "->"))
		return true;
	return i > 1 && is_op(a, i - 1, ":") && is_name(a, i - 2) &&
	       (a->param[i - 1] || (a->t[i - 1].t.depth == 0 && stmt_start(a, i - 2)));
}

/* Typing tools evaluate an annotation string: audit it as code.  One that
 * is not an expression cannot be evaluated either. */
static int annotation_code(struct audit *a, size_t i)
{
	const struct ctok *t = &a->t[i].t;
	nx_error sub;
	char *code;
	int rc;

	/* escapes and pieces are decoded and joined before evaluation */
	if (memchr(a->buf + t->body, '\\', t->body_len) ||
	    (i + 1 < a->n && a->t[i + 1].t.kind == NX_PY_STRING) ||
	    a->depth >= NX_PYAUDIT_FSTRING_DEPTH_MAX)
		return report(a, "python-reflective", i, "annotation string with escapes or in "
			      "pieces refused: typing tools evaluate it as code, and the audit "
			      "reads only plain annotation strings");
	if (!(code = malloc((size_t)t->body_len + 2)))
		return oom(a);
	code[0] = '(';
	memcpy(code + 1, a->buf + t->body, t->body_len);
	code[t->body_len + 1] = ')';
	nx_error_clear(&sub);
	rc = audit_text(code, (size_t)t->body_len + 2, a->o, a->b, a->fn, a->ctx, a->path, &sub,
			a->depth + 1, a->line0 + t->line - 1, a->col0 + t->col - 1);
	free(code);
	if (rc == NX_EFORMAT)
		return 0;   /* not an expression: it cannot be evaluated either */
	if (rc < 0 && a->err)
		*a->err = sub;
	return rc;
}

static int names(struct audit *a)
{
	size_t i;
	int rc = 0;

	a->chain = NONE;
	for (i = 0; !rc && i < a->n; i++) {
		const struct ctok *t = &a->t[i].t;

		if (t->kind == NX_PY_STRING && (t->flags & NX_PY_STR_F)) {
			nx_py_token full = { .kind = t->kind, .start = t->start, .len = t->len,
					     .line = t->line, .col = t->col, .flags = t->flags,
					     .body = t->body, .body_len = t->body_len };

			a->field_of = i;
			a->field_pos = t->start;
			a->field_line = t->line;
			a->field_line_start = t->start - (size_t)(t->col - 1);
			rc = nx_pylex_fstring_fields(a->buf, t->start + t->len, &full, field, a);
			continue;
		}
		if (t->kind == NX_PY_STRING && annotation(a, i)) {
			rc = annotation_code(a, i);
			continue;
		}
		/* **{"allow_pickle": True}: the keyword spelled as a string */
		if (t->kind == NX_PY_STRING && !(t->flags & NX_PY_STR_F) &&
		    nx_pyaudit__keyword(a->buf + t->body, t->body_len)) {
			rc = report(a, "python-reflective", i, "'%.*s' refused as a string: %s",
				    (int)t->body_len, a->buf + t->body,
				    nx_pyaudit__keyword(a->buf + t->body, t->body_len));
			continue;
		}
		if (t->kind != NX_PY_NAME || a->skip[i])
			continue;
		if (name_is(a, i, "attrgetter") || name_is(a, i, "methodcaller")) {
			rc = getter_call(a, i, name_is(a, i, "attrgetter"));
			if (rc)
				break;
		}
		if (i && is_op(a, i - 1, ".")) {
			enum root root = R_UNKNOWN;
			bool cont = i > 1 && a->chain == i - 2;

			if (cont)
				root = a->root;
			else if (i > 1 && is_op(a, i - 2, ")") && a->match[i - 2] != NONE &&
				 a->match[i - 2] > 0 && name_is(a, a->match[i - 2] - 1, "super"))
				root = R_SELF;
			rc = name_rules(a, i, a->t[i].name, a->t[i].nlen, root, NULL);
			if (rc)
				continue;
			if (!cont) {
				a->ntargets = 0;
				a->bvalid = false;
				a->root = R_UNKNOWN;
			}
			a->chain = i;
			a->on_module = false;
			rc = chain_step(a, i, a->t[i].name, a->t[i].nlen);
			if (!rc)
				rc = bundle_step(a, i, a->t[i].name, a->t[i].nlen);
			/* an object the audit does not follow (A.torch, self.torch,
			 * f().torch): an attribute named like an imported module is
			 * judged as that module */
			if (!rc && a->root != R_MODULE)
				rebind(a, i);
			if (!rc && !is_op(a, i + 1, ".") && !a->skip[i])
				rc = chain_end(a, i);
			continue;
		}
		chain_start(a, i);
		rc = bare_name(a, i);
	}
	return rc;
}

/* depth: 0 a file, > 0 an f-string field, -1 a file's imports only */
static int audit_text(const char *buf, size_t len, const struct nx_pyaudit_opts *o,
		      struct bindings *b, nx_pyaudit_fn fn, void *ctx, const char *path,
		      nx_error *err, int depth, long line0, long col0)
{
	struct audit a = { .buf = buf, .o = o, .b = b, .fn = fn, .ctx = ctx, .path = path,
			   .err = err, .depth = depth, .line0 = line0, .col0 = col0 };
	size_t i;
	int rc;

	rc = lex(&a, len);
	if (!rc)
		rc = pair(&a);
	if (!rc && depth <= 0) {
		rc = imports(&a);
		if (!rc)
			rc = seal_bindings(&a);
	}
	if (!rc && depth >= 0)
		rc = names(&a);
	for (i = 0; i < a.n; i++)
		if (a.t[i].owned)
			free((void *)a.t[i].name);
	free(a.t);
	free(a.match);
	free(a.next);
	free(a.skip);
	free(a.param);
	return rc;
}

static int cmp_export(const void *x, const void *y)
{
	return strcmp((*(const struct nx_pyaudit_export *const *)x)->name,
		      (*(const struct nx_pyaudit_export *const *)y)->name);
}

static int cmp_export_bound(const void *x, const void *y)
{
	return strcmp(bound_name(*(const struct nx_pyaudit_export *const *)x),
		      bound_name(*(const struct nx_pyaudit_export *const *)y));
}

static void bindings_release(struct bindings *b)
{
	size_t i;

	for (i = 0; i < b->n; i++) {
		free(b->v[i].target);
		if (b->v[i].own)
			free((void *)b->v[i].name);
	}
	free(b->v);
	free(b->ex);
	free(b->exb);
}

int nx_pyaudit_run(const char *src, size_t len, const struct nx_pyaudit_opts *o,
		   nx_pyaudit_fn fn, void *ctx, const char *path, nx_error *err)
{
	static const struct nx_pyaudit_opts none = { 0 };
	struct bindings b = { 0 };
	size_t i;
	int rc;

	if (!o)
		o = &none;
	if (len > NX_PYAUDIT_SRC_MAX)
		return nx_error_set(err, NX_ELIMIT, path, 0, -1, "%s: python file larger than %u "
				    "bytes; it cannot be audited", path ? path : "<source>",
				    NX_PYAUDIT_SRC_MAX);
	if (o->nexports) {
		b.ex = malloc(o->nexports * sizeof(*b.ex));
		b.exb = malloc(o->nexports * sizeof(*b.exb));
		if (!b.ex || !b.exb) {
			bindings_release(&b);
			return nx_error_set(err, NX_ENOMEM, path, 0, -1, "out of memory");
		}
		for (i = 0; i < o->nexports; i++)
			b.ex[i] = b.exb[i] = &o->exports[i];
		qsort(b.ex, o->nexports, sizeof(*b.ex), cmp_export);
		qsort(b.exb, o->nexports, sizeof(*b.exb), cmp_export_bound);
		b.nex = o->nexports;
	}
	rc = audit_text(src, len, o, &b, fn, ctx, path, err, 0, 1, 1);
	bindings_release(&b);
	return rc;
}

static int silent(void *ctx, const char *code, long line, long col, const char *message)
{
	return 0;
}

int nx_pyaudit_exports(struct nx_pyaudit_export **v, size_t *n, const char *stem,
		       const char *src, size_t len, const struct nx_pyaudit_opts *o,
		       nx_error *err)
{
	static const struct nx_pyaudit_opts none = { 0 };
	struct bindings b = { 0 };
	struct nx_pyaudit_export *p;
	size_t i;
	int rc = 0;

	if (len > NX_PYAUDIT_SRC_MAX ||
	    audit_text(src, len, o ? o : &none, &b, silent, NULL, NULL, NULL, -1, 1, 1) != 0)
		goto out;   /* the file's own audit reports why */
	if (!b.n)
		goto out;
	if (!(p = realloc(*v, (*n + b.n) * sizeof(*p)))) {
		rc = nx_error_set(err, NX_ENOMEM, NULL, 0, -1, "out of memory");
		goto out;
	}
	*v = p;
	for (i = 0; i < b.n; i++) {
		struct nx_pyaudit_export *e = &p[*n];
		size_t k = strlen(stem) + b.v[i].nlen + 2;

		e->name = malloc(k);
		e->target = strdup(b.v[i].target);
		if (!e->name || !e->target) {
			free(e->name);
			free(e->target);
			rc = nx_error_set(err, NX_ENOMEM, NULL, 0, -1, "out of memory");
			goto out;
		}
		snprintf(e->name, k, "%s.%.*s", stem, (int)b.v[i].nlen, b.v[i].name);
		e->bundle = b.v[i].origin == O_BUNDLE;
		e->module = b.v[i].module;
		(*n)++;
	}
out:
	bindings_release(&b);
	return rc;
}

void nx_pyaudit_exports_free(struct nx_pyaudit_export *v, size_t n)
{
	size_t i;

	for (i = 0; v && i < n; i++) {
		free(v[i].name);
		free(v[i].target);
	}
	free(v);
}
