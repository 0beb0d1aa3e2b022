/*
 * verify_allowlist.c - check `allowlist` (TRV-1): only the paths of the
 * bundle layout exist, no name mentions a teacher, checkpoint or optimizer,
 * no file other than the declared model carries weights or archives
 * (judged by content, not name), and bin/ + lib/ are exactly the runtime
 * of a nexus release the verifier trusts.
 */
#include "verify_internal.h"
#include "nexus/bundle.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nexus/elf.h"
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
	NX_MANIFEST_NAME, "README.md", "LICENSE", NX_BUNDLE_CLI, NX_MODEL_PATH,
	NX_BUNDLE_TOKENIZER_JSON, NX_BUNDLE_VOCAB, NX_BUNDLE_TOKENIZER_CONFIG, NX_BUNDLE_RUNTIME_CONFIG,
	NX_BUNDLE_SELFTEST, NX_BUNDLE_GENERATION_CONFIG,
};
static const char *const fixed_dirs[] = {"bin", "lib", "model", NX_BUNDLE_TOKENIZER_DIR, "config", "src"};

static bool in_list(const char *s, const char *const *list, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!strcmp(s, list[i]))
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
	return nx_manifest_is_runtime_path(path);
}

static int check_name(struct vfy_ctx *c, const struct nx_fs_entry *e)
{
	const char *p = e->path, *comp = p;
	size_t i;

	for (;;) {
		const char *end = strchr(comp, '/');
		size_t len = end ? (size_t)(end - comp) : strlen(comp);

		for (i = 0; i < sizeof(forbidden_names) / sizeof(forbidden_names[0]); i++)
			if (nx_scan_find(comp, len, forbidden_names[i]) >= 0)
				return nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_FORBIDDEN_NAME, p, 0,
						     "%s: the name contains '%s'", p, forbidden_names[i]);
		if ((len == 11 && !strncmp(comp, "__pycache__", 11)) ||
		    (len > 4 && (!strncmp(comp + len - 4, ".pyc", 4) || !strncmp(comp + len - 4, ".pyo", 4))))
			return nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_BYTECODE, p, 0,
					     "%s is compiled Python; bundles carry source only", p);
		if (!end)
			break;
		comp = end + 1;
	}
	if (S_ISDIR(e->mode) ? in_list(p, fixed_dirs, sizeof(fixed_dirs) / sizeof(fixed_dirs[0])) :
	    in_list(p, fixed_files, sizeof(fixed_files) / sizeof(fixed_files[0])) ||
	    is_source(p) || is_runtime(p) || is_external_data(c, p))
		return 0;
	return nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_UNEXPECTED_PATH, p, 0,
			     "%s is not part of the bundle layout (docs/TRV.md lists the allowed paths)", p);
}

static int check_required(struct vfy_ctx *c)
{
	static const char *const need[] = {NX_BUNDLE_CLI, NX_MODEL_PATH, NX_BUNDLE_RUNTIME_CONFIG};
	size_t i;
	int rc = 0;

	for (i = 0; !rc && i < sizeof(need) / sizeof(need[0]); i++)
		if (nx_vfy__find(c, need[i]) < 0)
			rc = nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_REQUIRED_MISSING, need[i], 0,
					   "%s is missing: every bundle has it", need[i]);
	if (!rc && nx_vfy__find(c, NX_BUNDLE_TOKENIZER_JSON) < 0 &&
	    nx_vfy__find(c, NX_BUNDLE_VOCAB) < 0)
		rc = nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_REQUIRED_MISSING, NX_BUNDLE_TOKENIZER_DIR, 0,
				   "the bundle has neither model/tokenizer/tokenizer.json nor vocab.txt");
	for (i = 0; !rc && i < 2; i++)
		if (nx_vfy__find(c, i ? "LICENSE" : "README.md") < 0)
			rc = nx_report_add(c->r, CHECK, NX_SEV_WARN, NX_F_DOC_MISSING,
					   i ? "LICENSE" : "README.md", 0, "%s is missing",
					   i ? "LICENSE" : "README.md");
	return rc;
}

/*
 * tokenizer.json: a Precompiled normalizer's charsmap is base64 by format
 * (SentencePiece's), and the leak budget parses it (verify_tokjson.c), so
 * the base64-blob check judges the file with those values blanked.  Only
 * the key spelled plainly is blanked: an escaped spelling is judged whole.
 */
static int tokjson_base64(struct vfy_ctx *c, const char *p, struct nx_text_scan *out)
{
	static const char key[] = "\"precompiled_charsmap\"";
	char *buf = NULL, *q, *end;
	size_t len = 0;
	nx_error e;
	int rc;

	nx_error_clear(&e);
	if ((rc = nx_fs_read_all(&buf, &len, c->dirfd, p, NX_VERIFY_TEXT_MAX, &e)))
		return rc == NX_ENOMEM ? rc : 1;   /* the code check reports it */
	end = buf + len;
	for (q = buf; (q = memmem(q, (size_t)(end - q), key, sizeof(key) - 1)); ) {
		q += sizeof(key) - 1;
		while (q < end && strchr(" \t\r\n", *q))
			q++;
		if (q == end || *q != ':')
			continue;
		for (q++; q < end && strchr(" \t\r\n", *q); q++)
			;
		if (q == end || *q++ != '"')
			continue;
		for (; q < end && *q != '"' && *q != '\\'; q++)
			*q = ' ';
	}
	nx_text_scan_init(out);
	nx_text_scan_feed(out, (const unsigned char *)buf, len);
	nx_text_scan_finish(out);
	free(buf);
	return 0;
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
	if (nx_vfy__open_regular(&fd, &st, c->dirfd, p, &e))
		return 0;   /* integrity reports why */
	limit = (uint64_t)st.st_size;
	if (!c->files[idx].verified && limit > UNVERIFIED_SCAN_MAX)
		limit = UNVERIFIED_SCAN_MAX;
	rc = nx_magic_scan_fd(&mr, fd, limit, p, &e);
	close(fd);
	if (rc)
		return rc == NX_ENOMEM ? rc : 0;
	if (nx_magic_is_weights(mr.head))
		return nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_WEIGHTS_CONTENT, p, 0,
				     "%s holds %s data (model weights); only %s may carry weights",
				     p, nx_magic_name(mr.head), NX_MODEL_PATH);
	if (nx_magic_is_archive(mr.head))
		return nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_ARCHIVE_CONTENT, p, 0,
				     "%s is a %s archive; bundles carry no archives", p,
				     nx_magic_name(mr.head));
	if (mr.head == NX_MAGIC_ELF)
		return nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_ELF_OUTSIDE_LIB, p, 0,
				     "%s is an ELF executable or shared object outside lib/ and bin/", p);
	if (mr.head == NX_MAGIC_PYC)
		return nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_BYTECODE, p, 0,
				     "%s is compiled Python bytecode", p);
	if (mr.text.embedded_at >= 0 &&
	    (rc = nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_EMBEDDED_MAGIC, p, 0,
				"%s has %s data embedded at byte %lld", p,
				nx_magic_name(mr.text.embedded), (long long)mr.text.embedded_at)))
		return rc;
	if (mr.text.binary_at >= 0 && mr.text.embedded_at < 0 &&
	    (rc = nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_BINARY_CONTENT, p, 0,
				"%s should be UTF-8 text but has binary data at byte %lld", p,
				(long long)mr.text.binary_at)))
		return rc;
	if (mr.text.base64_at >= 0 && !strcmp(p, NX_BUNDLE_TOKENIZER_JSON) &&
	    c->files[idx].verified) {
		struct nx_text_scan ts;

		if ((rc = tokjson_base64(c, p, &ts)) == NX_ENOMEM)
			return rc;
		if (!rc) {
			mr.text.base64_at = ts.base64_at;
			mr.text.base64_longest = ts.base64_longest;
		}
	}
	if (mr.text.base64_at >= 0)
		return nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_BASE64_BLOB, p, 0,
				     "%s has a run of %llu base64 characters at byte %lld (over %d): "
				     "an encoded blob", p, (unsigned long long)mr.text.base64_longest,
				     (long long)mr.text.base64_at, NX_MAGIC_BASE64_RUN_MAX);
	/* Vocabularies are checked entry by entry by the code check (their
	 * ids would count as numbers here); the selftest's golden numbers are
	 * recomputed by TRV-5 and its texts scanned by the code check
	 * (verify_selftest.c). */
	if (mr.text.data_at >= 0 && strncmp(p, NX_BUNDLE_TOKENIZER_DIR "/", 16) &&
	    strcmp(p, NX_BUNDLE_SELFTEST))
		return nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_LITERAL_BLOB, p, 0,
				     "%s carries over %d bytes of data as literals (numbers, hex "
				     "bytes, base64 words) by byte %lld: an encoded blob", p,
				     NX_MAGIC_DATA_MAX, (long long)mr.text.data_at);
	return 0;
}

/*
 * Trusted runtimes.  The bundle's bin/ + lib/ as a whole must be the
 * runtime of one nexus release the verifier trusts: its own installation
 * (runtime_dir), or a release of a trusted list - the installation's own
 * (<runtime_dir>/trusted-runtimes, written by make) or --trusted-list.  A
 * list is "<sha256>  <path>" lines as sha256sum prints them, grouped into
 * releases by "nexus <version>" lines (lines before the first form one
 * release).  Mixing files of two releases is no release.
 */
struct trusted {
	char *path;
	unsigned char sha256[NX_SHA256_LEN];
	size_t release;          /* index into the list's releases */
};

struct trusted_list {
	const char *file;
	struct trusted *t;
	size_t nt;
	char **release;          /* "nexus <version>" or "" */
	size_t nrelease;
};

static void trusted_list_release(struct trusted_list *l)
{
	size_t i;

	for (i = 0; i < l->nt; i++)
		free(l->t[i].path);
	for (i = 0; i < l->nrelease; i++)
		free(l->release[i]);
	free(l->t);
	free(l->release);
	memset(l, 0, sizeof(*l));
}

static int add_release(struct trusted_list *l, const char *name, nx_error *err)
{
	if (NX_ARRAY_PUSH_EXACT(l->release, l->nrelease))
		return nx_error_oom(err, l->file);
	if (!(l->release[l->nrelease] = strdup(name)))
		return nx_error_oom(err, l->file);
	l->nrelease++;
	return 0;
}

static int parse_list_line(struct trusted_list *l, char *line, long lineno, nx_error *err)
{
	struct trusted *e;
	char hex[65];
	const char *p = line + 64;

	if (!strncmp(line, "nexus ", 6))
		return add_release(l, line, err);
	if (!l->nrelease && add_release(l, "", err))
		return NX_ENOMEM;
	if (strlen(line) < 67 || p[0] != ' ' || (p[1] != ' ' && p[1] != '*') ||
	    l->nt >= TRUSTED_ENTRIES_MAX)
		return nx_error_set(err, NX_ECONFIG, l->file, lineno, -1,
				    "%s:%ld: lines must be 'nexus <version>' or '<sha256>  <path>' "
				    "(at most %d)", l->file, lineno, TRUSTED_ENTRIES_MAX);
	e = &l->t[l->nt];
	memcpy(hex, line, 64);
	hex[64] = '\0';
	if (nx_unhex(e->sha256, hex))
		return nx_error_set(err, NX_ECONFIG, l->file, lineno, -1, "%s:%ld: bad sha256 '%s'",
				    l->file, lineno, hex);
	if (!(e->path = strdup(p + 2)))
		return nx_error_oom(err, l->file);
	e->release = l->nrelease - 1;
	l->nt++;
	return 0;
}

/*
 * Load a list.  installed: the installation's own, which is trusted as the
 * nexus binary itself is - so, like a binary, it must not be writable by
 * anyone but its owner.
 */
static int load_trusted_list(struct trusted_list *l, const char *file, bool installed,
			     nx_error *err)
{
	char *buf = NULL, *line, *next;
	struct stat st;
	long lineno = 0;
	size_t len;
	int rc;

	memset(l, 0, sizeof(*l));
	l->file = file;
	rc = nx_vfy__read_path(&buf, &len, &st, file, TRUSTED_LIST_MAX, err);
	if (rc)
		return rc;
	if (installed && (st.st_mode & 022)) {
		rc = nx_error_set(err, NX_ECONFIG, file, 0, -1,
				  "%s is writable by group or others, so it is not trusted; "
				  "chmod go-w it (it is part of the nexus installation)", file);
		goto out;
	}
	if (!(l->t = calloc(TRUSTED_ENTRIES_MAX, sizeof(*l->t)))) {
		rc = NX_ENOMEM;
		goto out;
	}
	if (memchr(buf, '\0', len)) {
		rc = nx_error_set(err, NX_ECONFIG, file, 0, -1, "%s is not a text file", file);
		goto out;
	}
	for (line = buf; !rc && line < buf + len; line = next) {
		char *nl = memchr(line, '\n', (size_t)(buf + len - line));

		next = nl ? nl + 1 : buf + len;
		if (nl)
			*nl = '\0';
		lineno++;
		if (line[0] && line[0] != '#')
			rc = parse_list_line(l, line, lineno, err);
	}
out:
	if (rc)
		trusted_list_release(l);
	free(buf);
	return rc;
}

/* The bundle file's digest: integrity's, else the manifest's if integrity
 * verified it, else read now.  0, or -1 when it cannot be read. */
static int bundle_digest(struct vfy_ctx *c, size_t idx, unsigned char out[NX_SHA256_LEN])
{
	const struct nx_manifest_file *mf;
	int fd = -1, rc;

	if (c->files[idx].hashed) {
		memcpy(out, c->files[idx].sha256, NX_SHA256_LEN);
		return 0;
	}
	if (c->files[idx].verified && c->m && (mf = nx_manifest_find(c->m, c->entries[idx].path))) {
		memcpy(out, mf->sha256, NX_SHA256_LEN);
		return 0;
	}
	if (nx_vfy__open_regular(&fd, NULL, c->dirfd, c->entries[idx].path, NULL))
		return -1;
	rc = nx_sha256_fd(out, fd, c->entries[idx].size, c->entries[idx].path, NULL);
	close(fd);
	return rc ? -1 : 0;
}

/* Release r of list l holds exactly the bundle's runtime files. */
static bool release_matches(struct vfy_ctx *c, const struct trusted_list *l, size_t r)
{
	unsigned char got[NX_SHA256_LEN];
	size_t i, n = 0, nb = 0;

	for (i = 0; i < l->nt; i++) {
		long k;

		if (l->t[i].release != r)
			continue;
		n++;
		k = nx_vfy__find(c, l->t[i].path);
		if (k < 0 || !S_ISREG(c->entries[k].mode) || bundle_digest(c, (size_t)k, got) ||
		    memcmp(got, l->t[i].sha256, NX_SHA256_LEN))
			return false;
	}
	for (i = 0; i < c->nentries; i++)
		nb += (S_ISREG(c->entries[i].mode) || S_ISLNK(c->entries[i].mode)) &&
		      is_runtime(c->entries[i].path);
	return n && n == nb;
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

/* What to do about a runtime that is not this installation's. */
static const char *upgrade_hint(const struct vfy_ctx *c, char *buf, size_t n)
{
	snprintf(buf, n, "the bundle's runtime is nexus %s, this is nexus %s: if you trust that "
		 "release, pass its runtime digests with --trusted-list FILE (docs/TRV.md), else "
		 "rebuild the bundle with this nexus",
		 c->m && c->m->runtime ? c->m->runtime->version : "(not recorded)", NX_VERSION);
	return buf;
}

static int check_runtime_file(struct vfy_ctx *c, size_t idx)
{
	const char *p = c->entries[idx].path;
	unsigned char want[NX_SHA256_LEN], got[NX_SHA256_LEN];
	uint64_t want_size = 0;
	char hint[256];

	if (!c->opts->runtime_dir || runtime_digest(want, &want_size, c->opts->runtime_dir, p))
		return runtime_fail(c, NX_F_RUNTIME_MISMATCH, p, 0,
				    "%s is not a file of the trusted nexus runtime; %s", p,
				    upgrade_hint(c, hint, sizeof(hint)));
	if (c->entries[idx].size == want_size && !bundle_digest(c, idx, got) &&
	    !memcmp(got, want, NX_SHA256_LEN))
		return 0;
	return runtime_fail(c, NX_F_RUNTIME_MISMATCH, p, 0,
			    "%s differs from the trusted nexus runtime's copy; %s", p,
			    upgrade_hint(c, hint, sizeof(hint)));
}

/* The bundle's runtime is a release of list l: an INFO naming it. */
static int list_match(struct vfy_ctx *c, const struct trusted_list *l, bool *matched)
{
	size_t r;

	for (r = 0; r < l->nrelease; r++)
		if (release_matches(c, l, r)) {
			*matched = true;
			return nx_report_add(c->r, CHECK, NX_SEV_INFO, NX_F_RUNTIME_TRUSTED, NULL, 0,
					     "bin/ and lib/ are the runtime %s listed in %s",
					     l->release[r][0] ? l->release[r] : "of a release", l->file);
		}
	return 0;
}

/* The installation's own list, if it has one. */
static int installed_list(struct vfy_ctx *c, bool *matched)
{
	struct trusted_list l;
	char path[NX_ERROR_PATH_MAX];
	nx_error e;
	int rc;

	if (!c->opts->runtime_dir ||
	    (size_t)snprintf(path, sizeof(path), "%s/" NX_TRUSTED_RUNTIMES_NAME,
			     c->opts->runtime_dir) >= sizeof(path) ||
	    access(path, F_OK) != 0)
		return 0;
	nx_error_clear(&e);
	if ((rc = load_trusted_list(&l, path, true, &e)))
		return rc == NX_ENOMEM ? rc : runtime_fail(c, NX_F_RUNTIME_UNTRUSTED, NULL, 0, "%s",
							    e.message);
	rc = list_match(c, &l, matched);
	trusted_list_release(&l);
	return rc;
}

static int check_runtime(struct vfy_ctx *c)
{
	struct trusted_list l = {0};
	bool matched = false;
	size_t i;
	nx_error e;
	int rc = 0;

	nx_error_clear(&e);
	if (c->opts->trusted_list) {
		if ((rc = load_trusted_list(&l, c->opts->trusted_list, false, &e)))
			return rc == NX_ENOMEM ? rc :
			       runtime_fail(c, NX_F_RUNTIME_UNTRUSTED, NULL, 0, "%s", e.message);
		rc = list_match(c, &l, &matched);
		trusted_list_release(&l);
	}
	if (!rc && !matched)
		rc = installed_list(c, &matched);
	if (rc || matched || c->runtime_untrusted)
		return rc;
	if (!c->opts->runtime_dir)
		return runtime_fail(c, NX_F_RUNTIME_UNTRUSTED, NULL, 0,
				    "no trusted nexus runtime to compare bin/ and lib/ with; set "
				    "NEXUS_RUNTIME_DIR or pass --trusted-list");
	for (i = 0; !rc && i < c->nentries; i++)
		if (S_ISREG(c->entries[i].mode) && is_runtime(c->entries[i].path))
			rc = check_runtime_file(c, i);
	/* the trusted runtime's own libraries must all be there */
	if (!rc) {
		struct nx_fs_entry *re = NULL;
		size_t nre = 0;
		int dfd = open(c->opts->runtime_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

		if (dfd < 0 || nx_fs_walk(&re, &nre, dfd, 1024, NULL))
			rc = runtime_fail(c, NX_F_RUNTIME_UNTRUSTED, NULL, 0,
					  "cannot read the trusted runtime in %s", c->opts->runtime_dir);
		for (i = 0; !rc && i < nre; i++)
			if ((S_ISREG(re[i].mode) || S_ISLNK(re[i].mode)) && is_runtime(re[i].path) &&
			    nx_vfy__find(c, re[i].path) < 0)
				rc = runtime_fail(c, NX_F_RUNTIME_MISSING, re[i].path, 0,
						   "%s of the nexus runtime is missing from the bundle",
						   re[i].path);
		nx_fs_entries_free(re, nre);
		if (dfd >= 0)
			close(dfd);
	}
	return rc;
}

/*
 * The manifest's platform (schema 1.3) must be what the bundle's runtime
 * files say (nx_elf_platform), the way build computed it: a value that
 * follows from trusted bytes carries nothing of its own, and one that
 * differs would turn away hosts that can run the bundle or admit hosts
 * that cannot.  Judged only for a trusted runtime (else runtime-* FAILs).
 */
static int check_platform(struct vfy_ctx *c)
{
	const nx_manifest_platform *p = c->m ? c->m->platform : NULL;
	char arch[NX_ELF_ARCH_MAX], glibc[NX_ELF_GLIBC_MAX];
	nx_error e;
	int rc;

	if (!p || c->runtime_untrusted)
		return 0;
	nx_error_clear(&e);
	if ((rc = nx_elf_platform(arch, glibc, c->dirfd, c->m, &e)))
		return rc == NX_ENOMEM ? rc :
		       nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_PLATFORM_MISMATCH, NX_MANIFEST_NAME, 0,
				     "the platform of the bundle's runtime cannot be read: %s", e.message);
	if (strcmp(p->arch, arch) || strcmp(p->min_glibc, glibc))
		return nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_PLATFORM_MISMATCH, NX_MANIFEST_NAME, 0,
				     "manifest.json platform says %s/%s with glibc %s or newer, but the "
				     "bundle's runtime is %s/%s and needs glibc %s; rebuild the bundle",
				     p->os, p->arch, p->min_glibc, "linux", arch, glibc);
	return 0;
}

int nx_vfy__allowlist(struct vfy_ctx *c, nx_error *err)
{
	size_t i;
	int rc = 0;

	for (i = 0; !rc && i < c->nentries; i++) {
		const struct nx_fs_entry *e = &c->entries[i];

		if (!S_ISREG(e->mode) && !S_ISDIR(e->mode))
			continue;
		rc = check_name(c, e);
		/* the notices are a runtime file but text, and judged as text too */
		if (rc || S_ISDIR(e->mode) || !strcmp(e->path, NX_MODEL_PATH) ||
		    (is_runtime(e->path) && strcmp(e->path, NX_BUNDLE_NOTICES)) ||
		    is_external_data(c, e->path))
			continue;
		rc = sniff(c, i);
	}
	if (!rc)
		rc = check_required(c);
	if (!rc)
		rc = check_runtime(c);
	if (!rc)
		rc = check_platform(c);
	return rc;
}
