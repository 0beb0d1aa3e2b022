/*
 * verify_allowlist.c - check `allowlist` (TRV-1): only the paths of the
 * bundle layout exist, no name mentions a teacher, checkpoint or optimizer,
 * no file other than the declared model carries weights or archives
 * (judged by content, not name), and bin/ + lib/ are exactly the runtime
 * of a nexus release the verifier trusts.
 */
#include "verify_internal.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nexus/magic.h"

#define CHECK NX_CHECK_ALLOWLIST
/* A runtime-* FAIL; remembered, since a flooded report may drop it and
 * TRV-5 must not execute a runtime that is not the trusted one. */
#define runtime_fail(c, ...) \
	((c)->runtime_untrusted = true, nx_report_add((c)->r, CHECK, NX_SEV_FAIL, __VA_ARGS__))
#define UNVERIFIED_SCAN_MAX (16u << 20)  /* bytes sniffed of a file integrity rejected */
#define TRUSTED_LIST_MAX (1u << 20)
#define TRUSTED_ENTRIES_MAX 4096

static const char *const forbidden_names[] = {"teacher", "checkpoint", "optimizer"};

static const char *const fixed_files[] = {
	NX_MANIFEST_NAME, "README.md", "LICENSE", "bin/nexus_cli", NX_MODEL_PATH,
	"model/tokenizer/tokenizer.json", "model/tokenizer/vocab.txt", "config/runtime.yaml",
	"config/selftest.json",
};
static const char *const fixed_dirs[] = {"bin", "lib", "model", "model/tokenizer", "config", "src"};

static bool in_list(const char *s, const char *const *list, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!strcmp(s, list[i]))
			return true;
	return false;
}

static bool icase_has(const char *s, size_t len, const char *needle)
{
	size_t nl = strlen(needle), i;

	for (i = 0; i + nl <= len; i++)
		if (!strncasecmp(s + i, needle, nl))
			return true;
	return false;
}

/* model/<name> named as external data by the student. */
static bool is_external_data(const struct vfy_ctx *c, const char *path)
{
	const nx_onnx_summary *s;
	size_t i;

	if (!c->onnx || strncmp(path, "model/", 6) || strchr(path + 6, '/'))
		return false;
	s = nx_onnx_summary_get(c->onnx);
	for (i = 0; i < s->ntensors; i++)
		if (s->tensors[i].location == NX_TENSOR_EXTERNAL && s->tensors[i].ext_location &&
		    !strcmp(s->tensors[i].ext_location, path + 6))
			return true;
	return false;
}

static bool is_source(const char *path)
{
	const char *n = path + 4;
	size_t i, len;

	if (strncmp(path, "src/", 4) || strchr(n, '/'))
		return false;
	len = strlen(n);
	if (len < 4 || strcmp(n + len - 3, ".py") || !(isalpha((unsigned char)n[0]) || n[0] == '_'))
		return false;
	for (i = 0; i < len - 3; i++)
		if (!isalnum((unsigned char)n[i]) && n[i] != '_')
			return false;
	return true;
}

static bool is_runtime(const char *path)
{
	return !strcmp(path, "bin/nexus_cli") ||
	       (!strncmp(path, "lib/", 4) && path[4] && !strchr(path + 4, '/'));
}

static int check_name(struct vfy_ctx *c, const struct nx_fs_entry *e)
{
	const char *p = e->path, *comp = p;
	size_t i;

	for (;;) {
		const char *end = strchr(comp, '/');
		size_t len = end ? (size_t)(end - comp) : strlen(comp);

		for (i = 0; i < sizeof(forbidden_names) / sizeof(forbidden_names[0]); i++)
			if (icase_has(comp, len, forbidden_names[i]))
				return nx_report_add(c->r, CHECK, NX_SEV_FAIL, "forbidden-name", p, 0,
						     "%s: the name contains '%s'", p, forbidden_names[i]);
		if ((len == 11 && !strncmp(comp, "__pycache__", 11)) ||
		    (len > 4 && (!strncmp(comp + len - 4, ".pyc", 4) || !strncmp(comp + len - 4, ".pyo", 4))))
			return nx_report_add(c->r, CHECK, NX_SEV_FAIL, "bytecode", p, 0,
					     "%s is compiled Python; bundles carry source only", p);
		if (!end)
			break;
		comp = end + 1;
	}
	if (S_ISDIR(e->mode) ? in_list(p, fixed_dirs, sizeof(fixed_dirs) / sizeof(fixed_dirs[0])) :
	    in_list(p, fixed_files, sizeof(fixed_files) / sizeof(fixed_files[0])) ||
	    is_source(p) || is_runtime(p) || is_external_data(c, p))
		return 0;
	return nx_report_add(c->r, CHECK, NX_SEV_FAIL, "unexpected-path", p, 0,
			     "%s is not part of the bundle layout (docs/TRV.md lists the allowed paths)", p);
}

static int check_required(struct vfy_ctx *c)
{
	static const char *const need[] = {"bin/nexus_cli", NX_MODEL_PATH, "config/runtime.yaml"};
	size_t i;
	int rc = 0;

	for (i = 0; !rc && i < sizeof(need) / sizeof(need[0]); i++)
		if (vfy_find(c, need[i]) < 0)
			rc = nx_report_add(c->r, CHECK, NX_SEV_FAIL, "required-missing", need[i], 0,
					   "%s is missing: every bundle has it", need[i]);
	if (!rc && vfy_find(c, "model/tokenizer/tokenizer.json") < 0 &&
	    vfy_find(c, "model/tokenizer/vocab.txt") < 0)
		rc = nx_report_add(c->r, CHECK, NX_SEV_FAIL, "required-missing", "model/tokenizer", 0,
				   "the bundle has neither model/tokenizer/tokenizer.json nor vocab.txt");
	for (i = 0; !rc && i < 2; i++)
		if (vfy_find(c, i ? "LICENSE" : "README.md") < 0)
			rc = nx_report_add(c->r, CHECK, NX_SEV_WARN, "doc-missing",
					   i ? "LICENSE" : "README.md", 0, "%s is missing",
					   i ? "LICENSE" : "README.md");
	return rc;
}

static int sniff(struct vfy_ctx *c, size_t idx)
{
	const char *p = c->entries[idx].path;
	struct nx_magic_result mr;
	struct stat st;
	uint64_t limit;
	nx_error e;
	int fd = -1, rc;

	nx_error_clear(&e);
	if (vfy_open_regular(&fd, &st, c->dirfd, p, &e))
		return 0;   /* integrity reports why */
	limit = (uint64_t)st.st_size;
	if (!c->files[idx].verified && limit > UNVERIFIED_SCAN_MAX)
		limit = UNVERIFIED_SCAN_MAX;
	rc = nx_magic_scan_fd(&mr, fd, limit, p, &e);
	close(fd);
	if (rc)
		return rc == NX_ENOMEM ? rc : 0;
	if (nx_magic_is_weights(mr.head))
		return nx_report_add(c->r, CHECK, NX_SEV_FAIL, "weights-content", p, 0,
				     "%s holds %s data (model weights); only %s may carry weights",
				     p, nx_magic_name(mr.head), NX_MODEL_PATH);
	if (nx_magic_is_archive(mr.head))
		return nx_report_add(c->r, CHECK, NX_SEV_FAIL, "archive-content", p, 0,
				     "%s is a %s archive; bundles carry no archives", p,
				     nx_magic_name(mr.head));
	if (mr.head == NX_MAGIC_ELF)
		return nx_report_add(c->r, CHECK, NX_SEV_FAIL, "elf-outside-lib", p, 0,
				     "%s is an ELF executable or shared object outside lib/ and bin/", p);
	if (mr.head == NX_MAGIC_PYC)
		return nx_report_add(c->r, CHECK, NX_SEV_FAIL, "bytecode", p, 0,
				     "%s is compiled Python bytecode", p);
	if (mr.text.embedded_at >= 0 &&
	    (rc = nx_report_add(c->r, CHECK, NX_SEV_FAIL, "embedded-magic", p, 0,
				"%s has %s data embedded at byte %lld", p,
				nx_magic_name(mr.text.embedded), (long long)mr.text.embedded_at)))
		return rc;
	if (mr.text.binary_at >= 0 && mr.text.embedded_at < 0 &&
	    (rc = nx_report_add(c->r, CHECK, NX_SEV_FAIL, "binary-content", p, 0,
				"%s should be UTF-8 text but has binary data at byte %lld", p,
				(long long)mr.text.binary_at)))
		return rc;
	if (mr.text.base64_at >= 0)
		return nx_report_add(c->r, CHECK, NX_SEV_FAIL, "base64-blob", p, 0,
				     "%s has a run of %llu base64 characters at byte %lld (over %d): "
				     "an encoded blob", p, (unsigned long long)mr.text.base64_longest,
				     (long long)mr.text.base64_at, NX_MAGIC_BASE64_RUN_MAX);
	/* Vocabularies are checked entry by entry by the code check (their
	 * ids would count as numbers here); the selftest's golden numbers are
	 * recomputed by TRV-5 and its texts scanned by the code check
	 * (verify_selftest.c). */
	if (mr.text.data_at >= 0 && strncmp(p, "model/tokenizer/", 16) &&
	    strcmp(p, "config/selftest.json"))
		return nx_report_add(c->r, CHECK, NX_SEV_FAIL, "literal-blob", p, 0,
				     "%s carries over %d bytes of data as literals (numbers, hex "
				     "bytes, base64 words) by byte %lld: an encoded blob", p,
				     NX_MAGIC_DATA_MAX, (long long)mr.text.data_at);
	return 0;
}

struct trusted {
	char *path;
	unsigned char sha256[NX_SHA256_LEN];
};

static int load_trusted_list(struct trusted **out, size_t *out_n, const char *file, nx_error *err)
{
	struct trusted *t = NULL;
	char *buf = NULL, *line, *save = NULL;
	size_t len, n = 0;
	int rc;

	rc = vfy_read_path(&buf, &len, file, TRUSTED_LIST_MAX, err);
	if (rc)
		return rc;
	t = calloc(TRUSTED_ENTRIES_MAX, sizeof(*t));
	if (!t) {
		rc = NX_ENOMEM;
		goto out_free;
	}
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char hex[65];
		const char *p = line + 64;

		if (!line[0] || line[0] == '#')
			continue;
		if (strlen(line) < 67 || (p[0] != ' ') || (p[1] != ' ' && p[1] != '*') ||
		    n >= TRUSTED_ENTRIES_MAX) {
			rc = nx_error_set(err, NX_ECONFIG, file, 0, -1,
					  "%s: lines must be '<sha256>  <path>' (at most %d)", file,
					  TRUSTED_ENTRIES_MAX);
			goto out_free;
		}
		memcpy(hex, line, 64);
		hex[64] = '\0';
		if (nx_unhex(t[n].sha256, hex) || !(t[n].path = strdup(p + 2))) {
			rc = nx_error_set(err, NX_ECONFIG, file, 0, -1, "%s: bad sha256 '%s'", file, hex);
			goto out_free;
		}
		n++;
	}
	*out = t;
	*out_n = n;
	t = NULL;
out_free:
	if (t)
		for (len = 0; len < n; len++)
			free(t[len].path);
	free(t);
	free(buf);
	return rc;
}

/* Digest of the trusted runtime's copy of path, from runtime_dir. */
static int runtime_digest(unsigned char out[NX_SHA256_LEN], uint64_t *out_size,
			  const char *dir, const char *path)
{
	char full[NX_ERROR_PATH_MAX];
	struct stat st;
	int fd, rc = -1;

	if ((size_t)snprintf(full, sizeof(full), "%s/%s", dir, path) >= sizeof(full))
		return -1;
	fd = open(full, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	if (!fstat(fd, &st) && S_ISREG(st.st_mode) &&
	    !nx_sha256_fd(out, fd, (uint64_t)st.st_size, full, NULL)) {
		*out_size = (uint64_t)st.st_size;
		rc = 0;
	}
	close(fd);
	return rc;
}

static int check_runtime_file(struct vfy_ctx *c, size_t idx, const struct trusted *t, size_t nt)
{
	const char *p = c->entries[idx].path;
	unsigned char want[NX_SHA256_LEN], got[NX_SHA256_LEN];
	uint64_t want_size = 0;
	bool have = false;
	size_t i;

	for (i = 0; i < nt; i++)
		if (!strcmp(t[i].path, p)) {
			memcpy(want, t[i].sha256, NX_SHA256_LEN);
			have = true;
			want_size = c->entries[idx].size;   /* size unknown from the list */
		}
	if (!have && c->opts->runtime_dir)
		have = !runtime_digest(want, &want_size, c->opts->runtime_dir, p);
	if (!have)
		return runtime_fail(c, "runtime-mismatch", p, 0,
				     "%s is not a file of the trusted nexus runtime", p);
	if (c->files[idx].hashed) {
		memcpy(got, c->files[idx].sha256, NX_SHA256_LEN);
	} else {
		int fd = -1, rc;

		if (c->entries[idx].size != want_size || vfy_open_regular(&fd, NULL, c->dirfd, p, NULL))
			goto mismatch;
		rc = nx_sha256_fd(got, fd, want_size, p, NULL);
		close(fd);
		if (rc)
			goto mismatch;
	}
	if (!memcmp(got, want, NX_SHA256_LEN))
		return 0;
mismatch:
	return runtime_fail(c, "runtime-mismatch", p, 0,
			     "%s differs from the trusted nexus runtime's copy", p);
}

static int check_runtime(struct vfy_ctx *c)
{
	struct trusted *t = NULL;
	size_t nt = 0, i;
	nx_error e;
	int rc = 0;

	nx_error_clear(&e);
	if (c->opts->trusted_list && (rc = load_trusted_list(&t, &nt, c->opts->trusted_list, &e)))
		return rc == NX_ENOMEM ? rc :
		       runtime_fail(c, "runtime-untrusted", NULL, 0, "%s",
				     e.message);
	if (!c->opts->runtime_dir && !c->opts->trusted_list)
		return runtime_fail(c, "runtime-untrusted", NULL, 0,
				     "no trusted nexus runtime to compare bin/ and lib/ with; set "
				     "NEXUS_RUNTIME_DIR or pass --trusted-list");
	for (i = 0; !rc && i < c->nentries; i++)
		if (S_ISREG(c->entries[i].mode) && is_runtime(c->entries[i].path))
			rc = check_runtime_file(c, i, t, nt);
	/* the trusted runtime's own libraries must all be there */
	if (!rc && c->opts->runtime_dir) {
		struct nx_fs_entry *re = NULL;
		size_t nre = 0;
		int dfd = open(c->opts->runtime_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

		/* with a trusted list, an absent runtime directory is not needed */
		if ((dfd < 0 || nx_fs_walk(&re, &nre, dfd, 1024, NULL)) && !c->opts->trusted_list)
			rc = runtime_fail(c, "runtime-untrusted", NULL, 0,
					   "cannot read the trusted runtime in %s", c->opts->runtime_dir);
		for (i = 0; !rc && i < nre; i++)
			if ((S_ISREG(re[i].mode) || S_ISLNK(re[i].mode)) && is_runtime(re[i].path) &&
			    vfy_find(c, re[i].path) < 0)
				rc = runtime_fail(c, "runtime-missing", re[i].path, 0,
						   "%s of the nexus runtime is missing from the bundle",
						   re[i].path);
		nx_fs_entries_free(re, nre);
		if (dfd >= 0)
			close(dfd);
	}
	for (i = 0; i < nt; i++)
		free(t[i].path);
	free(t);
	return rc;
}

int vfy_allowlist(struct vfy_ctx *c, nx_error *err)
{
	size_t i;
	int rc = 0;

	for (i = 0; !rc && i < c->nentries; i++) {
		const struct nx_fs_entry *e = &c->entries[i];

		if (!S_ISREG(e->mode) && !S_ISDIR(e->mode))
			continue;
		rc = check_name(c, e);
		if (rc || S_ISDIR(e->mode) || is_runtime(e->path) || !strcmp(e->path, NX_MODEL_PATH) ||
		    is_external_data(c, e->path))
			continue;
		rc = sniff(c, i);
	}
	if (!rc)
		rc = check_required(c);
	if (!rc)
		rc = check_runtime(c);
	return rc;
}
