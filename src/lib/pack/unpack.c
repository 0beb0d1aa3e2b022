/*
 * unpack.c - `nexus unpack`: an archive of nexus pack, treated as untrusted
 * transport (nexus/pack.h): manifest.json first decides what may follow,
 * every member streams into a stage with a running SHA-256 under its
 * declared size, the stage gets the manifest's modes, is verified and
 * published atomically.
 */
#include "pack_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define UNPACK_BUF (1u << 20)
/* Declared bytes up to this are not held to NX_PACK_RATIO_MAX: a small
 * bundle of empty or tiny files may well compress further. */
#define UNPACK_RATIO_FLOOR (1u << 20)

struct unpacker {
	const struct nx_pack__ar *ar;
	struct archive *a;
	const char *archive;
	nx_error *err;
	char *buf;
};

static int ar_fail(struct unpacker *u, const char *what)
{
	const char *why = u->ar->error_string(u->a);

	return nx_error_set(u->err, NX_EFORMAT, u->archive, 0, -1,
			    "%s: %s: %s; nothing was unpacked", u->archive, what,
			    why ? why : "not a nexus pack archive");
}

/* The next member's header, which must be a plain regular file with a size. */
static int next_member(struct unpacker *u, struct archive_entry **ent, bool *end)
{
	const struct nx_pack__ar *ar = u->ar;
	const char *name;
	int r = ar->read_next_header(u->a, ent);

	*end = r == ARCHIVE_EOF;
	if (*end)
		return 0;
	if (r != ARCHIVE_OK)
		return ar_fail(u, "cannot read the next member");
	name = ar->entry_pathname(*ent);
	if (!name)
		return nx_error_set(u->err, NX_EFORMAT, u->archive, 0, -1,
				    "%s: a member has no name; nothing was unpacked", u->archive);
	if (ar->entry_hardlink(*ent) || ar->entry_symlink(*ent) ||
	    ar->entry_filetype(*ent) != AE_IFREG)
		return nx_error_set(u->err, NX_EUNSAFE, u->archive, 0, -1,
				    "%s: member '%.256s' is %s, not a regular file: bundles hold "
				    "regular files only; nothing was unpacked", u->archive, name,
				    ar->entry_hardlink(*ent) ? "a hard link" :
				    ar->entry_symlink(*ent) ? "a symbolic link" :
				    ar->entry_filetype(*ent) == AE_IFDIR ? "a directory" :
				    "a special file");
	if (!ar->entry_size_is_set(*ent) || ar->entry_size(*ent) < 0)
		return nx_error_set(u->err, NX_EFORMAT, u->archive, 0, -1,
				    "%s: member '%.256s' has no size; nothing was unpacked",
				    u->archive, name);
	return 0;
}

/* Exactly size bytes of the current member into fd (or buf when fd < 0),
 * and nothing more. */
static int member_data(struct unpacker *u, int fd, char *buf, uint64_t size, const char *name,
		       nx_hash_follow *h)
{
	uint64_t got = 0;

	for (;;) {
		la_ssize_t n = u->ar->read_data(u->a, u->buf, UNPACK_BUF);

		if (n < 0)
			return ar_fail(u, "cannot read a member's data (a truncated or damaged "
				       "archive)");
		if (n == 0)
			break;
		if ((uint64_t)n > size - got)
			return nx_error_set(u->err, NX_ELIMIT, u->archive, 0, -1,
					    "%s: member %s holds more than the %llu bytes its manifest "
					    "declares; nothing was unpacked", u->archive, name,
					    (unsigned long long)size);
		if (buf) {
			memcpy(buf + got, u->buf, (size_t)n);
		} else {
			const char *p = u->buf;
			size_t left = (size_t)n;

			while (left) {
				ssize_t w = write(fd, p, left);

				if (w < 0 && errno == EINTR)
					continue;
				if (w < 0)
					return nx_error_errno(u->err, NX_EIO, errno, name,
							      "cannot write %s", name);
				p += w;
				left -= (size_t)w;
			}
		}
		got += (uint64_t)n;
		if (h)
			nx_hash_follow_advance(h, got);
	}
	if (got != size)
		return nx_error_set(u->err, NX_EFORMAT, u->archive, 0, -1,
				    "%s: member %s ends after %llu of its %llu bytes (a truncated "
				    "archive); nothing was unpacked", u->archive, name,
				    (unsigned long long)got, (unsigned long long)size);
	return 0;
}

/* The first member: manifest.json, read and parsed. */
static int read_manifest(struct unpacker *u, nx_manifest **m, char **mjson, size_t *mlen)
{
	struct archive_entry *ent;
	uint64_t size;
	bool end;
	int rc;

	if ((rc = next_member(u, &ent, &end)))
		return rc;
	if (end || strcmp(u->ar->entry_pathname(ent), NX_MANIFEST_NAME))
		return nx_error_set(u->err, NX_EFORMAT, u->archive, 0, -1,
				    "%s: the first member must be manifest.json (an archive made by "
				    "nexus pack); nothing was unpacked", u->archive);
	size = (uint64_t)u->ar->entry_size(ent);
	if (size > NX_MANIFEST_MAX)
		return nx_error_set(u->err, NX_ELIMIT, u->archive, 0, -1,
				    "%s: manifest.json is larger than %u bytes; nothing was unpacked",
				    u->archive, NX_MANIFEST_MAX);
	if (!(*mjson = malloc((size_t)size + 1)))
		return nx_error_oom(u->err, u->archive);
	if ((rc = member_data(u, -1, *mjson, size, NX_MANIFEST_NAME, NULL)))
		return rc;
	*mlen = (size_t)size;
	return nx_manifest_parse(m, *mjson, *mlen, NX_MANIFEST_NAME, u->err);
}

/* The declared sizes against the caps, before a byte is written. */
static int check_sizes(struct unpacker *u, const nx_manifest *m, uint64_t archive_bytes,
		       uint64_t max_bytes, uint64_t *total)
{
	uint64_t sum = 0;
	size_t i;

	for (i = 0; i < m->nfiles; i++) {
		if (m->files[i].size > max_bytes - sum)
			return nx_error_set(u->err, NX_ELIMIT, u->archive, 0, -1,
					    "%s: its manifest declares more than %llu bytes in all "
					    "(--max-size); nothing was unpacked", u->archive,
					    (unsigned long long)max_bytes);
		sum += m->files[i].size;
	}
	if (sum > UNPACK_RATIO_FLOOR && sum / NX_PACK_RATIO_MAX > archive_bytes)
		return nx_error_set(u->err, NX_ELIMIT, u->archive, 0, -1,
				    "%s: %llu bytes would unpack from a %llu-byte archive, more than "
				    "%u times its size (a decompression bomb?); nothing was unpacked",
				    u->archive, (unsigned long long)sum,
				    (unsigned long long)archive_bytes, NX_PACK_RATIO_MAX);
	*total = sum;
	return 0;
}

/* Every other member: listed, once, with its declared size and digest. */
static int read_members(struct unpacker *u, const nx_manifest *m, nx_stage *st)
{
	bool *seen = calloc(m->nfiles + 1, sizeof(*seen)), end = false;
	struct archive_entry *ent;
	size_t i;
	int rc = 0, fd = -1;

	if (!seen)
		return nx_error_oom(u->err, u->archive);
	while (!rc) {
		const struct nx_manifest_file *f;
		unsigned char md[NX_SHA256_LEN];
		nx_hash_follow *h = NULL;
		const char *name;
		nx_error pe;

		if ((rc = next_member(u, &ent, &end)) || end)
			break;
		name = u->ar->entry_pathname(ent);
		if (nx_manifest_path_check(name, &pe)) {
			rc = nx_error_set(u->err, NX_EUNSAFE, u->archive, 0, -1,
					  "%s: %s; nothing was unpacked", u->archive, pe.message);
			break;
		}
		f = nx_manifest_find(m, name);
		if (!f || seen[f - m->files]) {
			rc = nx_error_set(u->err, NX_EUNSAFE, u->archive, 0, -1,
					  "%s: member %s %s; nothing was unpacked", u->archive, name,
					  f ? "appears twice" : "is not listed in its manifest.json");
			break;
		}
		seen[f - m->files] = true;
		if ((uint64_t)u->ar->entry_size(ent) != f->size) {
			rc = nx_error_set(u->err, NX_ELIMIT, u->archive, 0, -1,
					  "%s: member %s is %lld bytes, its manifest declares %llu; "
					  "nothing was unpacked", u->archive, name,
					  (long long)u->ar->entry_size(ent),
					  (unsigned long long)f->size);
			break;
		}
		if ((rc = nx_stage_create_file(&fd, st, f->path, nx_manifest_file_mode(f) == 0555,
					       u->err)) ||
		    (rc = nx_hash_follow_start(&h, fd, f->path, u->err)))
			break;
		rc = member_data(u, fd, NULL, f->size, f->path, h);
		if (rc)
			nx_hash_follow_cancel(h);
		else if (!(rc = nx_hash_follow_finish(h, f->size, md, u->err)) &&
			 memcmp(md, f->sha256, NX_SHA256_LEN))
			rc = nx_error_set(u->err, NX_ECHECK, u->archive, 0, -1,
					  "%s: member %s does not have the SHA-256 its manifest "
					  "records; nothing was unpacked", u->archive, name);
		close(fd);
		fd = -1;
	}
	if (fd >= 0)
		close(fd);
	for (i = 0; !rc && i < m->nfiles; i++)
		if (!seen[i])
			rc = nx_error_set(u->err, NX_EFORMAT, u->archive, 0, -1,
					  "%s: %s is listed in its manifest but not in the archive "
					  "(a truncated archive?); nothing was unpacked", u->archive,
					  m->files[i].path);
	free(seen);
	return rc;
}

int nx_unpack(struct nx_unpack_result *out, const char *archive, const char *out_dir,
	      const struct nx_unpack_opts *o, nx_error *err)
{
	struct unpacker u = { .archive = archive, .err = err };
	struct nx_unpack_result res = { 0 };
	nx_manifest *m = NULL;
	nx_stage *st = NULL;
	nx_report *rep = NULL;
	char *mjson = NULL;
	size_t mlen = 0;
	struct stat sb;
	int fd = -1, rc;

	if ((rc = nx_pack__ar(&u.ar, err)))
		return rc;
	fd = open(archive, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
		rc = fd < 0 ? nx_error_errno(err, NX_EIO, errno, archive, "cannot open %s", archive)
			    : nx_error_set(err, NX_EUSAGE, archive, 0, -1,
					   "%s is not a regular file", archive);
		goto out;
	}
	if (!(u.buf = malloc(UNPACK_BUF)) || !(u.a = u.ar->read_new())) {
		rc = nx_error_oom(err, archive);
		goto out;
	}
	/* tar only (pax, ustar, GNU), plain or zstd: nothing else is a nexus pack */
	if (u.ar->read_support_format_tar(u.a) != ARCHIVE_OK ||
	    u.ar->read_support_filter_zstd(u.a) != ARCHIVE_OK ||
	    u.ar->read_open_fd(u.a, fd, 64 << 10) != ARCHIVE_OK) {
		rc = ar_fail(&u, "cannot open the archive");
		goto out;
	}
	if ((rc = read_manifest(&u, &m, &mjson, &mlen)) ||
	    (rc = check_sizes(&u, m, (uint64_t)sb.st_size,
			      o->max_bytes ? o->max_bytes : NX_PACK_MAX_BYTES_DEFAULT, &res.bytes)) ||
	    (rc = nx_stage_create(&st, out_dir, o->force, err)))
		goto out;
	if (o->on_stage)
		o->on_stage(o->stage_ctx, st);
	if ((rc = read_members(&u, m, st)) ||
	    (rc = nx_verify_publish(&rep, st, mjson, mlen, out_dir, "unpacked", o->verify, err)))
		goto out;
	res.files = m->nfiles + 1;
	res.bytes += mlen;
out:
	if (o->on_stage && st)
		o->on_stage(o->stage_ctx, NULL);
	nx_stage_free(st);
	if (u.a)
		u.ar->read_free(u.a);
	if (fd >= 0)
		close(fd);
	if (out) {
		res.report = rep;
		rep = NULL;
		if (!rc || res.report)
			*out = res;
	}
	nx_report_free(rep);
	nx_manifest_free(m);
	free(mjson);
	free(u.buf);
	return rc;
}
