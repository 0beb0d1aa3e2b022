/*
 * verify_policy.c - check `policy`: the limits the TRV checks apply.
 *
 * A schema 1.1 manifest records the policy its build enforced (docs/FORMAT.md
 * §1.1).  verify applies that policy, so a bundle built with a 4 MiB limit is
 * held to 4 MiB and one built with 4 GiB is not failed by the 2 GiB default.
 * verify's own options can only tighten it: a looser value is reported and
 * ignored unless --override-policy names the field (a WARN, so the loosening
 * shows in every report).  A policy looser than verify's defaults is only
 * believed when the manifest is signed by a trusted key: anyone can write an
 * unsigned manifest, and a limit it loosens would be no limit.
 */
#include "verify_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nexus/budget.h"
#include "nexus/pyfilter.h"

#define CHECK NX_CHECK_POLICY

/* SPEC §2A.3: always forbidden, also for a bundle that records no policy. */
static const char *const builtin_imports[] = { "teacher_model", "training_modules" };
#define NBUILTIN_IMPORTS (sizeof(builtin_imports) / sizeof(builtin_imports[0]))

static const struct {
	const char *name;
	unsigned bit;
} fields[] = {
	{ "max_model_bytes", NX_POLICY_MAX_MODEL_BYTES },
	{ "size_slack", NX_POLICY_SIZE_SLACK },
	{ "max_leak_bytes", NX_POLICY_MAX_LEAK_BYTES },
	{ "forbidden_terms", NX_POLICY_FORBIDDEN_TERMS },
	{ "forbidden_imports", NX_POLICY_FORBIDDEN_IMPORTS },
	{ "allow_shared_tensors", NX_POLICY_ALLOW_SHARED },
	{ "all", NX_POLICY_ALL },
};

int nx_verify_policy_field(unsigned *out, const char *name, nx_error *err)
{
	size_t i;

	for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		if (!strcmp(fields[i].name, name)) {
			*out |= fields[i].bit;
			return 0;
		}
	return nx_error_set(err, NX_EUSAGE, NULL, 0, -1,
			    "--override-policy: unknown policy field '%s' (one of: %s)", name,
			    NX_POLICY_FIELD_NAMES);
}

static const char *field_name(unsigned bit)
{
	size_t i;

	for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		if (fields[i].bit == bit)
			return fields[i].name;
	return "?";
}

/* One limit where smaller is stricter, as the policy, verify's option and
 * its default give it. */
struct limit {
	unsigned bit;
	bool has_flag;
	long double flag, recorded, def;
	bool whole;             /* printed as an integer, else as "%.9g" */
};

struct shown {
	char v[48];
};

static struct shown show(const struct limit *l, long double v)
{
	struct shown s;

	if (l->whole)
		snprintf(s.v, sizeof(s.v), "%.0Lf", v);
	else
		snprintf(s.v, sizeof(s.v), "%.9Lg", v);
	return s;
}

/* The value of l that the checks apply; findings say where it came from. */
static int apply(struct vfy_ctx *c, const struct limit *l, bool trusted, long double *out)
{
	long double own = l->has_flag ? l->flag : l->def;
	const char *name = field_name(l->bit);

	if (c->opts->override_policy & l->bit) {
		*out = own;
		return nx_report_add(c->r, CHECK, NX_SEV_WARN, NX_F_POLICY_OVERRIDDEN, NX_MANIFEST_NAME, 0,
				     "--override-policy %s: the bundle's policy sets %s, verify "
				     "applies %s", name, show(l, l->recorded).v, show(l, own).v);
	}
	if (l->has_flag && l->flag <= l->recorded) {
		*out = l->flag;
		return 0;
	}
	if (l->has_flag) {
		*out = l->recorded;
		return nx_report_add(c->r, CHECK, NX_SEV_INFO, NX_F_POLICY_KEPT, NX_MANIFEST_NAME, 0,
				     "the bundle's policy sets %s %s, stricter than the option's %s, "
				     "so the policy applies (--override-policy %s to loosen it)", name,
				     show(l, l->recorded).v, show(l, l->flag).v, name);
	}
	if (l->recorded <= l->def || trusted) {
		*out = l->recorded;
		return l->recorded == l->def ? 0 :
		       nx_report_add(c->r, CHECK, NX_SEV_INFO, NX_F_POLICY_DIFFERS, NX_MANIFEST_NAME, 0,
				     "the bundle's policy sets %s %s (verify's default: %s)", name,
				     show(l, l->recorded).v, show(l, l->def).v);
	}
	*out = l->def;
	return nx_report_add(c->r, CHECK, NX_SEV_WARN, NX_F_POLICY_UNTRUSTED, NX_MANIFEST_NAME, 0,
			     "the bundle's policy sets %s %s, looser than verify's default %s, but "
			     "the manifest is not signed by a key given with --pubkey, so the default "
			     "applies", name, show(l, l->recorded).v, show(l, l->def).v);
}

/* Append n strings to the NULL-free array *v of *nv (pointers borrowed). */
static int append(const char ***v, size_t *nv, const char *const *add, size_t n)
{
	size_t i, cap = *nv;

	if (!n)
		return 0;
	if (nx_array_grow(v, &cap, *nv + n, sizeof(**v), *nv + n))
		return NX_ENOMEM;
	for (i = 0; i < n; i++)
		if (add[i] && add[i][0])
			(*v)[(*nv)++] = add[i];
	return 0;
}

/* Does the verifier itself allow student tensor name (--accept-shared)? */
static bool accepted(const struct nx_verify_opts *o, const char *name)
{
	size_t i;

	for (i = 0; i < o->nallow_shared; i++)
		if (o->allow_shared[i] && !strcmp(o->allow_shared[i], name))
			return true;
	return false;
}

/* The policy's lists: each, when overridden, is simply not applied. */
static const unsigned list_fields[] = { NX_POLICY_FORBIDDEN_TERMS, NX_POLICY_FORBIDDEN_IMPORTS,
					NX_POLICY_ALLOW_SHARED };

static int lists(struct vfy_ctx *c, const nx_manifest_policy *p, bool trusted)
{
	unsigned ov = c->opts->override_policy;
	size_t i;
	int rc = 0;

	if ((rc = append(&c->pol.imports, &c->pol.nimports, builtin_imports, NBUILTIN_IMPORTS)) ||
	    (rc = append(&c->pol.allow_shared, &c->pol.nallow_shared, c->opts->allow_shared,
			 c->opts->nallow_shared)))
		return rc;
	if (!p)
		return 0;
	if (p->nforbidden_terms && !(ov & NX_POLICY_FORBIDDEN_TERMS)) {
		if ((rc = append(&c->terms, &c->nterms, (const char *const *)p->forbidden_terms,
				 p->nforbidden_terms)))
			return rc;
		for (i = 0; !rc && i < p->nforbidden_terms; i++)
			rc = nx_report_add(c->r, CHECK, NX_SEV_INFO, NX_F_POLICY_DIFFERS, NX_MANIFEST_NAME, 0,
					   "the bundle's policy also forbids the term '%s'",
					   p->forbidden_terms[i]);
	}
	if (!rc && p->nforbidden_imports && !(ov & NX_POLICY_FORBIDDEN_IMPORTS))
		rc = append(&c->pol.imports, &c->pol.nimports,
			    (const char *const *)p->forbidden_imports, p->nforbidden_imports);
	/*
	 * An allow list only loosens the teacher check: believed when signed,
	 * and then only for the names the verifier accepts itself
	 * (--accept-shared, opts->allow_shared, appended above).  The list is
	 * workspace configuration: an insider who controls the workspace
	 * writes it, and the official build signs it (red team 9).  Only
	 * nexus build's self-check (trust_policy) believes it as written.
	 */
	for (i = 0; !rc && trusted && !(ov & NX_POLICY_ALLOW_SHARED) && i < p->nallow_shared; i++) {
		const char *name = p->allow_shared[i].name;

		if (!c->opts->trust_policy && !accepted(c->opts, name)) {
			if (c->opts->nteachers)
				rc = nx_report_add(c->r, CHECK, NX_SEV_INFO, NX_F_POLICY_DIFFERS,
						   NX_MANIFEST_NAME, 0, "the bundle's policy allows "
						   "student tensor '%s' to equal a teacher tensor (%s), "
						   "but the workspace wrote that: it is checked like any "
						   "other tensor unless you pass --accept-shared %s",
						   name, p->allow_shared[i].reason, name);
			continue;
		}
		rc = append(&c->pol.allow_shared, &c->pol.nallow_shared, &name, 1);
		if (!rc)
			rc = nx_report_add(c->r, CHECK, NX_SEV_INFO, NX_F_POLICY_DIFFERS, NX_MANIFEST_NAME, 0,
					   "the bundle's policy allows student tensor '%s' to equal a "
					   "teacher tensor: %s", name, p->allow_shared[i].reason);
	}
	if (!rc && p->nallow_shared && !trusted && c->opts->nteachers)
		rc = nx_report_add(c->r, CHECK, NX_SEV_WARN, NX_F_POLICY_UNTRUSTED, NX_MANIFEST_NAME, 0,
				   "the bundle's policy allows %zu student tensor(s) to equal teacher "
				   "tensors, but the manifest is not signed by a key given with --pubkey, "
				   "so no tensor is allowed", p->nallow_shared);
	for (i = 0; !rc && i < sizeof(list_fields) / sizeof(list_fields[0]); i++)
		if (ov & list_fields[i])
			rc = nx_report_add(c->r, CHECK, NX_SEV_WARN, NX_F_POLICY_OVERRIDDEN, NX_MANIFEST_NAME,
					   0, "--override-policy %s: the bundle's recorded %s are not "
					   "applied", field_name(list_fields[i]), field_name(list_fields[i]));
	return rc;
}

int nx_vfy__policy(struct vfy_ctx *c, nx_error *err)
{
	const nx_manifest_policy *p = c->m ? c->m->policy : NULL;
	const struct nx_verify_opts *o = c->opts;
	bool trusted = o->trust_policy || c->signature_valid;
	struct limit size = { NX_POLICY_MAX_MODEL_BYTES, o->max_model_bytes > 0,
			      (long double)o->max_model_bytes, 0, (long double)NX_VERIFY_MAX_MODEL_BYTES,
			      true };
	struct limit slack = { NX_POLICY_SIZE_SLACK, o->size_slack >= 0,
			       (long double)o->size_slack, 0, (long double)NX_VERIFY_SIZE_SLACK,
			       false };
	uint64_t leak_flag = o->max_leak_bytes < NX_BUDGET_DEFAULT ? o->max_leak_bytes : 0;
	struct limit leak = { NX_POLICY_MAX_LEAK_BYTES, leak_flag > 0, (long double)leak_flag, 0,
			      (long double)NX_BUDGET_DEFAULT, true };
	long double v;
	int rc;

	(void)err;
	c->pol.max_leak_bytes = leak.has_flag ? leak_flag : NX_BUDGET_DEFAULT;
	c->pol.max_model_bytes = size.has_flag ? o->max_model_bytes : NX_VERIFY_MAX_MODEL_BYTES;
	c->pol.size_slack = slack.has_flag ? o->size_slack : NX_VERIFY_SIZE_SLACK;
	if ((rc = lists(c, p, trusted)))
		return rc;
	if (!p) {
		if (c->m && o->override_policy)
			return nx_report_add(c->r, CHECK, NX_SEV_WARN, NX_F_POLICY_OVERRIDDEN,
					     NX_MANIFEST_NAME, 0, "--override-policy given, but the "
					     "manifest (schema %s) records no policy", c->m->schema_version);
		return c->m ? nx_report_add(c->r, CHECK, NX_SEV_INFO, NX_F_POLICY_MISSING, NX_MANIFEST_NAME,
					    0, "the manifest (schema %s) records no build policy, so "
					    "verify's own limits apply", c->m->schema_version) : 0;
	}
	c->pol.teacher_recorded = p->teacher_files > 0;
	size.recorded = (long double)p->max_model_bytes;
	slack.recorded = (long double)p->size_slack;
	if ((rc = apply(c, &size, trusted, &v)))
		return rc;
	c->pol.max_model_bytes = (uint64_t)v;
	if ((rc = apply(c, &slack, trusted, &v)))
		return rc;
	c->pol.size_slack = (double)v;
	leak.recorded = (long double)p->max_leak_bytes;
	if ((rc = apply(c, &leak, trusted, &v)))
		return rc;
	/* never above the default: the budget can only be lowered */
	c->pol.max_leak_bytes = v < NX_BUDGET_DEFAULT ? (uint64_t)v : NX_BUDGET_DEFAULT;
	if (strcmp(p->nexus_version, NX_VERSION))
		rc = nx_report_add(c->r, CHECK, NX_SEV_INFO, NX_F_POLICY_DIFFERS, NX_MANIFEST_NAME, 0,
				   "the policy was recorded by nexus %s (this is %s)", p->nexus_version,
				   NX_VERSION);
	return rc;
}

void nx_vfy__policy_release(struct vfy_ctx *c)
{
	free(c->pol.imports);
	free(c->pol.allow_shared);
}

int nx_vfy__policy_imports(struct vfy_ctx *c, const char *path, const char *buf, size_t len)
{
	struct nx_pyfilter_result res = {0};
	nx_error e;
	size_t i;
	int rc;

	nx_error_clear(&e);
	rc = nx_pyfilter_run(&res, buf, len, c->pol.imports, c->pol.nimports, path, &e);
	if (rc == NX_ECHECK)   /* a forbidden import whose name the code uses */
		return nx_report_add(c->r, NX_CHECK_CODE, NX_SEV_FAIL, NX_F_FORBIDDEN_IMPORT, path,
				     e.line, "%s", e.message);
	if (rc)   /* unparsable: the term scan reports it */
		return rc == NX_ENOMEM ? rc : 0;
	for (i = 0; !rc && i < res.nremoved; i++)
		rc = nx_report_add(c->r, NX_CHECK_CODE, NX_SEV_FAIL, NX_F_FORBIDDEN_IMPORT, path,
				   res.removed[i].line, "%s imports %s, a forbidden import of the "
				   "bundle's policy; rebuild with nexus build (its filter removes it)",
				   path, res.removed[i].module);
	nx_pyfilter_result_release(&res);
	return rc;
}

int nx_vfy__policy_teacher(struct vfy_ctx *c)
{
	if (c->opts->nteachers || c->pol.teacher_recorded)
		return 0;
	return nx_report_add(c->r, NX_CHECK_WEIGHTS, c->opts->strict ? NX_SEV_FAIL : NX_SEV_WARN,
			     NX_F_NO_TEACHER_FINGERPRINT, NX_MODEL_PATH, 0,
			     "the student was not fingerprinted against any teacher: no --teacher "
			     "was given and the manifest records none checked at build (no teacher: "
			     "in nexus.yaml); pass --teacher PATH, or list the teacher files under "
			     "teacher: and rebuild");
}
