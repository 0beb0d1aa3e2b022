/*
 * pyaudit.c - the static import audit of Python serving code
 * (nexus/pyaudit.h): tokens, import statements, entry points.  Its lists
 * are in pyaudit_lists.c, its pass over names in pyaudit_names.c.
 *
 * One pass collects the import statements (anywhere: a statement is found
 * by its keyword, not by its indentation) and resolves each module; the
 * names they bind are sorted once.  A second pass looks at every name with
 * the tokens around it.  Bracket pairs and argument commas are matched
 * once up front, so no token is looked at more than a constant number of
 * times.
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

/* ---- tokens ---- */

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
		if (a->n == cap && NX_ARRAY_PUSH(a->t, cap, a->n))
			return nx_pyaudit__oom(a);
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


/*
 * Mark the ':' of each annotated parameter of the def whose '(' is token o
 * (PARAM_ANNOT): `x: T`, `*a: T`, `**k: T` at the start of one of its own
 * comma-separated parameters.  Not a lambda's ':' in a default (`g=lambda
 * a, y: type`, whose `y` follows a comma of the def's own level) nor a
 * dict display's: what follows those is a value, not an annotation.
 * Each token of the list is looked at once.
 */
static void annotation_colons(struct audit *a, size_t o)
{
	size_t start, c, k;
	bool lambda = false;   /* inside a lambda's parameters */

	for (start = o + 1, c = a->next[o]; c != NONE; start = c + 1, c = a->next[c]) {
		k = start + (is_op(a, start, "*") || is_op(a, start, "**"));
		if (!lambda && is_name(a, k) && is_op(a, k + 1, ":") && k + 1 < c)
			a->param[k + 1] = PARAM_ANNOT;
		for (k = start; k < c; k++) {
			if (a->match[k] != NONE && a->match[k] > k && a->match[k] < c)
				k = a->match[k];   /* a nested display or call */
			else if (name_is(a, k, "lambda"))
				lambda = true;
			else if (is_op(a, k, ":"))
				lambda = false;
		}
		if (c == a->match[o])
			break;
	}
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
		return nx_pyaudit__oom(a);
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
				a->param[k] = PARAM_DEF;
			annotation_colons(a, i + 2);
			i = a->match[i + 2];
		}
	/* `case P(backward=b):` reads attribute `backward` of the subject:
	 * mark a case clause's pattern (the soft keyword at a statement start,
	 * up to its ':'), so that its keywords are judged as attributes */
	for (i = 0; i + 1 < a->n; i++) {
		size_t k;

		if (!name_is(a, i, "case") || !stmt_start(a, i))
			continue;
		for (k = i + 1; k < a->n && a->t[k].t.kind != NX_PY_NEWLINE &&
		     !(is_op(a, k, ":") && a->t[k].t.depth == a->t[i].t.depth); k++)
			;
		if (k < a->n && is_op(a, k, ":"))
			memset(a->param + i + 1, PARAM_CASE, k - i - 1);
		i = k;
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
	if (NX_ARRAY_PUSH(b->v, b->cap, b->n))
		return nx_pyaudit__oom(a);
	v = &b->v[b->n];
	if (!(v->target = strdup(target)))
		return nx_pyaudit__oom(a);
	v->name = a->t[name_tok].name;
	v->nlen = a->t[name_tok].nlen;
	v->own = a->t[name_tok].owned;
	if (v->own && !(v->name = strndup(v->name, v->nlen))) {
		free(v->target);
		return nx_pyaudit__oom(a);
	}
	v->origin = origin;
	v->module = module;
	v->tok = name_tok;
	b->n++;
	return 0;
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
			rc = nx_pyaudit__report(a, NX_F_IMPORT_UNRESOLVED, b->v[i].tok, "'%.*s' is bound to more than "
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

	char canon[NX_PYAUDIT_DOTTED_MAX + 1];

	*rc = 0;
	*stem = NULL;
	memcpy(first, mod, top);
	first[top] = '\0';
	/* judged as the module it is: an alias (os.path, numpy.x.pickle)
	 * names another */
	if (snprintf(canon, sizeof(canon), "%s", mod) < (int)sizeof(canon) &&
	    (nx_pyaudit_stdlib(first) || declared(a, mod))) {
		nx_pyaudit__canonical(canon, sizeof(canon), nx_pyaudit__under_package(canon));
		if ((why = nx_pyaudit__denied(canon))) {
			*rc = nx_pyaudit__report(a, NX_F_IMPORT_DENIED, i, "import of '%s' (%s) refused: %s",
						 mod, canon, why);
			return O_NONE;
		}
		if ((why = nx_pyaudit_training(canon))) {
			*rc = nx_pyaudit__report(a, NX_F_IMPORT_TRAINING, i, "import of '%s' (%s) refused: "
						 "%s", mod, canon, why);
			return O_NONE;
		}
	}
	if ((why = nx_pyaudit_training(mod))) {
		*rc = nx_pyaudit__report(a, NX_F_IMPORT_TRAINING, i, "import of '%s' refused: %s; a "
			     "training package or submodule is refused even when python_packages declares its "
			     "package", mod, why);
		return O_NONE;
	}
	if ((why = nx_pyaudit__denied(mod))) {
		*rc = nx_pyaudit__report(a, NX_F_IMPORT_DENIED, i, "import of '%s' refused: %s; serving code never "
			     "needs it and the audit cannot see what it would run", mod, why);
		return O_NONE;
	}
	if (!strcmp(first, "src")) {
		if (!dot) {
			*stem = "";
			return O_BUNDLE;
		}
		if (!strchr(dot + 1, '.') && nx_pyaudit__bundle_module(a, dot + 1, strlen(dot + 1))) {
			*stem = dot + 1;
			return O_BUNDLE;
		}
	} else if (nx_pyaudit_stdlib(first)) {
		if (first[0] == '_' && strcmp(first, "__future__")) {
			*rc = nx_pyaudit__report(a, NX_F_IMPORT_DENIED, i, "import of '%s' refused: a private module "
				     "of the standard library's implementation; import its public "
				     "module", mod);
			return O_NONE;
		}
		return O_STDLIB;
	} else if (declared(a, mod)) {
		if ((why = nx_pyaudit__framework_inside(mod))) {
			*rc = nx_pyaudit__report(a, NX_F_IMPORT_DENIED, i, "import of '%s' refused: %s", mod, why);
			return O_NONE;
		}
		return O_DECLARED;
	} else if (!dot && nx_pyaudit__bundle_module(a, mod, top)) {
		*stem = mod;
		return O_BUNDLE;
	}
	*rc = nx_pyaudit__report(a, NX_F_IMPORT_UNRESOLVED, i, "import of '%s' refused: it is not "
		     "in the standard library of python %s, the bundle's src/ or runtime.yaml python_packages "
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
			rc = nx_pyaudit__report(a, NX_F_IMPORT_UNRESOLVED, first, "import statement does not parse "
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
		return nx_pyaudit__report(a, NX_F_IMPORT_UNRESOLVED, stmt, "'from %s%s import *' refused: a star "
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
			rc = nx_pyaudit__report(a, NX_F_IMPORT_TRAINING, nm, "import of '%s' refused: %s", full, why);
		if (org != O_NONE) {
			/* a bundle name: "<stem>.<name>", or a stem, or "__init__.<name>" */
			bool pkg = org == O_BUNDLE && !*prefix;
			int w = pkg && nx_pyaudit__bundle_module(a, a->t[nm].name, a->t[nm].nlen) ?
				snprintf(full, sizeof(full), "%.*s", (int)a->t[nm].nlen, a->t[nm].name) :
				snprintf(full, sizeof(full), "%s%s%.*s", pkg ? "__init__" : prefix,
					 pkg || *prefix ? "." : "", (int)a->t[nm].nlen, a->t[nm].name);

			char canon[NX_PYAUDIT_DOTTED_MAX + 1];
			bool alias = false, under = false;

			/* `from concurrent.futures.process import mp` is multiprocessing,
			 * `from numpy.ma.bench import timeit` is timeit: judged as the
			 * module it is; a declared package's name stays bound as
			 * spelled, so that its chains are judged by name all along */
			if (w >= 0 && (size_t)w < sizeof(full)) {
				memcpy(canon, full, (size_t)w + 1);
				if (org != O_BUNDLE) {
					under = nx_pyaudit__under_package(full);
					alias = nx_pyaudit__canonical(canon, sizeof(canon), under);
				}
			}
			if (w < 0 || (size_t)w >= sizeof(full))
				rc = nx_pyaudit__report(a, NX_F_IMPORT_UNRESOLVED, nm, "imported name over %d bytes",
					    NX_PYAUDIT_DOTTED_MAX);
			else if ((why = nx_pyaudit_training(canon)) || (why = nx_pyaudit_training(full)))
				rc = nx_pyaudit__report(a, NX_F_IMPORT_TRAINING, nm, "import of '%s'%s%s%s "
					    "refused: %s; a training package or submodule is refused even "
					    "when python_packages declares its package", full,
					    alias ? " (" : "", alias ? canon : "", alias ? ")" : "", why);
			else if ((why = nx_pyaudit__denied(canon)) || (why = nx_pyaudit__denied(full)))
				rc = nx_pyaudit__report(a, NX_F_IMPORT_DENIED, nm, "import of '%s'%s%s%s "
					    "refused: %s", full, alias ? " (" : "", alias ? canon : "",
					    alias ? ")" : "", why);
			/* a framework handed out: refused, and still bound, so that
			 * `backend.optim` after it is also import-training */
			else if (org != O_BUNDLE && (why = nx_pyaudit__framework_inside(full)) &&
				 (rc = nx_pyaudit__report(a, NX_F_IMPORT_DENIED, nm, "import of '%s' refused: "
							  "%s", full, why)))
				;
			else if (!(rc = nx_pyaudit__name_rules(a, nm, a->t[nm].name, a->t[nm].nlen,
						   org == O_BUNDLE ? R_BUNDLE : R_MODULE,
						   org == O_BUNDLE ? NULL : prefix)))
				rc = bind(a, as != NONE ? as : nm, under ? full : canon, org,
					  alias || nx_pyaudit__is_module(canon));
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
		rc = nx_pyaudit__report(a, NX_F_IMPORT_UNRESOLVED, i, "import statement does not parse (or names "
			    "a module over %d bytes); it cannot be audited", NX_PYAUDIT_DOTTED_MAX);
		while (j < a->n && a->t[j].t.kind != NX_PY_NEWLINE && !is_op(a, j, ";"))
			j++;
		goto out;
	}
	j++;
	if (level == 1 && (!*mod || (!strchr(mod, '.') &&
				    nx_pyaudit__bundle_module(a, mod, strlen(mod))))) {
		org = O_BUNDLE;
		stem = mod;
	} else if (level) {
		rc = nx_pyaudit__report(a, NX_F_IMPORT_UNRESOLVED, i, "relative import '%.*s%s' refused: the "
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

/* CPython refuses more than 100 levels of indentation */
#define SCOPES_MAX 128

/*
 * Is the statement at token i in a class body (the innermost def or class
 * around it, by indentation, is a class)?  st holds the def and class
 * headers still open, with their columns; a logical line at or left of a
 * header's column closes it.  One look per statement: linear.
 */
static int class_scope(struct audit *a, size_t i, long *st, size_t *ns, bool *in_class)
{
	long col = a->t[i].t.col;

	if (i == 0 || a->t[i - 1].t.kind == NX_PY_NEWLINE)
		while (*ns && labs(st[*ns - 1]) >= col)
			(*ns)--;
	if (name_is(a, i, "class") || (name_is(a, i, "def") && stmt_start(a, i)) ||
	    (name_is(a, i, "async") && name_is(a, i + 1, "def"))) {
		if (*ns == SCOPES_MAX)
			return nx_pyaudit__report(a, NX_F_IMPORT_UNRESOLVED, i, "defs and classes "
				      "nested deeper than %d; the file cannot be audited", SCOPES_MAX);
		/* a class header's column is kept negative */
		st[(*ns)++] = name_is(a, i, "class") ? -col : col;
	}
	*in_class = *ns && st[*ns - 1] < 0;
	return 0;
}

static int imports(struct audit *a)
{
	size_t i = 0, end, ns = 0;
	long st[SCOPES_MAX];
	bool in_class = false;
	int rc = 0;

	while (!rc && i < a->n) {
		if (stmt_start(a, i) && (rc = class_scope(a, i, st, &ns, &in_class)))
			break;
		/* `class A: import numpy.linalg as la` makes the module a class
		 * attribute: getattr(A, "la"), setattr and a case pattern's
		 * keyword (`case object(la=m)`) hand it on as a value the audit
		 * does not follow (review C, stop 21) */
		if (in_class && stmt_start(a, i) && (name_is(a, i, "import") || name_is(a, i, "from")))
			rc = nx_pyaudit__report(a, NX_F_PYTHON_REFLECTIVE, i, "import inside a class body "
				      "refused: it makes the module a class attribute, which getattr, "
				      "setattr or a case pattern hand on as a value the audit does not "
				      "follow; import at module level (or inside a def)");
		if (rc)
			break;
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

/* depth: 0 a file, > 0 an f-string field, -1 a file's imports only */
int nx_pyaudit__text(const char *buf, size_t len, const struct nx_pyaudit_opts *o,
		      struct bindings *b, nx_pyaudit_fn fn, void *ctx, const char *path,
		      nx_error *err, int depth, long line0, long col0)
{
	struct audit a = { .buf = buf, .o = o, .b = b, .fn = fn, .ctx = ctx, .path = path,
			   .err = err, .text = nx_pyaudit__text, .depth = depth, .line0 = line0,
			   .col0 = col0 };
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
		rc = nx_pyaudit__binds(&a);
	if (!rc && depth >= 0)
		rc = nx_pyaudit__names(&a);
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
			return nx_error_oom(err, path);
		}
		for (i = 0; i < o->nexports; i++)
			b.ex[i] = b.exb[i] = &o->exports[i];
		qsort(b.ex, o->nexports, sizeof(*b.ex), cmp_export);
		qsort(b.exb, o->nexports, sizeof(*b.exb), cmp_export_bound);
		b.nex = o->nexports;
	}
	rc = nx_pyaudit__text(src, len, o, &b, fn, ctx, path, err, 0, 1, 1);
	bindings_release(&b);
	return rc;
}

static int silent(void *ctx, enum nx_finding_code code, long line, long col, const char *message)
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
	size_t i, cap;
	int rc = 0;

	if (len > NX_PYAUDIT_SRC_MAX ||
	    nx_pyaudit__text(src, len, o ? o : &none, &b, silent, NULL, NULL, NULL, -1, 1, 1) != 0)
		goto out;   /* the file's own audit reports why */
	if (!b.n)
		goto out;
	cap = *n;
	if (nx_array_grow(v, &cap, *n + b.n, sizeof(**v), *n + b.n)) {
		rc = nx_error_oom(err, NULL);
		goto out;
	}
	p = *v;
	for (i = 0; i < b.n; i++) {
		struct nx_pyaudit_export *e = &p[*n];
		size_t k = strlen(stem) + b.v[i].nlen + 2;

		e->name = malloc(k);
		e->target = strdup(b.v[i].target);
		if (!e->name || !e->target) {
			free(e->name);
			free(e->target);
			rc = nx_error_oom(err, NULL);
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
