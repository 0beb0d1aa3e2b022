/*
 * manifest.c - the manifest's in-memory form, canonical serialization and
 * strict parser.  The parser validates field by field for precise messages,
 * then insists that the input bytes equal the canonical re-serialization,
 * which closes every remaining degree of freedom (spacing, key order,
 * escapes, number spelling) in one comparison.
 */
#include "nexus/manifest.h"
#include "nexus/bundle.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/array_int.h"

#include <jansson.h>

#define DUMP_FLAGS (JSON_INDENT(2) | JSON_SORT_KEYS)

static int oom(nx_error *err, const char *path)
{
	return nx_error_oom(err, path);
}

int nx_manifest_new(nx_manifest **out, nx_error *err)
{
	nx_manifest *m = calloc(1, sizeof(*m));
	size_t i;

	if (!m)
		return oom(err, NULL);
	char **s[] = { &m->schema_version, &m->bundle_id, &m->build_timestamp,
		       &m->architecture, &m->parameters, &m->format,
		       &m->quantization, &m->signature };
	for (i = 0; i < sizeof(s) / sizeof(s[0]); i++) {
		if (!(*s[i] = strdup(i == 0 ? NX_MANIFEST_SCHEMA : ""))) {
			nx_manifest_free(m);
			return oom(err, NULL);
		}
	}
	*out = m;
	return 0;
}

int nx_manifest_set(nx_manifest *m, char **field, const char *value, nx_error *err)
{
	char *copy = strdup(value ? value : "");

	if (!copy)
		return oom(err, NULL);
	free(*field);
	*field = copy;
	return 0;
}

static void strv_free(char **v, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

void nx_manifest_policy_free(nx_manifest_policy *p)
{
	size_t i;

	if (!p)
		return;
	free(p->nexus_version);
	strv_free(p->forbidden_terms, p->nforbidden_terms);
	strv_free(p->forbidden_imports, p->nforbidden_imports);
	strv_free(p->python_packages, p->npython_packages);
	for (i = 0; i < p->nallow_shared; i++) {
		free(p->allow_shared[i].name);
		free(p->allow_shared[i].reason);
	}
	free(p->allow_shared);
	free(p->vocab_reference_sha256);
	free(p);
}

static void runtime_free(nx_manifest_runtime *r)
{
	size_t i;

	if (!r)
		return;
	for (i = 0; i < r->nfiles; i++)
		free(r->files[i].path);
	free(r->files);
	free(r->version);
	free(r);
}

static void platform_free(nx_manifest_platform *p)
{
	if (!p)
		return;
	free(p->os);
	free(p->arch);
	free(p->min_glibc);
	free(p);
}

bool nx_manifest_is_runtime_path(const char *path)
{
	return !strcmp(path, NX_BUNDLE_CLI) || !strcmp(path, NX_BUNDLE_NOTICES) ||
	       (!strncmp(path, "lib/", 4) && path[4] && !strchr(path + 4, '/'));
}

unsigned nx_manifest_file_mode(const struct nx_manifest_file *f)
{
	if (f->mode)
		return f->mode;
	return !strcmp(f->path, NX_BUNDLE_CLI) ? 0555 : 0444;
}

int nx_manifest_set_v11(nx_manifest *m, nx_manifest_policy *policy, const char *runtime_version,
			nx_error *err)
{
	nx_manifest_runtime *rt = calloc(1, sizeof(*rt));
	size_t i, n = 0;
	int rc = 0;

	if (!rt || !(rt->version = strdup(runtime_version)) ||
	    !(rt->files = calloc(m->nfiles + 1, sizeof(*rt->files)))) {
		rc = oom(err, NULL);
		goto out;
	}
	for (i = 0; i < m->nfiles; i++) {
		if (!nx_manifest_is_runtime_path(m->files[i].path))
			continue;
		if (!(rt->files[n].path = strdup(m->files[i].path))) {
			rc = oom(err, NULL);
			goto out;
		}
		memcpy(rt->files[n++].sha256, m->files[i].sha256, NX_SHA256_LEN);
		rt->nfiles = n;
	}
	if ((rc = nx_manifest_set(m, &m->schema_version, NX_MANIFEST_SCHEMA_1_1, err)))
		goto out;
	nx_manifest_policy_free(m->policy);
	runtime_free(m->runtime);
	m->policy = policy;
	m->runtime = rt;
	return 0;
out:
	runtime_free(rt);
	nx_manifest_policy_free(policy);
	return rc;
}

/* "2.34", "2.2.5": two or three dot-separated numbers of 1 to 3 digits. */
static bool glibc_version_ok(const char *s)
{
	size_t parts = 0, digits = 0;

	for (;; s++) {
		if (*s >= '0' && *s <= '9' && digits < 3) {
			digits++;
			continue;
		}
		if (!digits || (*s != '.' && *s != '\0'))
			return false;
		parts++;
		digits = 0;
		if (*s == '\0')
			return parts >= 2 && parts <= 3;
	}
}

int nx_manifest_platform_check(const nx_manifest_platform *p, const char *path, nx_error *err)
{
	size_t i;

	if (!p->os || strcmp(p->os, "linux"))
		return nx_error_set(err, NX_EFORMAT, path, 0, -1,
				    "%s: platform \"os\" must be \"linux\"", path);
	for (i = 0; p->arch && p->arch[i]; i++)
		if (!((p->arch[i] >= 'a' && p->arch[i] <= 'z') ||
		      (p->arch[i] >= '0' && p->arch[i] <= '9') || p->arch[i] == '_'))
			break;
	if (!p->arch || !i || p->arch[i] || i > NX_PLATFORM_STRING_MAX)
		return nx_error_set(err, NX_EFORMAT, path, 0, -1,
				    "%s: platform \"arch\" must be a machine name such as "
				    "\"x86_64\" ([a-z0-9_], at most %d bytes)", path,
				    NX_PLATFORM_STRING_MAX);
	if (!p->min_glibc || !glibc_version_ok(p->min_glibc))
		return nx_error_set(err, NX_EFORMAT, path, 0, -1,
				    "%s: platform \"min_glibc\" must be a glibc version such as "
				    "\"2.34\"", path);
	return 0;
}

int nx_manifest_glibc_cmp(const char *a, const char *b)
{
	while (*a || *b) {
		unsigned long x = 0, y = 0;
		bool ax = *a >= '0' && *a <= '9', bx = *b >= '0' && *b <= '9';

		if (!ax || !bx)
			return (int)ax - (int)bx;
		for (; *a >= '0' && *a <= '9' && x < 100000; a++)
			x = x * 10 + (unsigned long)(*a - '0');
		for (; *b >= '0' && *b <= '9' && y < 100000; b++)
			y = y * 10 + (unsigned long)(*b - '0');
		if (x != y)
			return x < y ? -1 : 1;
		if (*a == '.')
			a++;
		if (*b == '.')
			b++;
	}
	return 0;
}

int nx_manifest_set_platform(nx_manifest *m, const char *os, const char *arch,
			     const char *min_glibc, nx_error *err)
{
	nx_manifest_platform *p = calloc(1, sizeof(*p));
	int rc;

	if (!p || !(p->os = strdup(os)) || !(p->arch = strdup(arch)) ||
	    !(p->min_glibc = strdup(min_glibc))) {
		platform_free(p);
		return oom(err, NULL);
	}
	if ((rc = nx_manifest_platform_check(p, NX_MANIFEST_NAME, err)) ||
	    (rc = nx_manifest_set(m, &m->schema_version, NX_MANIFEST_SCHEMA_1_3, err))) {
		platform_free(p);
		return rc;
	}
	platform_free(m->platform);
	m->platform = p;
	return 0;
}

void nx_manifest_free(nx_manifest *m)
{
	size_t i;

	if (!m)
		return;
	nx_manifest_policy_free(m->policy);
	runtime_free(m->runtime);
	platform_free(m->platform);
	for (i = 0; i < m->nfiles; i++)
		free(m->files[i].path);
	free(m->files);
	free(m->schema_version);
	free(m->bundle_id);
	free(m->build_timestamp);
	free(m->architecture);
	free(m->parameters);
	free(m->format);
	free(m->quantization);
	free(m->signature);
	free(m);
}

static int component_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

int nx_manifest_path_check(const char *path, nx_error *err)
{
	const char *p = path, *start = path;
	size_t len;

	if (!path || !*path)
		return nx_error_set(err, NX_EUNSAFE, NULL, 0, -1, "empty path in manifest");
	len = strnlen(path, NX_MANIFEST_PATH_MAX + 1);
	if (len > NX_MANIFEST_PATH_MAX)
		return nx_error_set(err, NX_EUNSAFE, NULL, 0, -1,
				    "path longer than %d bytes in manifest", NX_MANIFEST_PATH_MAX);
	for (;; p++) {
		if (*p == '/' || *p == '\0') {
			size_t n = (size_t)(p - start);

			if (n == 0)
				return nx_error_set(err, NX_EUNSAFE, path, 0, -1,
						    "unsafe path '%s': %s", path,
						    p == path ? "absolute paths are not allowed"
							      : "empty path component");
			if ((n == 1 && start[0] == '.') ||
			    (n == 2 && start[0] == '.' && start[1] == '.'))
				return nx_error_set(err, NX_EUNSAFE, path, 0, -1,
						    "unsafe path '%s': '.' and '..' components "
						    "are not allowed", path);
			if (n > NX_MANIFEST_COMPONENT_MAX)
				return nx_error_set(err, NX_EUNSAFE, path, 0, -1,
						    "unsafe path '%s': component longer than %d bytes",
						    path, NX_MANIFEST_COMPONENT_MAX);
			if (*p == '\0')
				return 0;
			start = p + 1;
		} else if (!component_char((unsigned char)*p)) {
			return nx_error_set(err, NX_EUNSAFE, path, 0, (long long)(p - path),
					    "unsafe path '%s': byte 0x%02x is not one of "
					    "[A-Za-z0-9._-]", path, (unsigned char)*p);
		}
	}
}

/* Index where path belongs in m->files; *found set on an exact match. */
static size_t lower_bound(const nx_manifest *m, const char *path, int *found)
{
	size_t lo = 0, hi = m->nfiles;

	*found = 0;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(m->files[mid].path, path);

		if (c == 0) {
			*found = 1;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

const struct nx_manifest_file *nx_manifest_find(const nx_manifest *m, const char *path)
{
	int found;
	size_t i;

	if (!m || !path)
		return NULL;
	i = lower_bound(m, path, &found);
	return found ? &m->files[i] : NULL;
}

bool nx_manifest_has_dir(const nx_manifest *m, const char *dir)
{
	size_t dl = strlen(dir), i;
	int found;

	/* "a/b-c" sorts between "a/b" and "a/b/...": walk on while the prefix holds */
	for (i = lower_bound(m, dir, &found); i < m->nfiles &&
	     !strncmp(m->files[i].path, dir, dl); i++)
		if (m->files[i].path[dl] == '/')
			return true;
	return false;
}

int nx_manifest_add_file(nx_manifest *m, const char *path,
			 const unsigned char sha256[NX_SHA256_LEN], uint64_t size,
			 nx_error *err)
{
	struct nx_manifest_file *files;
	char *copy;
	size_t i, at;
	int rc, found;

	rc = nx_manifest_path_check(path, err);
	if (rc)
		return rc;
	if (strcasecmp(path, NX_MANIFEST_NAME) == 0)
		return nx_error_set(err, NX_EUNSAFE, path, 0, -1,
				    "the manifest cannot list itself");
	if (size > (uint64_t)LLONG_MAX)
		return nx_error_set(err, NX_ELIMIT, path, 0, -1, "%s is too large", path);
	if (m->nfiles >= NX_MANIFEST_FILES_MAX)
		return nx_error_set(err, NX_ELIMIT, path, 0, -1,
				    "more than %d files in the manifest", NX_MANIFEST_FILES_MAX);
	at = lower_bound(m, path, &found);
	if (found)
		return nx_error_set(err, NX_EEXIST, path, 0, -1,
				    "%s is already in the manifest", path);
	for (i = 0; i < m->nfiles; i++)
		if (strcasecmp(m->files[i].path, path) == 0)
			return nx_error_set(err, NX_EEXIST, path, 0, -1,
					    "%s and %s differ only in case; rename one",
					    m->files[i].path, path);
	if (!(copy = strdup(path)))
		return oom(err, path);
	if (NX_ARRAY_PUSH_EXACT(m->files, m->nfiles)) {
		free(copy);
		return oom(err, path);
	}
	files = m->files;
	memmove(&files[at + 1], &files[at], (m->nfiles - at) * sizeof(*files));
	files[at].path = copy;
	memcpy(files[at].sha256, sha256, NX_SHA256_LEN);
	files[at].size = size;
	m->nfiles++;
	return 0;
}

int nx_manifest_update_file(nx_manifest *m, const char *path,
			    const unsigned char sha256[NX_SHA256_LEN], uint64_t size,
			    nx_error *err)
{
	int found;
	size_t i = lower_bound(m, path, &found);

	if (!found)
		return nx_error_set(err, NX_EINTERNAL, path, 0, -1, "%s is not in the manifest",
				    path);
	memcpy(m->files[i].sha256, sha256, NX_SHA256_LEN);
	m->files[i].size = size;
	return 0;
}

/* A number that is not whole, as the string "%.9g" writes (see manifest.h). */
static json_t *decimal(double v)
{
	char buf[40];

	snprintf(buf, sizeof(buf), "%.9g", v);
	return json_string(buf);
}

static json_t *strv_json(char *const *v, size_t n)
{
	json_t *a = json_array();
	size_t i;

	for (i = 0; a && i < n; i++)
		if (json_array_append_new(a, json_string(v[i]))) {
			json_decref(a);
			return NULL;
		}
	return a;
}

static json_t *policy_json(const nx_manifest_policy *p)
{
	json_t *shared = json_array(), *o;
	size_t i;

	for (i = 0; shared && i < p->nallow_shared; i++)
		if (json_array_append_new(shared, json_pack("{s:s, s:s}", "name",
				p->allow_shared[i].name, "reason", p->allow_shared[i].reason))) {
			json_decref(shared);
			return NULL;
		}
	if (!shared)
		return NULL;
	o = json_pack("{s:o, s:o, s:o, s:I, s:I, s:s, s:o, s:o, s:o, s:I}",
			 "allow_shared_tensors", shared,
			 "forbidden_imports", strv_json(p->forbidden_imports, p->nforbidden_imports),
			 "forbidden_terms", strv_json(p->forbidden_terms, p->nforbidden_terms),
			 "max_leak_bytes", (json_int_t)p->max_leak_bytes,
			 "max_model_bytes", (json_int_t)p->max_model_bytes,
			 "nexus_version", p->nexus_version,
			 "python_packages", strv_json(p->python_packages, p->npython_packages),
			 "selftest_tolerance", decimal(p->selftest_tolerance),
			 "size_slack", decimal(p->size_slack),
			 "teacher_files", (json_int_t)p->teacher_files);
	/* present only when the build had a reference (older bundles stay valid) */
	if (o && p->vocab_reference_sha256 &&
	    json_object_set_new(o, "vocab_reference_sha256", json_string(p->vocab_reference_sha256))) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static json_t *runtime_json(const nx_manifest_runtime *r)
{
	json_t *files = json_array();
	size_t i;

	for (i = 0; files && i < r->nfiles; i++) {
		char hex[2 * NX_SHA256_LEN + 1];

		nx_hex(hex, r->files[i].sha256);
		if (json_array_append_new(files, json_pack("{s:s, s:s}", "path", r->files[i].path,
							   "sha256", hex))) {
			json_decref(files);
			return NULL;
		}
	}
	if (!files)
		return NULL;
	return json_pack("{s:o, s:s}", "files", files, "version", r->version);
}

/* Build the JSON tree; the signature key only when with_signature. */
static json_t *to_json(const nx_manifest *m, int with_signature)
{
	json_t *root = json_object(), *files = json_array(), *meta, *inv;
	bool v12 = !strcmp(m->schema_version, NX_MANIFEST_SCHEMA_1_2) ||
		   !strcmp(m->schema_version, NX_MANIFEST_SCHEMA_1_3);
	size_t i;
	int bad = !root || !files;

	meta = json_pack("{s:s, s:s, s:s, s:s}", "architecture", m->architecture,
			 "parameters", m->parameters, "format", m->format,
			 "quantization", m->quantization);
	inv = json_pack("{s:b, s:b}", "teacher_free", m->teacher_free,
			"training_code_excluded", m->training_code_excluded);
	bad |= !meta || !inv;
	for (i = 0; !bad && i < m->nfiles; i++) {
		char hex[2 * NX_SHA256_LEN + 1], mode[8];
		json_t *f;

		nx_hex(hex, m->files[i].sha256);
		f = json_pack("{s:s, s:s, s:I}", "path", m->files[i].path, "sha256", hex,
			      "size_bytes", (json_int_t)m->files[i].size);
		snprintf(mode, sizeof(mode), "%04o", m->files[i].mode & 07777);
		if (f && v12)
			bad |= json_object_set_new(f, "mode", json_string(mode)) != 0;
		bad |= json_array_append_new(files, f) != 0;
	}
	if (!bad) {
		bad |= json_object_set_new(root, "schema_version", json_string(m->schema_version));
		bad |= json_object_set_new(root, "bundle_id", json_string(m->bundle_id));
		bad |= json_object_set_new(root, "build_timestamp",
					   json_string(m->build_timestamp));
		bad |= json_object_set(root, "model_metadata", meta);
		bad |= json_object_set(root, "invariants", inv);
		bad |= json_object_set(root, "files", files);
		if (with_signature)
			bad |= json_object_set_new(root, "signature", json_string(m->signature));
		if (m->policy) {
			json_t *p = policy_json(m->policy);

			bad |= !p || json_object_set_new(root, "policy", p);
		}
		if (m->runtime) {
			json_t *r = runtime_json(m->runtime);

			bad |= !r || json_object_set_new(root, "runtime", r);
		}
		if (m->platform) {
			json_t *p = json_pack("{s:s, s:s, s:s}", "arch", m->platform->arch,
					      "min_glibc", m->platform->min_glibc,
					      "os", m->platform->os);

			bad |= !p || json_object_set_new(root, "platform", p);
		}
	}
	json_decref(meta);
	json_decref(inv);
	json_decref(files);
	if (bad) {
		json_decref(root);
		return NULL;
	}
	return root;
}

/* prefix + dump + "\n" into one malloc'd, NUL-terminated buffer. */
static int dump(char **out, size_t *out_len, const nx_manifest *m, int with_signature,
		const char *prefix, nx_error *err)
{
	json_t *root = to_json(m, with_signature);
	char *text = NULL, *buf;
	size_t plen = strlen(prefix), tlen;

	if (!root)
		return nx_error_set(err, NX_EFORMAT, NULL, 0, -1,
				    "cannot serialize the manifest: a string is not valid "
				    "utf-8 or memory ran out");
	text = json_dumps(root, DUMP_FLAGS);
	json_decref(root);
	if (!text)
		return oom(err, NULL);
	tlen = strlen(text);
	buf = malloc(plen + tlen + 2);
	if (!buf) {
		free(text);
		return oom(err, NULL);
	}
	memcpy(buf, prefix, plen);
	memcpy(buf + plen, text, tlen);
	buf[plen + tlen] = '\n';
	buf[plen + tlen + 1] = '\0';
	free(text);
	*out = buf;
	*out_len = plen + tlen + 1;
	return 0;
}

int nx_manifest_serialize(char **out, size_t *out_len, const nx_manifest *m, nx_error *err)
{
	return dump(out, out_len, m, 1, "", err);
}

int nx_manifest_signed_bytes(char **out, size_t *out_len, const nx_manifest *m,
			     nx_error *err)
{
	return dump(out, out_len, m, 0, NX_MANIFEST_SIGNED_PREFIX, err);
}
