/*
 * pyaudit_int.h - inside the Python import audit (nexus/pyaudit.h): its
 * lists (pyaudit_lists.c), and the state its two passes share: tokens,
 * import bindings (pyaudit.c) and names (pyaudit_names.c).  Not installed.
 */
#ifndef NEXUS_PYAUDIT_INT_H
#define NEXUS_PYAUDIT_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "nexus/pyaudit.h"
#include "nexus/pylex.h"
#include "util/array_int.h"

/* ---- the lists: each takes a name (not NUL-terminated where a length is
 * given) and returns the static lower-case reason it is refused, or NULL */

/* A dotted module path (or module.attribute) never importable by serving
 * code: import machinery, string execution, code-loading deserialisers,
 * processes and native code.  Matches the entry or anything under it. */
const char *nx_pyaudit__denied(const char *dotted);
/* A training framework (torch, tensorflow...) as a later component of a
 * module path under another top-level package (`onnxruntime.x.torch`);
 * the caller leaves out the bundle's own paths. */
const char *nx_pyaudit__framework_inside(const char *dotted);
/* Does the dotted path hold (is a proper prefix of) a training or denied
 * entry?  `torch.utils` holds torch.utils.data. */
bool nx_pyaudit__holds(const char *dotted);
/* Rewrite dotted path p (cap bytes) past modules' aliases of other
 * modules (os.path -> posixpath, numpy.ma.bench.timeit -> timeit); true
 * when p itself was one.  under: p was reached from a package that is not
 * the standard library's (nx_pyaudit__under_package of where it started),
 * so its attribute names are judged by name too. */
bool nx_pyaudit__canonical(char *p, size_t cap, bool under);
/* The same for p's last component only, p's parent being canonical: a
 * chain rewrites its path as it grows, one step at a time. */
bool nx_pyaudit__canonical_last(char *p, size_t cap, bool under);
/* Does dotted path p start at a package that is not the standard
 * library's? */
bool nx_pyaudit__under_package(const char *p);
/* An attribute name refused on any object (reflection, frames, import
 * machinery, process creation, modules reached as attributes). */
const char *nx_pyaudit__attr(const char *name, size_t n);
/* Why attribute name[0..n) may be a runner (pymodattr.h: numpy's `test`;
 * pyaudit_lists.c runner_attrs: doctest, pdb, timeit...) on an object the
 * audit cannot name (a parameter, self, attrgetter, methodcaller); NULL if
 * no runner is so named. */
const char *nx_pyaudit__runner_name(const char *name, size_t n);
/* Is that runner's name a module's only (trace, pdb), so that an attribute
 * so named and called straight away is no runner? */
bool nx_pyaudit__runner_module(const char *name, size_t n);
/* Does dotted path p name a module (pymodattr.h: numpy.linalg, os.path)?
 * A module is followed only through its attributes, never as a value. */
bool nx_pyaudit__is_module(const char *p);
bool nx_pyaudit__table_knows(const char *dotted);
/* A dunder name serving code may use (data model, metadata). */
bool nx_pyaudit__dunder_ok(const char *name, size_t n);
/* A builtin that imports, executes strings or exposes namespaces. */
const char *nx_pyaudit__builtin(const char *name, size_t n);
/* An attribute of module `module` (dotted, NUL-terminated) refused there:
 * sys beyond its allow-list, os process functions. */
const char *nx_pyaudit__member(const char *module, const char *name, size_t n);
/* A keyword argument that makes a library load code from data
 * (allow_pickle, trust_remote_code) unless given as False. */
const char *nx_pyaudit__keyword(const char *name, size_t n);
/* A function (dotted) with such a keyword's parameter: how many
 * parameters come before it (a call with more positional arguments sets
 * it by position), or -1. */
int nx_pyaudit__keyword_position(const char *dotted);
/* dotted is such a function, or an attribute of one. */
bool nx_pyaudit__keyword_function(const char *dotted);
/* "3.11": the python whose standard library nx_pyaudit_stdlib lists. */
const char *nx_pyaudit__stdlib_version(void);
/* A private attribute name that is public API (namedtuple's _replace...). */
bool nx_pyaudit__private_ok(const char *name, size_t n);


/* ---- the engine ---- */

/* Distinct modules one name may be bound to by imports in a file
 * (try/except fallbacks); each is followed along attribute chains. */
#define TARGETS_MAX 4
#define NONE SIZE_MAX

enum origin { O_NONE, O_STDLIB, O_DECLARED, O_BUNDLE };
enum root { R_UNKNOWN, R_SELF, R_BUNDLE, R_MODULE };
/* PARAM_ANNOT: the ':' of a def's annotated parameter (`x: T`) */
enum { PARAM_DEF = 1, PARAM_CASE = 2, PARAM_ANNOT = 3 };

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

/* The type of nx_pyaudit__text.  Code inside a string (an f-string field,
 * an annotation) is audited by the same function; the names pass reaches
 * it through audit.text, which nx_pyaudit__text sets, so that
 * pyaudit_names.c does not link back to its driver. */
typedef int (*nx_pyaudit_text_fn)(const char *buf, size_t len, const struct nx_pyaudit_opts *o,
				  struct bindings *b, nx_pyaudit_fn fn, void *ctx,
				  const char *path, nx_error *err, int depth, long line0,
				  long col0);

struct audit {
	const char *buf;
	struct ptok *t;
	size_t n;
	size_t *match;         /* bracket -> its partner */
	size_t *next;          /* open bracket or comma -> next comma of its level or close */
	unsigned char *skip;   /* inside an import statement, or getattr's module argument */
	unsigned char *param;  /* PARAM_DEF inside a def's parameter list (PARAM_ANNOT
				* its annotations' ':'), PARAM_CASE inside a case
				* clause's pattern */
	const struct nx_pyaudit_opts *o;
	struct bindings *b;
	nx_pyaudit_fn fn;
	void *ctx;
	const char *path;
	nx_error *err;
	nx_pyaudit_text_fn text; /* nx_pyaudit__text */
	int depth;
	long line0, col0;      /* where this text starts in the file (f-string fields) */
	long last_line;
	enum nx_finding_code last_code;
	/* the attribute chain being followed */
	size_t chain;          /* its last NAME token */
	size_t head;           /* its first token; NONE where unknown */
	bool rebound;          /* a module by an attribute's name only (A.torch) */
	enum root root;
	size_t ntargets;
	char cpath[TARGETS_MAX][NX_PYAUDIT_DOTTED_MAX + 1];
	bool cdead[TARGETS_MAX];
	bool cunder[TARGETS_MAX]; /* started under a package (nx_pyaudit__canonical) */
	bool on_module;        /* the chain stands on an imported module object */
	char bpath[NX_PYAUDIT_DOTTED_MAX + 1];   /* bundle name the chain follows */
	bool bvalid;
	/* f-string fields: line counting carried from one field to the next */
	size_t field_of, field_pos, field_line_start;
	long field_line;
};

/* Audit buf[0..len) (see pyaudit.c); depth 0 a file, > 0 an f-string field
 * or annotation string, -1 a file's imports only. */
int nx_pyaudit__text(const char *buf, size_t len, const struct nx_pyaudit_opts *o,
		     struct bindings *b, nx_pyaudit_fn fn, void *ctx, const char *path,
		     nx_error *err, int depth, long line0, long col0);
/* The pass over names (pyaudit_names.c). */
int nx_pyaudit__names(struct audit *a);
/* Statement rules (pyaudit_bind.c): self/cls bound other than as a def's
 * first parameter, positional class sub-patterns, isinstance hooks. */
int nx_pyaudit__binds(struct audit *a);
/* What attribute s[0..n) of a chain with this root reaches; module is the
 * dotted path it is an attribute of when that is an imported module. */
int nx_pyaudit__name_rules(struct audit *a, size_t i, const char *s, size_t n, enum root root,
			   const char *module);
/* A finding at token i (one of a kind per line), through the caller's fn. */
int nx_pyaudit__report(struct audit *a, enum nx_finding_code code, size_t i, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
int nx_pyaudit__oom(struct audit *a);
/* The bindings of name[0..n): *lo and the count (0 when none). */
size_t nx_pyaudit__lookup(const struct bindings *b, const char *name, size_t n, size_t *lo);
/* Is s[0..n) a module of the bundle's src/? */
bool nx_pyaudit__bundle_module(const struct audit *a, const char *s, size_t n);

static inline bool is_op(const struct audit *a, size_t i, const char *op)
{
	return i < a->n && a->t[i].t.kind == NX_PY_OP && a->t[i].t.len == strlen(op) &&
	       !memcmp(a->buf + a->t[i].t.start, op, a->t[i].t.len);
}

static inline bool is_name(const struct audit *a, size_t i)
{
	return i < a->n && a->t[i].t.kind == NX_PY_NAME;
}

static inline bool name_is(const struct audit *a, size_t i, const char *s)
{
	return is_name(a, i) && a->t[i].nlen == strlen(s) && !memcmp(a->t[i].name, s, a->t[i].nlen);
}

static inline bool is_dunder(const char *s, size_t n)
{
	return n > 4 && s[0] == '_' && s[1] == '_' && s[n - 1] == '_' && s[n - 2] == '_';
}

/* Does a statement start at token i? (`try: import x` and `a; import x` too) */
static inline bool stmt_start(const struct audit *a, size_t i)
{
	return i == 0 || a->t[i - 1].t.kind == NX_PY_NEWLINE || is_op(a, i - 1, ";") ||
	       (is_op(a, i - 1, ":") && a->t[i - 1].t.depth == 0);
}

/* An export's name after its stem ("torch" of "utils.torch"). */
static inline const char *bound_name(const struct nx_pyaudit_export *e)
{
	const char *d = strchr(e->name, '.');

	return d ? d + 1 : e->name;
}

#endif
