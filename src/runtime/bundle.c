/*
 * bundle.c - start-up of the runtime: find the bundle root, refuse to start
 * when a file differs from manifest.json, then read runtime.yaml and the
 * tokenizer.  The model stays open on the fd that was checked, so that
 * infer.c loads exactly the verified bytes.
 */
#include <errno.h>
#include <fcntl.h>
#include <gnu/libc-version.h>
#include <limits.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "nexus/hash.h"
#include "nexus/bundle.h"
#include "rt.h"

/* openat that resolves no symlink and never leaves the bundle root. */
static int open_beneath(int rootfd, const char *path)
{
	struct open_how how = {
		.flags = O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY,
		.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
	};
	int fd = (int)syscall(SYS_openat2, rootfd, path, &how, sizeof(how));

	if (fd < 0 && errno == ENOSYS)  /* kernels before 5.6 */
		fd = openat(rootfd, path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
	return fd;
}

static int find_root(char *out, size_t n, const char *dir, nx_error *err)
{
	char exe[PATH_MAX], *slash;
	ssize_t len;
	int i;

	if (dir) {
		if (!realpath(dir, out))
			return nx_error_errno(err, NX_EIO, errno, dir, "cannot open the bundle %s", dir);
		return 0;
	}
	len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (len <= 0)
		return nx_error_errno(err, NX_EIO, errno, "/proc/self/exe",
				      "cannot find the bundle from /proc/self/exe; pass --bundle DIR");
	exe[len] = '\0';
	/* <root>/bin/nexus_cli: drop the file name, then bin/ */
	for (i = 0; i < 2; i++)
		if ((slash = strrchr(exe, '/')))
			*slash = '\0';
	if (!exe[0] || strlen(exe) >= n)
		return nx_error_set(err, NX_EIO, NULL, 0, -1,
				    "cannot find the bundle root; pass --bundle DIR");
	memcpy(out, exe, strlen(exe) + 1);
	return 0;
}

/*
 * The manifest's platform (schema 1.3) against this host: the kernel's
 * machine name and the running glibc.  Where the glibc is older than the
 * runtime's ELF files need, ld.so usually refuses first, with its own
 * message (docs/FORMAT.md, "platform"); this check speaks where the program
 * still starts (an emulated machine, a manifest that asks for more).
 */
static int check_platform(const nx_manifest *m, nx_error *err)
{
	const nx_manifest_platform *p = m->platform;
	const char *glibc = gnu_get_libc_version();
	struct utsname u;

	if (!p)
		return 0;
	if (uname(&u) != 0)
		return nx_error_errno(err, NX_EIO, errno, NULL, "cannot read this host's machine name");
	if (strcmp(p->arch, u.machine) != 0 || strcmp(p->os, "linux") != 0)
		return nx_error_set(err, NX_EDEP, NX_MANIFEST_NAME, 0, -1,
				    "this bundle is built for %s/%s (manifest.json platform) but this "
				    "host is linux/%s; run it on a %s host or rebuild it with a nexus "
				    "built for this one", p->os, p->arch, u.machine, p->arch);
	if (nx_manifest_glibc_cmp(glibc, p->min_glibc) < 0)
		return nx_error_set(err, NX_EDEP, NX_MANIFEST_NAME, 0, -1,
				    "this bundle's runtime needs glibc %s or newer (manifest.json "
				    "platform) but this host has glibc %s; run it on a host with "
				    "glibc %s or newer", p->min_glibc, glibc, p->min_glibc);
	return 0;
}

/* The files whose SHA-256 is checked beside the model load. */
struct rt_hashjob {
	pthread_t thread;
	bool started;
	size_t n;
	struct { int fd; const struct nx_manifest_file *f; } *files;
	int rc;
	nx_error err;
};

static int compare_sha(int fd, const struct nx_manifest_file *f, nx_error *err)
{
	unsigned char sum[NX_SHA256_LEN];
	int rc;

	if ((rc = nx_sha256_fd(sum, fd, f->size, f->path, err)))
		return rc;
	if (memcmp(sum, f->sha256, NX_SHA256_LEN))
		return nx_error_set(err, NX_ECHECK, f->path, 0, -1,
				    "integrity: %s does not match its SHA-256 in manifest.json; "
				    "the bundle was modified, reinstall it", f->path);
	return 0;
}

static void *hash_files(void *arg)
{
	struct rt_hashjob *h = arg;
	size_t i;

	for (i = 0; i < h->n && !h->rc; i++)
		h->rc = compare_sha(h->files[i].fd, h->files[i].f, &h->err);
	return NULL;
}

static void hashjob_free(struct rt_hashjob *h)
{
	size_t i;

	if (!h)
		return;
	if (h->started)
		pthread_join(h->thread, NULL);
	for (i = 0; i < h->n; i++)
		if (h->files[i].fd >= 0)
			close(h->files[i].fd);
	free(h->files);
	free(h);
}

int rt_bundle_verified(struct rt_bundle *b, nx_error *err)
{
	struct rt_hashjob *h = b->hash;
	int rc;

	if (!h)
		return 0;
	if (h->started)
		pthread_join(h->thread, NULL);
	h->started = false;
	rc = h->rc;
	if (rc)
		*err = h->err;
	hashjob_free(h);
	b->hash = NULL;
	return rc;
}

/*
 * One manifest entry against the file on disk: regular, size; with `full`
 * its SHA-256 now (full == 1) or on the hash thread (full == 2: the fd is
 * kept in b->hash).
 */
static int check_file(struct rt_bundle *b, const struct nx_manifest_file *f, int full,
		      int *fd_out, nx_error *err)
{
	struct stat st;
	int fd, rc = 0;

	fd = open_beneath(b->rootfd, f->path);
	if (fd < 0)
		return nx_error_errno(err, NX_ECHECK, errno, f->path,
				      "integrity: %s listed in manifest.json cannot be opened", f->path);
	if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		rc = nx_error_set(err, NX_ECHECK, f->path, 0, -1,
				  "integrity: %s is not a regular file", f->path);
		goto out;
	}
	if ((uint64_t)st.st_size != f->size) {
		rc = nx_error_set(err, NX_ECHECK, f->path, 0, -1,
				  "integrity: %s is %llu bytes, manifest.json says %llu; the bundle was "
				  "modified, reinstall it", f->path, (unsigned long long)st.st_size,
				  (unsigned long long)f->size);
		goto out;
	}
	if (full == 1 && (rc = compare_sha(fd, f, err)))
		goto out;
	if (full == 2) {
		struct rt_hashjob *h = b->hash;
		int keep = fd_out ? dup(fd) : fd;

		if (keep < 0) {
			rc = nx_error_errno(err, NX_EIO, errno, f->path, "cannot open %s", f->path);
			goto out;
		}
		h->files[h->n].fd = keep;
		h->files[h->n++].f = f;
		if (!fd_out)
			fd = -1;
	}
	if (fd_out) {
		*fd_out = fd;
		fd = -1;
	}
out:
	if (fd >= 0)
		close(fd);
	return rc;
}

static int settings(struct rt_bundle *b, nx_error *err)
{
	const nx_runtime_config *rc = b->rc;
	struct rt_settings *s = &b->set;
	const char *g = rc->graph_optimization ? rc->graph_optimization : "all";

	s->task = rc->task == NX_TASK_CLASSIFICATION ? RT_TASK_CLASSIFICATION
		: rc->task == NX_TASK_EMBEDDING ? RT_TASK_EMBEDDING
		: rc->task == NX_TASK_RERANK ? RT_TASK_RERANK
		: rc->task == NX_TASK_GENERATION ? RT_TASK_GENERATION : RT_TASK_RAW;
	s->labels = rc->labels;
	s->nlabels = rc->nlabels;
	s->scores_map = rc->scores_map;
	s->pool = rc->pooling == NX_POOL_CLS ? RT_POOL_CLS
		: rc->pooling == NX_POOL_LAST ? RT_POOL_LAST : RT_POOL_MEAN;
	s->normalize = rc->normalize;
	s->output_dims = (size_t)rc->output_dims;
	s->max_len = (size_t)rc->max_sequence_length;
	s->batch_size = (size_t)rc->batch_size;
	s->threads = rc->threads;
	s->integrity_full = rc->integrity == NX_INTEGRITY_FULL;
	s->output = rc->output;
	for (int i = 0; i < NX_INPUT_ROLES; i++)
		s->inputs[i] = rc->inputs[i] ? rc->inputs[i] : nx_input_default_names[i];
	s->graph_opt = !strcmp(g, "disable") ? 0 : !strcmp(g, "basic") ? 1
		: !strcmp(g, "extended") ? 2 : 99;
	if (s->max_len < 2 || s->max_len > RT_SEQ_MAX || s->batch_size < 1 ||
	    s->batch_size > RT_BATCH_MAX)
		return nx_error_set(err, NX_ECONFIG, RT_CONFIG, 0, -1,
				    "%s: max_sequence_length or batch_size out of range", RT_CONFIG);
	return 0;
}

int rt_bundle_open(struct rt_bundle *b, const char *dir, bool check, nx_error *err)
{
	const struct nx_manifest_file *mf;
	struct stat st;
	int tokfd = -1, rc;
	size_t i;

	memset(b, 0, sizeof(*b));
	b->rootfd = b->model_fd = -1;
	if ((rc = find_root(b->root, sizeof(b->root), dir, err)))
		return rc;
	b->rootfd = open(b->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (b->rootfd < 0)
		return nx_error_errno(err, NX_EIO, errno, b->root, "cannot open the bundle %s", b->root);
	/* runtime.yaml says how thoroughly to check the rest, so it is always
	 * checked in full before it is read */
	if (check) {
		if ((rc = nx_manifest_load(&b->manifest, b->rootfd, NX_MANIFEST_NAME, err)) ||
		    (rc = check_platform(b->manifest, err)))
			return rc;
		mf = nx_manifest_find(b->manifest, RT_CONFIG);
		if (!mf || !nx_manifest_find(b->manifest, RT_MODEL))
			return nx_error_set(err, NX_ECHECK, NX_MANIFEST_NAME, 0, -1,
					    "integrity: manifest.json does not list %s and %s",
					    RT_MODEL, RT_CONFIG);
		if ((rc = check_file(b, mf, 1, NULL, err)))
			return rc;
	}
	if ((rc = nx_runtime_config_load(&b->rc, b->rootfd, RT_CONFIG, err)) ||
	    (rc = settings(b, err)))
		return rc;
	if (check && b->set.integrity_full &&
	    (!(b->hash = calloc(1, sizeof(*b->hash))) ||
	     !(b->hash->files = calloc(b->manifest->nfiles ? b->manifest->nfiles : 1,
				       sizeof(*b->hash->files)))))
		return nx_error_oom(err, NULL);
	for (i = 0; check && i < b->manifest->nfiles; i++) {
		mf = &b->manifest->files[i];
		if (!strcmp(mf->path, RT_CONFIG))
			continue;       /* hashed above */
		if ((rc = check_file(b, mf, b->set.integrity_full ? 2 : 0,
				     !strcmp(mf->path, RT_MODEL) ? &b->model_fd : NULL, err)))
			return rc;
	}
	/* the hashes run while the caller loads the model (the costly part of
	 * a start on a large model); rt_bundle_verified() gates every answer */
	if (b->hash && b->hash->n) {
		if ((rc = pthread_create(&b->hash->thread, NULL, hash_files, b->hash)))
			return nx_error_errno(err, NX_EIO, rc, NULL, "cannot start the integrity check");
		b->hash->started = true;
	}
	if (b->model_fd < 0 && (b->model_fd = open_beneath(b->rootfd, RT_MODEL)) < 0)
		return nx_error_errno(err, NX_EIO, errno, RT_MODEL, "cannot open %s", RT_MODEL);
	if (fstat(b->model_fd, &st) || !S_ISREG(st.st_mode) || st.st_size == 0)
		return nx_error_set(err, NX_EIO, RT_MODEL, 0, -1, "%s is not a model file", RT_MODEL);
	b->model_size = (uint64_t)st.st_size;
	if (!fstatat(b->rootfd, RT_MODEL_DATA, &st, AT_SYMLINK_NOFOLLOW) && S_ISREG(st.st_mode))
		b->data_size = (uint64_t)st.st_size;
	tokfd = openat(b->rootfd, RT_TOKENIZER, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (tokfd < 0)
		return nx_error_errno(err, NX_EIO, errno, RT_TOKENIZER, "cannot open %s", RT_TOKENIZER);
	rc = nx_tokenizer_load(&b->tok, tokfd, RT_TOKENIZER, err);
	close(tokfd);
	if (!rc && b->set.max_len < nx_tokenizer_special_count(b->tok) + 1)
		rc = nx_error_set(err, NX_ECONFIG, RT_CONFIG, 0, -1,
				  "%s: max_sequence_length %zu leaves no room for text", RT_CONFIG,
				  b->set.max_len);
	return rc;
}

void rt_bundle_release(struct rt_bundle *b)
{
	hashjob_free(b->hash);
	if (b->rootfd >= 0)
		close(b->rootfd);
	if (b->model_fd >= 0)
		close(b->model_fd);
	nx_tokenizer_free(b->tok);
	nx_manifest_free(b->manifest);
	nx_runtime_config_free(b->rc);
	memset(b, 0, sizeof(*b));
	b->rootfd = b->model_fd = -1;
}
