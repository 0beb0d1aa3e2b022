/*
 * manifest_io.c - reading manifests strictly and writing them atomically.
 * Validation goes key by key so a message names exactly what is wrong; the
 * final byte comparison with the canonical re-serialization rejects
 * everything else (spacing, key order, escapes, "1e3" for 1000, ...).
 */
#include "nexus/manifest.h"
#include "nexus/fs.h"
#include "nexus/hash.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/rand.h>

static const char *const ROOT_KEYS[] = { "schema_version", "bundle_id", "build_timestamp",
	"model_metadata", "invariants", "files", "signature", NULL };
static const char *const ROOT_KEYS_1_1[] = { "schema_version", "bundle_id", "build_timestamp",
	"model_metadata", "invariants", "files", "signature", "policy", "runtime", NULL };
static const char *const ROOT_KEYS_1_3[] = { "schema_version", "bundle_id", "build_timestamp",
	"model_metadata", "invariants", "files", "signature", "policy", "runtime", "platform", NULL };
static const char *const PLATFORM_KEYS[] = { "arch", "min_glibc", "os", NULL };
static const char *const POLICY_KEYS[] = { "allow_shared_tensors", "forbidden_imports",
	"forbidden_terms", "max_leak_bytes", "max_model_bytes", "nexus_version", "python_packages",
	"selftest_tolerance", "size_slack", "teacher_files", NULL };
/* the same with the optional key of a build given a --vocab-reference */
static const char *const POLICY_KEYS_REF[] = { "allow_shared_tensors", "forbidden_imports",
	"forbidden_terms", "max_leak_bytes", "max_model_bytes", "nexus_version", "python_packages",
	"selftest_tolerance", "size_slack", "teacher_files", "vocab_reference_sha256", NULL };
static const char *const SHARED_KEYS[] = { "name", "reason", NULL };
static const char *const RUNTIME_KEYS[] = { "files", "version", NULL };
static const char *const RUNTIME_FILE_KEYS[] = { "path", "sha256", NULL };
static const char *const META_KEYS[] = { "architecture", "parameters", "format",
	"quantization", NULL };
static const char *const INV_KEYS[] = { "teacher_free", "training_code_excluded", NULL };
static const char *const FILE_KEYS[] = { "path", "sha256", "size_bytes", NULL };
static const char *const FILE_KEYS_1_2[] = { "mode", "path", "sha256", "size_bytes", NULL };

/* Every key of obj is in keys[] and every key of keys[] is in obj. */
static int exact_keys(const json_t *obj, const char *const *keys, const char *where,
		      const char *path, nx_error *err)
{
	const char *k;
	json_t *v;
	size_t i;

	if (!json_is_object(obj))
		return nx_error_set(err, NX_EFORMAT, path, 0, -1,
				    "%s: %s must be an object", path, where);
	json_object_foreach((json_t *)obj, k, v) {
		for (i = 0; keys[i] && strcmp(keys[i], k) != 0; i++)
			;
		if (!keys[i])
			return nx_error_set(err, NX_EFORMAT, path, 0, -1,
					    "%s: unknown key \"%s\" in %s", path, k, where);
	}
	for (i = 0; keys[i]; i++)
		if (!json_object_get(obj, keys[i]))
			return nx_error_set(err, NX_EFORMAT, path, 0, -1,
					    "%s: missing key \"%s\" in %s", path, keys[i], where);
	return 0;
}

/* v a string without control characters, copied into *out; key names it. */
static int copy_string(char **out, const json_t *v, const char *key, const char *path,
		       nx_error *err)
{
	const char *s;
	size_t n, i;
	char *copy;

	if (!json_is_string(v))
		return nx_error_set(err, NX_EFORMAT, path, 0, -1,
				    "%s: \"%s\" must be a string", path, key);
	s = json_string_value(v);
	n = json_string_length(v);
	if (n > NX_MANIFEST_STRING_MAX)
		return nx_error_set(err, NX_ELIMIT, path, 0, -1,
				    "%s: \"%s\" is longer than %d bytes", path, key,
				    NX_MANIFEST_STRING_MAX);
	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return nx_error_set(err, NX_EFORMAT, path, 0, -1,
					    "%s: \"%s\" contains a control character", path, key);
	if (!(copy = strdup(s)))
		return nx_error_oom(err, path);
	free(*out);
	*out = copy;
	return 0;
}

static int get_string(char **out, const json_t *obj, const char *key, const char *path,
		      nx_error *err)
{
	return copy_string(out, json_object_get(obj, key), key, path, err);
}

static int get_bool(bool *out, const json_t *obj, const char *key, const char *path,
		    nx_error *err)
{
	const json_t *v = json_object_get(obj, key);

	if (!json_is_boolean(v))
		return nx_error_set(err, NX_EFORMAT, path, 0, -1,
				    "%s: \"%s\" must be true or false", path, key);
	*out = json_is_true(v);
	return 0;
}

/* YYYY-MM-DDTHH:MM:SSZ with plausible field ranges. */
static int timestamp_ok(const char *s)
{
	static const char pat[] = "dddd-dd-ddTdd:dd:ddZ";
	int mo, d, h, mi, se;
	size_t i;

	if (strlen(s) != sizeof(pat) - 1)
		return 0;
	for (i = 0; pat[i]; i++)
		if (pat[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != pat[i])
			return 0;
	mo = (s[5] - '0') * 10 + s[6] - '0';
	d = (s[8] - '0') * 10 + s[9] - '0';
	h = (s[11] - '0') * 10 + s[12] - '0';
	mi = (s[14] - '0') * 10 + s[15] - '0';
	se = (s[17] - '0') * 10 + s[18] - '0';
	return mo >= 1 && mo <= 12 && d >= 1 && d <= 31 && h <= 23 && mi <= 59 && se <= 60;
}

static int get_uint(uint64_t *out, const json_t *obj, const char *key, const char *path,
		    nx_error *err)
{
	const json_t *v = json_object_get(obj, key);

	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return nx_error_set(err, NX_EFORMAT, path, 0, -1,
				    "%s: policy \"%s\" must be a non-negative integer", path, key);
	*out = (uint64_t)json_integer_value(v);
	return 0;
}

/* A decimal string ("0.05") within [0, max]; its spelling is then held to
 * the canonical "%.9g" by the final comparison. */
static int get_decimal(double *out, const json_t *obj, const char *key, double max,
		       const char *path, nx_error *err)
{
	const json_t *v = json_object_get(obj, key);
	const char *s = json_string_value(v);
	char *end = NULL;
	double d;

	if (s && *s >= '0' && *s <= '9') {
		d = strtod(s, &end);
		if (end && !*end && d >= 0 && d <= max) {
			*out = d;
			return 0;
		}
	}
	return nx_error_set(err, NX_EFORMAT, path, 0, -1,
			    "%s: policy \"%s\" must be a decimal string between 0 and %g",
			    path, key, max);
}

/* An array of at most NX_MANIFEST_LIST_MAX strings. */
static int get_strv(char ***out, size_t *n, const json_t *obj, const char *key,
		    const char *path, nx_error *err)
{
	const json_t *a = json_object_get(obj, key);
	size_t i;
	int rc = 0;

	if (!json_is_array(a) || json_array_size(a) > NX_MANIFEST_LIST_MAX)
		return nx_error_set(err, NX_EFORMAT, path, 0, -1,
				    "%s: policy \"%s\" must be an array of at most %d strings",
				    path, key, NX_MANIFEST_LIST_MAX);
	if (!(*out = calloc(json_array_size(a) + 1, sizeof(**out))))
		return nx_error_oom(err, path);
	for (i = 0; !rc && i < json_array_size(a); i++) {
		rc = copy_string(&(*out)[i], json_array_get(a, i), key, path, err);
		*n = i + !rc;
	}
	return rc;
}

static int parse_shared(nx_manifest_policy *p, const json_t *a, const char *path, nx_error *err)
{
	size_t i;
	int rc = 0;

	if (!json_is_array(a) || json_array_size(a) > NX_MANIFEST_LIST_MAX)
		return nx_error_set(err, NX_EFORMAT, path, 0, -1,
				    "%s: policy \"allow_shared_tensors\" must be an array of at most "
				    "%d {name, reason}", path, NX_MANIFEST_LIST_MAX);
	if (!(p->allow_shared = calloc(json_array_size(a) + 1, sizeof(*p->allow_shared))))
		return nx_error_oom(err, path);
	for (i = 0; !rc && i < json_array_size(a); i++) {
		const json_t *e = json_array_get(a, i);

		p->nallow_shared = i + 1;
		if (!(rc = exact_keys(e, SHARED_KEYS, "policy.allow_shared_tensors[]", path, err)) &&
		    !(rc = get_string(&p->allow_shared[i].name, e, "name", path, err)))
			rc = get_string(&p->allow_shared[i].reason, e, "reason", path, err);
	}
	return rc;
}

static int parse_policy(nx_manifest *m, const json_t *obj, const char *path, nx_error *err)
{
	nx_manifest_policy *p;
	int rc;

	bool ref = json_is_object(obj) && json_object_get(obj, "vocab_reference_sha256");
	unsigned char digest[NX_SHA256_LEN];

	if ((rc = exact_keys(obj, ref ? POLICY_KEYS_REF : POLICY_KEYS, "policy", path, err)))
		return rc;
	if (!(p = m->policy = calloc(1, sizeof(*p))))
		return nx_error_oom(err, path);
	if (ref && ((rc = get_string(&p->vocab_reference_sha256, obj, "vocab_reference_sha256",
				     path, err)) ||
		    nx_unhex(digest, p->vocab_reference_sha256)))
		return rc ? rc : nx_error_set(err, NX_EFORMAT, path, 0, -1, "%s: policy "
					      "\"vocab_reference_sha256\" must be 64 hex digits",
					      path);
	if ((rc = get_string(&p->nexus_version, obj, "nexus_version", path, err)) ||
	    (rc = get_uint(&p->max_model_bytes, obj, "max_model_bytes", path, err)) ||
	    (rc = get_uint(&p->max_leak_bytes, obj, "max_leak_bytes", path, err)) ||
	    (rc = get_uint(&p->teacher_files, obj, "teacher_files", path, err)) ||
	    (rc = get_decimal(&p->size_slack, obj, "size_slack", 1.0, path, err)) ||
	    (rc = get_decimal(&p->selftest_tolerance, obj, "selftest_tolerance", 0.01, path, err)) ||
	    (rc = get_strv(&p->forbidden_terms, &p->nforbidden_terms, obj, "forbidden_terms",
			   path, err)) ||
	    (rc = get_strv(&p->forbidden_imports, &p->nforbidden_imports, obj, "forbidden_imports",
			   path, err)) ||
	    (rc = get_strv(&p->python_packages, &p->npython_packages, obj, "python_packages",
			   path, err)))
		return rc;
	if (p->max_model_bytes == 0 || p->max_leak_bytes == 0)
		return nx_error_set(err, NX_EFORMAT, path, 0, -1,
				    "%s: policy \"%s\" must be at least 1", path,
				    p->max_model_bytes ? "max_leak_bytes" : "max_model_bytes");
	return parse_shared(p, json_object_get(obj, "allow_shared_tensors"), path, err);
}

/*
 * "runtime": every entry is a bin/ or lib/ file of files[] with the same
 * digest, and every such file of files[] is an entry, so the record can
 * never disagree with what integrity checks.
 */
static int parse_runtime(nx_manifest *m, const json_t *obj, const char *path, nx_error *err)
{
	const json_t *a = json_object_get(obj, "files");
	nx_manifest_runtime *r;
	size_t i, nrt = 0;
	int rc;

	if ((rc = exact_keys(obj, RUNTIME_KEYS, "runtime", path, err)))
		return rc;
	if (!(r = m->runtime = calloc(1, sizeof(*r))))
		return nx_error_oom(err, path);
	if ((rc = get_string(&r->version, obj, "version", path, err)))
		return rc;
	if (!json_is_array(a) || json_array_size(a) > NX_MANIFEST_RUNTIME_FILES_MAX)
		return nx_error_set(err, NX_EFORMAT, path, 0, -1,
				    "%s: runtime \"files\" must be an array of at most %d entries",
				    path, NX_MANIFEST_RUNTIME_FILES_MAX);
	if (!(r->files = calloc(json_array_size(a) + 1, sizeof(*r->files))))
		return nx_error_oom(err, path);
	for (i = 0; i < json_array_size(a); i++) {
		const json_t *e = json_array_get(a, i);
		struct nx_manifest_runtime_file *f = &r->files[i];
		const struct nx_manifest_file *mf;

		if ((rc = exact_keys(e, RUNTIME_FILE_KEYS, "runtime.files[]", path, err)) ||
		    (rc = get_string(&f->path, e, "path", path, err)))
			return rc;
		r->nfiles = i + 1;
		if (!json_is_string(json_object_get(e, "sha256")) ||
		    nx_unhex(f->sha256, json_string_value(json_object_get(e, "sha256"))))
			return nx_error_set(err, NX_EFORMAT, path, 0, -1,
					    "%s: runtime sha256 of %s must be 64 lower-case hex digits",
					    path, f->path);
		if (i > 0 && strcmp(r->files[i - 1].path, f->path) >= 0)
			return nx_error_set(err, NX_EFORMAT, path, 0, -1,
					    "%s: runtime files are not sorted by path or repeat one "
					    "(%s after %s)", path, f->path, r->files[i - 1].path);
		mf = nx_manifest_find(m, f->path);
		if (!nx_manifest_is_runtime_path(f->path) || !mf ||
		    memcmp(mf->sha256, f->sha256, NX_SHA256_LEN))
			return nx_error_set(err, NX_EFORMAT, path, 0, -1,
					    "%s: runtime file %s is not a runtime file (bin/, lib/, " NX_BUNDLE_NOTICES ") listed in "
					    "files with the same sha256", path, f->path);
	}
	for (i = 0; i < m->nfiles; i++)
		nrt += nx_manifest_is_runtime_path(m->files[i].path);
	if (nrt != r->nfiles)
		return nx_error_set(err, NX_EFORMAT, path, 0, -1,
				    "%s: runtime lists %zu files but files has %zu runtime files (bin/, lib/, " NX_BUNDLE_NOTICES ")",
				    path, r->nfiles, nrt);
	return 0;
}

static int cmp_fold(const void *a, const void *b)
{
	return strcasecmp(*(char *const *)a, *(char *const *)b);
}

/* files[].mode of schema 1.2: "0444" or "0555", nothing else (docs/FORMAT.md §1.1). */
static int get_mode(struct nx_manifest_file *f, const json_t *e, const char *path, nx_error *err)
{
	const char *s = json_string_value(json_object_get(e, "mode"));

	if (s && !strcmp(s, "0444"))
		f->mode = 0444;
	else if (s && !strcmp(s, "0555"))
		f->mode = 0555;
	else
		return nx_error_set(err, NX_EFORMAT, path, 0, -1,
				    "%s: mode of %s must be \"0444\" or \"0555\"", path, f->path);
	return 0;
}

static int parse_files(nx_manifest *m, const json_t *arr, bool v12, const char *path,
		       nx_error *err)
{
	char **sorted = NULL;
	size_t i, n;
	int rc = 0;

	if (!json_is_array(arr))
		return nx_error_set(err, NX_EFORMAT, path, 0, -1, "%s: \"files\" must be an array",
				    path);
	n = json_array_size(arr);
	if (n > NX_MANIFEST_FILES_MAX)
		return nx_error_set(err, NX_ELIMIT, path, 0, -1, "%s: more than %d files listed",
				    path, NX_MANIFEST_FILES_MAX);
	if (n && !(m->files = calloc(n, sizeof(*m->files))))
		return nx_error_oom(err, path);
	for (i = 0; i < n; i++) {
		const json_t *e = json_array_get(arr, i), *size;
		struct nx_manifest_file *f = &m->files[i];
		char where[48];

		snprintf(where, sizeof(where), "files[%zu]", i);
		if ((rc = exact_keys(e, v12 ? FILE_KEYS_1_2 : FILE_KEYS, where, path, err)))
			return rc;
		if ((rc = get_string(&f->path, e, "path", path, err)))
			return rc;
		m->nfiles = i + 1;   /* from here f->path is freed with m */
		if (v12 && (rc = get_mode(f, e, path, err)))
			return rc;
		if ((rc = nx_manifest_path_check(f->path, err)))
			return rc;
		if (strcasecmp(f->path, NX_MANIFEST_NAME) == 0)
			return nx_error_set(err, NX_EUNSAFE, path, 0, -1,
					    "%s: the manifest lists itself", path);
		if (!json_is_string(json_object_get(e, "sha256")) ||
		    nx_unhex(f->sha256, json_string_value(json_object_get(e, "sha256"))))
			return nx_error_set(err, NX_EFORMAT, path, 0, -1,
					    "%s: sha256 of %s must be 64 lower-case hex digits",
					    path, f->path);
		size = json_object_get(e, "size_bytes");
		if (!json_is_integer(size) || json_integer_value(size) < 0)
			return nx_error_set(err, NX_EFORMAT, path, 0, -1,
					    "%s: size_bytes of %s must be a non-negative integer",
					    path, f->path);
		f->size = (uint64_t)json_integer_value(size);
		if (i > 0 && strcmp(m->files[i - 1].path, f->path) >= 0)
			return nx_error_set(err, NX_EFORMAT, path, 0, -1,
					    "%s: files are not sorted by path or repeat one "
					    "(%s after %s)", path, f->path, m->files[i - 1].path);
	}
	/* Paths that differ only in case would collide on case-insensitive filesystems. */
	if (n > 1) {
		if (!(sorted = malloc(n * sizeof(*sorted))))
			return nx_error_oom(err, path);
		for (i = 0; i < n; i++)
			sorted[i] = m->files[i].path;
		qsort(sorted, n, sizeof(*sorted), cmp_fold);
		for (i = 1; i < n && !rc; i++)
			if (strcasecmp(sorted[i - 1], sorted[i]) == 0)
				rc = nx_error_set(err, NX_EFORMAT, path, 0, -1,
						  "%s: %s and %s differ only in case", path,
						  sorted[i - 1], sorted[i]);
		free(sorted);
	}
	return rc;
}

/* "platform" of schema 1.3 (nx_manifest_platform_check's rules). */
static int parse_platform(nx_manifest *m, const json_t *obj, const char *path, nx_error *err)
{
	nx_manifest_platform *p;
	int rc;

	if ((rc = exact_keys(obj, PLATFORM_KEYS, "platform", path, err)))
		return rc;
	if (!(p = m->platform = calloc(1, sizeof(*p))))
		return nx_error_oom(err, path);
	if ((rc = get_string(&p->os, obj, "os", path, err)) ||
	    (rc = get_string(&p->arch, obj, "arch", path, err)) ||
	    (rc = get_string(&p->min_glibc, obj, "min_glibc", path, err)))
		return rc;
	return nx_manifest_platform_check(p, path, err);
}

static int from_json(nx_manifest *m, const json_t *root, const char *path, nx_error *err)
{
	const json_t *meta, *inv;
	const char *schema = json_string_value(json_object_get(root, "schema_version"));
	bool v13 = schema && !strcmp(schema, NX_MANIFEST_SCHEMA_1_3);
	bool v12 = v13 || (schema && !strcmp(schema, NX_MANIFEST_SCHEMA_1_2));
	bool v11 = v12 || (schema && !strcmp(schema, NX_MANIFEST_SCHEMA_1_1));
	int rc;

	/* A newer schema is named as such, not as its first unknown key. */
	if (schema && !v11 && strcmp(schema, NX_MANIFEST_SCHEMA) != 0)
		return nx_error_set(err, NX_EFORMAT, path, 0, -1,
				    "%s: schema_version \"%.64s\" is not supported (expected \"%s\", "
				    "\"%s\", \"%s\" or \"%s\"); use a newer nexus", path, schema,
				    NX_MANIFEST_SCHEMA, NX_MANIFEST_SCHEMA_1_1, NX_MANIFEST_SCHEMA_1_2,
				    NX_MANIFEST_SCHEMA_1_3);
	if ((rc = exact_keys(root, v13 ? ROOT_KEYS_1_3 : v11 ? ROOT_KEYS_1_1 : ROOT_KEYS,
			     "the manifest", path, err)))
		return rc;
	meta = json_object_get(root, "model_metadata");
	inv = json_object_get(root, "invariants");
	if ((rc = exact_keys(meta, META_KEYS, "model_metadata", path, err)) ||
	    (rc = exact_keys(inv, INV_KEYS, "invariants", path, err)) ||
	    (rc = get_string(&m->schema_version, root, "schema_version", path, err)) ||
	    (rc = get_string(&m->bundle_id, root, "bundle_id", path, err)) ||
	    (rc = get_string(&m->build_timestamp, root, "build_timestamp", path, err)) ||
	    (rc = get_string(&m->signature, root, "signature", path, err)) ||
	    (rc = get_string(&m->architecture, meta, "architecture", path, err)) ||
	    (rc = get_string(&m->parameters, meta, "parameters", path, err)) ||
	    (rc = get_string(&m->format, meta, "format", path, err)) ||
	    (rc = get_string(&m->quantization, meta, "quantization", path, err)) ||
	    (rc = get_bool(&m->teacher_free, inv, "teacher_free", path, err)) ||
	    (rc = get_bool(&m->training_code_excluded, inv, "training_code_excluded", path, err)))
		return rc;
	if (strchr(m->bundle_id, '/') || nx_manifest_path_check(m->bundle_id, NULL))
		return nx_error_set(err, NX_EFORMAT, path, 0, -1,
				    "%s: bundle_id \"%s\" must be one name of [A-Za-z0-9._-]",
				    path, m->bundle_id);
	if (!timestamp_ok(m->build_timestamp))
		return nx_error_set(err, NX_EFORMAT, path, 0, -1,
				    "%s: build_timestamp \"%s\" is not of the form "
				    "YYYY-MM-DDTHH:MM:SSZ", path, m->build_timestamp);
	if ((rc = parse_files(m, json_object_get(root, "files"), v12, path, err)) || !v11)
		return rc;
	if ((rc = parse_policy(m, json_object_get(root, "policy"), path, err)) ||
	    (rc = parse_runtime(m, json_object_get(root, "runtime"), path, err)) || !v13)
		return rc;
	return parse_platform(m, json_object_get(root, "platform"), path, err);
}

int nx_manifest_set_modes(nx_manifest *m, int dirfd, nx_error *err)
{
	struct stat st;
	size_t i;

	for (i = 0; i < m->nfiles; i++) {
		if (fstatat(dirfd, m->files[i].path, &st, AT_SYMLINK_NOFOLLOW) != 0)
			return nx_error_errno(err, NX_EIO, errno, m->files[i].path,
					      "cannot read the mode of %s", m->files[i].path);
		m->files[i].mode = (st.st_mode & S_IXUSR) ? 0555 : 0444;
	}
	return nx_manifest_set(m, &m->schema_version, NX_MANIFEST_SCHEMA_1_2, err);
}

/* Where two buffers first differ, for the "not canonical" message. */
static void first_difference(const char *a, size_t alen, const char *b, size_t blen,
			     long *line, long long *off)
{
	size_t i;

	*line = 1;
	for (i = 0; i < alen && i < blen && a[i] == b[i]; i++)
		if (a[i] == '\n')
			(*line)++;
	*off = (long long)i;
}

int nx_manifest_parse(nx_manifest **out, const char *buf, size_t len, const char *path,
		      nx_error *err)
{
	nx_manifest *m = NULL;
	json_t *root = NULL;
	json_error_t jerr;
	char *canon = NULL;
	size_t clen;
	int rc;

	if (!path)
		path = NX_MANIFEST_NAME;
	if (len > NX_MANIFEST_MAX)
		return nx_error_set(err, NX_ELIMIT, path, 0, -1,
				    "%s is larger than %u bytes", path, NX_MANIFEST_MAX);
	root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		return nx_error_set(err, NX_EFORMAT, path, jerr.line, jerr.position,
				    "%s:%d: %s", path, jerr.line, jerr.text);
	if ((rc = nx_manifest_new(&m, err)))
		goto out;
	if ((rc = from_json(m, root, path, err)))
		goto out;
	if ((rc = nx_manifest_serialize(&canon, &clen, m, err)))
		goto out;
	if (clen != len || memcmp(canon, buf, len) != 0) {
		long line;
		long long off;

		first_difference(buf, len, canon, clen, &line, &off);
		rc = nx_error_set(err, NX_EFORMAT, path, line, off,
				  "%s:%ld: not in canonical form (see docs/FORMAT.md); "
				  "rewrite it with nexus, do not edit it by hand", path, line);
		goto out;
	}
	*out = m;
	m = NULL;
out:
	free(canon);
	json_decref(root);
	nx_manifest_free(m);
	return rc;
}

int nx_manifest_load(nx_manifest **out, int dirfd, const char *name, nx_error *err)
{
	struct stat st;
	char *buf = NULL;
	size_t got = 0;
	ssize_t n;
	int fd, rc;

	if (!name)
		name = NX_MANIFEST_NAME;
	fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0)
		return nx_error_errno(err, errno == ELOOP ? NX_EUNSAFE : NX_EIO, errno, name,
				      "cannot open %s", name);
	if (fstat(fd, &st) != 0) {
		rc = nx_error_errno(err, NX_EIO, errno, name, "cannot stat %s", name);
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = nx_error_set(err, NX_EUNSAFE, name, 0, -1, "%s is not a regular file", name);
		goto out;
	}
	if ((uint64_t)st.st_size > NX_MANIFEST_MAX) {
		rc = nx_error_set(err, NX_ELIMIT, name, 0, -1, "%s is larger than %u bytes",
				  name, NX_MANIFEST_MAX);
		goto out;
	}
	/* One byte more than fstat said, to notice a file that grew meanwhile. */
	if (!(buf = malloc((size_t)st.st_size + 1))) {
		rc = nx_error_oom(err, name);
		goto out;
	}
	if ((n = nx_pread_full(fd, buf, (size_t)st.st_size + 1, 0)) < 0) {
		rc = nx_error_errno(err, NX_EIO, errno, name, "cannot read %s", name);
		goto out;
	}
	got = (size_t)n;
	if (got > (size_t)st.st_size) {
		rc = nx_error_set(err, NX_EIO, name, 0, -1,
				  "%s changed while being read; try again", name);
		goto out;
	}
	rc = nx_manifest_parse(out, buf, got, name, err);
out:
	free(buf);
	close(fd);
	return rc;
}

int nx_manifest_write_atomic(int dirfd, const nx_manifest *m, nx_error *err)
{
	static const char alnum[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
	char tmp[sizeof(NX_MANIFEST_NAME ".tmp.XXXXXX")];
	char *text = NULL;
	size_t len, put = 0;
	int fd = -1, rc, tries, i;

	if ((rc = nx_manifest_serialize(&text, &len, m, err)))
		return rc;
	for (tries = 0; fd < 0 && tries < 100; tries++) {
		unsigned char rnd[6];

		if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
			rc = nx_error_set(err, NX_EINTERNAL, NULL, 0, -1, "no randomness from openssl");
			goto out;
		}
		memcpy(tmp, NX_MANIFEST_NAME ".tmp.", sizeof(NX_MANIFEST_NAME ".tmp.") - 1);
		for (i = 0; i < 6; i++)
			tmp[sizeof(tmp) - 7 + i] = alnum[rnd[i] % (sizeof(alnum) - 1)];
		tmp[sizeof(tmp) - 1] = '\0';
		fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0444);
		if (fd < 0 && errno != EEXIST) {
			rc = nx_error_errno(err, NX_EIO, errno, NX_MANIFEST_NAME,
					    "cannot create a temporary file next to %s",
					    NX_MANIFEST_NAME);
			goto out;
		}
	}
	if (fd < 0) {
		rc = nx_error_set(err, NX_EIO, NX_MANIFEST_NAME, 0, -1,
				  "cannot find a free temporary name next to %s", NX_MANIFEST_NAME);
		goto out;
	}
	while (put < len) {
		ssize_t n = write(fd, text + put, len - put);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = nx_error_errno(err, NX_EIO, errno, tmp, "cannot write %s", tmp);
			goto out_unlink;
		}
		put += (size_t)n;
	}
	if (fchmod(fd, 0444) != 0 || fsync(fd) != 0) {
		rc = nx_error_errno(err, NX_EIO, errno, tmp, "cannot sync %s", tmp);
		goto out_unlink;
	}
	if (renameat(dirfd, tmp, dirfd, NX_MANIFEST_NAME) != 0) {
		rc = nx_error_errno(err, NX_EIO, errno, NX_MANIFEST_NAME,
				    "cannot replace %s", NX_MANIFEST_NAME);
		goto out_unlink;
	}
	if (fsync(dirfd) != 0) {
		rc = nx_error_errno(err, NX_EIO, errno, NX_MANIFEST_NAME,
				    "cannot sync the directory of %s", NX_MANIFEST_NAME);
		goto out;
	}
	rc = 0;
	goto out;
out_unlink:
	unlinkat(dirfd, tmp, 0);
out:
	if (fd >= 0)
		close(fd);
	free(text);
	return rc;
}
