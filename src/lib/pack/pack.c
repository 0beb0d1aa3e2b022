/*
 * pack.c - `nexus pack`: a bundle into one deterministic POSIX tar
 * (nexus/pack.h, docs/FORMAT.md §9), optionally zstd-compressed.
 */
#include "pack_int.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#define PACK_BUF (1u << 20)

struct packer {
	const struct nx_pack__ar *ar;
	struct archive *a;
	struct archive_entry *ent;
	time_t mtime;
	char *buf;
	const char *bundle;
	nx_error *err;
};

static int ar_fail(struct packer *p, const char *what)
{
	return nx_error_set(p->err, NX_EIO, p->bundle, 0, -1, "cannot %s: %s", what,
			    p->ar->error_string(p->a) ?
			    p->ar->error_string(p->a) : "libarchive error");
}

/* "2026-11-27T01:02:03Z" (checked by the manifest parser) as a time_t. */
static time_t build_time(const char *ts)
{
	struct tm tm;

	memset(&tm, 0, sizeof(tm));
	if (!strptime(ts, "%Y-%m-%dT%H:%M:%SZ", &tm))
		return 0;
	return timegm(&tm);
}

static int header(struct packer *p, const char *path, uint64_t size, unsigned mode)
{
	const struct nx_pack__ar *ar = p->ar;

	ar->entry_clear(p->ent);
	ar->entry_set_pathname(p->ent, path);
	ar->entry_set_filetype(p->ent, AE_IFREG);
	ar->entry_set_perm(p->ent, mode);
	ar->entry_set_size(p->ent, (la_int64_t)size);
	ar->entry_set_mtime(p->ent, p->mtime, 0);
	if (ar->write_header(p->a, p->ent) != ARCHIVE_OK)
		return ar_fail(p, "write an archive header");
	return 0;
}

static int data(struct packer *p, const void *buf, size_t len)
{
	if (len && p->ar->write_data(p->a, buf, len) != (la_ssize_t)len)
		return ar_fail(p, "write to the archive");
	return 0;
}

/* One listed file: its bytes, never past the manifest's size, with the
 * SHA-256 compared at the end. */
static int member(struct packer *p, int dirfd, const struct nx_manifest_file *f)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	EVP_MD_CTX *ctx = NULL;
	struct stat st;
	uint64_t left;
	int fd = -1, rc;

	if ((rc = nx_fs_open_regular(&fd, &st, dirfd, f->path, UINT64_MAX, p->err)))
		return rc;
	if ((uint64_t)st.st_size != f->size) {
		rc = nx_error_set(p->err, NX_ECHECK, p->bundle, 0, -1,
				  "%s/%s is %llu bytes, the manifest says %llu: the bundle does not "
				  "match its manifest (nexus verify %s says more); nothing was written",
				  p->bundle, f->path, (unsigned long long)st.st_size,
				  (unsigned long long)f->size, p->bundle);
		goto out;
	}
	if (!(ctx = EVP_MD_CTX_new()) || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)) {
		rc = nx_error_oom(p->err, f->path);
		goto out;
	}
	if ((rc = header(p, f->path, f->size, nx_manifest_file_mode(f))))
		goto out;
	for (left = f->size; left > 0;) {
		ssize_t n = read(fd, p->buf, left < PACK_BUF ? (size_t)left : PACK_BUF);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = nx_error_errno(p->err, NX_EIO, n ? errno : EIO, p->bundle,
					    "cannot read %s/%s", p->bundle, f->path);
			goto out;
		}
		EVP_DigestUpdate(ctx, p->buf, (size_t)n);
		if ((rc = data(p, p->buf, (size_t)n)))
			goto out;
		left -= (uint64_t)n;
	}
	EVP_DigestFinal_ex(ctx, md, NULL);
	if (memcmp(md, f->sha256, NX_SHA256_LEN))
		rc = nx_error_set(p->err, NX_ECHECK, p->bundle, 0, -1,
				  "%s/%s does not have the SHA-256 its manifest records: the bundle "
				  "does not match its manifest (nexus verify %s says more); nothing "
				  "was written", p->bundle, f->path, p->bundle);
out:
	EVP_MD_CTX_free(ctx);
	if (fd >= 0)
		close(fd);
	return rc;
}

static int write_archive(struct packer *p, int outfd, int dirfd, const nx_manifest *m,
			 const char *mjson, size_t mlen, const struct nx_pack_opts *o)
{
	const struct nx_pack__ar *ar = p->ar;
	char level[48];
	size_t i;
	int rc;

	if (!(p->a = ar->write_new()) || !(p->ent = ar->entry_new()))
		return nx_error_oom(p->err, p->bundle);
	if (ar->write_set_format_pax_restricted(p->a) != ARCHIVE_OK)
		return ar_fail(p, "set the tar format");
	if (o->zstd_level > 0) {
		snprintf(level, sizeof(level), "%d", o->zstd_level);
		if (ar->write_add_filter_zstd(p->a) != ARCHIVE_OK ||
		    ar->write_set_filter_option(p->a, "zstd", "compression-level",
							level) != ARCHIVE_OK)
			return ar_fail(p, "set up zstd compression");
	}
	if (ar->write_open_fd(p->a, outfd) != ARCHIVE_OK)
		return ar_fail(p, "start the archive");
	/* manifest.json first: unpack reads it before any other member */
	if ((rc = header(p, NX_MANIFEST_NAME, mlen, 0444)) || (rc = data(p, mjson, mlen)))
		return rc;
	for (i = 0; i < m->nfiles; i++)
		if ((rc = member(p, dirfd, &m->files[i])))
			return rc;
	if (ar->write_close(p->a) != ARCHIVE_OK)
		return ar_fail(p, "finish the archive");
	return 0;
}

int nx_pack(struct nx_pack_result *out, const char *bundle, const char *out_file,
	    const struct nx_pack_opts *o, nx_error *err)
{
	struct packer p = { .bundle = bundle, .err = err };
	struct nx_pack_result res = { 0 };
	nx_manifest *m = NULL;
	char *mjson = NULL, *dcopy = NULL, tmp[PATH_MAX];
	size_t mlen = 0, i;
	struct stat st;
	unsigned rnd = 0;
	int dirfd = -1, outfd = -1, rc;

	if ((rc = nx_pack__ar(&p.ar, err)) ||
	    (rc = nx_pack__open_bundle(&dirfd, &m, bundle, err)) ||
	    (rc = nx_fs_read_all(&mjson, &mlen, dirfd, NX_MANIFEST_NAME, NX_MANIFEST_MAX, err)))
		goto out;
	if (!o->force && lstat(out_file, &st) == 0) {
		rc = nx_error_set(err, NX_EEXIST, out_file, 0, -1,
				  "%s exists; pass --force to replace it", out_file);
		goto out;
	}
	p.mtime = build_time(m->build_timestamp);
	if (!(p.buf = malloc(PACK_BUF)) || !(dcopy = strdup(out_file))) {
		rc = nx_error_oom(err, out_file);
		goto out;
	}
	(void)!getrandom(&rnd, sizeof(rnd), 0);
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s/.%s.nexus-pack.%ld.%08x", dirname(dcopy),
			     strrchr(out_file, '/') ? strrchr(out_file, '/') + 1 : out_file,
			     (long)getpid(), rnd) >= sizeof(tmp)) {
		rc = nx_error_set(err, NX_EUSAGE, out_file, 0, -1, "%s: path too long", out_file);
		goto out;
	}
	outfd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (outfd < 0) {
		rc = nx_error_errno(err, NX_EIO, errno, out_file, "cannot create %s", tmp);
		goto out;
	}
	if ((rc = write_archive(&p, outfd, dirfd, m, mjson, mlen, o)))
		goto out;
	if (fsync(outfd) != 0 || fstat(outfd, &st) != 0) {
		rc = nx_error_errno(err, NX_EIO, errno, out_file, "cannot write %s", out_file);
		goto out;
	}
	if (rename(tmp, out_file) != 0) {
		rc = nx_error_errno(err, NX_EIO, errno, out_file, "cannot rename %s to %s", tmp,
				    out_file);
		goto out;
	}
	tmp[0] = '\0';
	res.files = m->nfiles + 1;
	res.bytes = mlen;
	for (i = 0; i < m->nfiles; i++)
		res.bytes += m->files[i].size;
	res.archive_bytes = (uint64_t)st.st_size;
	if (out)
		*out = res;
out:
	if (p.a)
		p.ar->write_free(p.a);   /* closes nothing: the fd is ours */
	if (p.ent)
		p.ar->entry_free(p.ent);
	if (outfd >= 0)
		close(outfd);
	if (outfd >= 0 && tmp[0])
		unlink(tmp);
	if (dirfd >= 0)
		close(dirfd);
	nx_manifest_free(m);
	free(mjson);
	free(dcopy);
	free(p.buf);
	return rc;
}
