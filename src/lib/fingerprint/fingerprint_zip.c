/*
 * fingerprint_zip.c - the storage records of a PyTorch zip checkpoint.
 *
 * torch.save writes a zip whose "<archive>/data/<n>" entries are the raw
 * bytes of each storage, stored uncompressed.  The central directory (zip64
 * when large) is read with bounded preads; nothing is decompressed and no
 * pickle is ever interpreted.
 */
#include "fingerprint_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define EOCD_SIZE 22
#define EOCD_SEARCH (65535 + EOCD_SIZE)
#define CDH_SIZE 46
#define LFH_SIZE 30

static uint16_t le16(const unsigned char *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const unsigned char *p)
{
	return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

static int bad(const char *path, uint64_t off, const char *what, nx_error *err)
{
	return nx_error_set(err, NX_EFORMAT, path, 0, (long long)off,
			    "%s: not a valid PyTorch zip checkpoint: %s", path, what);
}

static int rd(int fd, void *buf, size_t len, uint64_t off, const char *path, uint64_t size,
	      nx_error *err)
{
	ssize_t n;

	if (off > size || len > size - off)
		return bad(path, off, "a record runs past the end of the file", err);
	n = nx_pread_full(fd, buf, len, off);
	if (n < 0)
		return nx_error_errno(err, NX_EIO, errno, path, "cannot read %s", path);
	if ((size_t)n != len)
		return bad(path, off, "the file is truncated", err);
	return 0;
}

/* "<archive>/data/<digits>" */
static bool storage_name(const char *name)
{
	const char *d = strstr(name, "/data/");

	if (!d || d == name || memchr(name, '/', (size_t)(d - name)))
		return false;
	d += 6;
	if (!*d)
		return false;
	for (; *d; d++)
		if (*d < '0' || *d > '9')
			return false;
	return true;
}

/* Locate the central directory: offset and number of entries. */
static int find_cd(int fd, const char *path, uint64_t size, uint64_t *cd_off, uint64_t *count,
		   nx_error *err)
{
	size_t n = size < EOCD_SEARCH ? (size_t)size : EOCD_SEARCH;
	unsigned char *tail = malloc(n), loc[20], e64[56];
	uint64_t base = size - n;
	size_t i;
	int rc;

	if (!tail)
		return nx_error_oom(err, NULL);
	if ((rc = rd(fd, tail, n, base, path, size, err)) != 0)
		goto out;
	rc = bad(path, size, "no end of central directory record", err);
	for (i = n >= EOCD_SIZE ? n - EOCD_SIZE + 1 : 0; i-- > 0;) {
		if (le32(tail + i) != 0x06054b50)
			continue;
		*count = le16(tail + i + 10);
		*cd_off = le32(tail + i + 16);
		rc = 0;
		if (*count != 0xffff && *cd_off != 0xffffffffu)
			break;
		/* zip64: the locator sits just before the record */
		if (base + i < 20) {
			rc = bad(path, base + i, "zip64 locator missing", err);
			break;
		}
		if ((rc = rd(fd, loc, sizeof(loc), base + i - 20, path, size, err)) != 0)
			break;
		if (le32(loc) != 0x07064b50) {
			rc = bad(path, base + i - 20, "zip64 locator missing", err);
			break;
		}
		if ((rc = rd(fd, e64, sizeof(e64), le64(loc + 8), path, size, err)) != 0)
			break;
		if (le32(e64) != 0x06064b50) {
			rc = bad(path, le64(loc + 8), "bad zip64 end record", err);
			break;
		}
		*count = le64(e64 + 32);
		*cd_off = le64(e64 + 48);
		break;
	}
out:
	free(tail);
	return rc;
}

/* "<archive>/data.pkl" */
static bool pickle_name(const char *name)
{
	const char *d = strchr(name, '/');

	return d && d != name && !strcmp(d, "/data.pkl");
}

struct record {
	char *name;
	uint64_t data, size;
	bool stored;         /* not compressed */
};

static int cmp_dtype(const void *a, const void *b)
{
	return strcmp(((const struct nx_fp__dtype *)a)->key, ((const struct nx_fp__dtype *)b)->key);
}

/* The storages' element types from the pickle at [off, off + len), sorted
 * by key; none when it is compressed or over FP_PICKLE_MAX (then every
 * storage is read as before: its bytes, cast when it may be float32). */
static int pickle_dtypes(int fd, const char *path, uint64_t size, const struct record *pk,
			 size_t nrecs, unsigned char **bufp, struct nx_fp__dtype **out,
			 size_t *nout, nx_error *err)
{
	unsigned char *buf;
	int rc;

	*out = NULL;
	*nout = 0;
	if (!pk || !pk->stored || pk->size > FP_PICKLE_MAX)
		return 0;
	if (!(*bufp = buf = malloc(pk->size ? pk->size : 1)))
		return nx_error_oom(err, NULL);
	if (!(rc = rd(fd, buf, pk->size, pk->data, path, size, err)) &&
	    !(rc = nx_fp__pickle_dtypes(buf, pk->size, nrecs, out, nout, err)) && *nout)
		qsort(*out, *nout, sizeof(**out), cmp_dtype);
	return rc;
}

/* "<state-dict key> (<record>)", when the pickle names it in plain ASCII;
 * else a copy of the record's name. */
static char *label(const char *record, const struct nx_fp__dtype *t)
{
	size_t i, n = strlen(record) + 4 + (t ? t->nname : 0);
	char *out = malloc(n);

	if (!out)
		return NULL;
	for (i = 0; t && i < t->nname; i++)
		if (t->name[i] < 0x20 || t->name[i] > 0x7e)
			break;
	if (t && t->nname && i == t->nname)
		snprintf(out, n, "%.*s (%s)", (int)t->nname, t->name, record);
	else
		snprintf(out, n, "%s", record);
	return out;
}

/* A storage record: its bytes, cast when it is (or, its type unknown, may
 * be) float32, widened when it is float16 or bfloat16. */
static int storage(nx_fp_set *set, int fd, const char *path, const struct record *r,
		   const struct nx_fp__dtype *dt, size_t ndt, size_t min, nx_error *err)
{
	struct nx_fp__dtype key;
	const struct nx_fp__dtype *t = NULL;
	const char *k = strstr(r->name, "/data/") + 6;
	struct tensors w = { set, NULL, nx_fp__add_cb, set, min, NULL, 0, NULL, NULL, NULL };
	char *name;
	int rc = 0;

	if (strlen(k) < sizeof(key.key)) {
		memcpy(key.key, k, strlen(k) + 1);
		t = ndt ? bsearch(&key, dt, ndt, sizeof(*dt), cmp_dtype) : NULL;
	}
	if (!(name = label(r->name, t)))
		return nx_error_oom(err, NULL);
	if (r->size >= nx_fp__floor(min))
		rc = nx_fp__add_range(set, name, r->stored && (t ? t->dtype == 1 : r->size % 4 == 0),
				      fd, r->data, r->size, min, path, err);
	if (!rc && r->stored && t && (t->dtype == 10 || t->dtype == 16))
		rc = nx_fp__add_widened(&w, name, t->dtype, fd, path, NULL, r->data, r->size, err);
	if (!rc && r->stored)
		rc = nx_fp__corr_teacher(set, name, t ? t->dtype : r->size % 4 ? 0 : 1, fd, path,
					 r->data, r->size, err);
	/* no shape here: one row (the row blocks of a tensor whose rows are
	 * multiples of 64 long) */
	if (!rc && r->stored)
		rc = nx_fp__units_teacher(set, name, t ? t->dtype : r->size % 4 ? 0 : 1, fd, path,
					  r->data, r->size, NULL, 0, err);
	free(name);
	return rc;
}

int nx_fp__torch_zip(nx_fp_set *set, int fd, const char *path, uint64_t size, size_t min,
		 nx_error *err)
{
	unsigned char h[CDH_SIZE], lfh[LFH_SIZE];
	unsigned char *var = NULL;
	uint64_t cd_off = 0, count = 0, pos, k;
	struct record *recs = NULL, pk = { NULL, 0, 0, false };
	struct nx_fp__dtype *dt = NULL;
	unsigned char *pkbuf = NULL;
	size_t nrecs = 0, caprecs = 0, ndt = 0, i;
	bool havepk = false;
	int rc;

	if ((rc = find_cd(fd, path, size, &cd_off, &count, err)) != 0)
		return rc;
	if (count > NX_FP_ZIP_ENTRIES_MAX)
		return nx_error_set(err, NX_ELIMIT, path, 0, -1, "%s: more than %u zip entries",
				    path, NX_FP_ZIP_ENTRIES_MAX);
	if (!(var = malloc(65536 * 2 + 1)))
		return nx_error_oom(err, NULL);
	for (pos = cd_off, k = 0; k < count; k++) {
		uint16_t method, nlen, elen, clen;
		uint64_t csize, usize, lho, data, e;
		bool pkl;

		if ((rc = rd(fd, h, sizeof(h), pos, path, size, err)) != 0)
			goto out;
		if (le32(h) != 0x02014b50) {
			rc = bad(path, pos, "bad central directory entry", err);
			goto out;
		}
		method = le16(h + 10);
		csize = le32(h + 20);
		usize = le32(h + 24);
		nlen = le16(h + 28);
		elen = le16(h + 30);
		clen = le16(h + 32);
		lho = le32(h + 42);
		if ((rc = rd(fd, var, (size_t)nlen + elen, pos + CDH_SIZE, path, size, err)) != 0)
			goto out;
		/* zip64 extra field (id 1): the 0xffffffff values, in order */
		for (e = nlen; e + 4 <= (uint64_t)nlen + elen;) {
			uint16_t id = le16(var + e), len = le16(var + e + 2);
			unsigned char *p = var + e + 4, *end = p + len;

			if (e + 4 + len > (uint64_t)nlen + elen)
				break;
			if (id == 1) {
				if (usize == 0xffffffffu && p + 8 <= end)
					usize = le64(p), p += 8;
				if (csize == 0xffffffffu && p + 8 <= end)
					csize = le64(p), p += 8;
				if (lho == 0xffffffffu && p + 8 <= end)
					lho = le64(p);
			}
			e += 4 + (uint64_t)len;
		}
		var[nlen] = '\0';
		pos += CDH_SIZE + (uint64_t)nlen + elen + clen;
		if (memchr(var, '\0', nlen))
			continue;
		pkl = !havepk && pickle_name((char *)var);
		if (!pkl && !storage_name((char *)var))
			continue;
		if ((rc = rd(fd, lfh, sizeof(lfh), lho, path, size, err)) != 0)
			goto out;
		if (le32(lfh) != 0x04034b50) {
			rc = bad(path, lho, "bad local file header", err);
			goto out;
		}
		data = lho + LFH_SIZE + le16(lfh + 26) + le16(lfh + 28);
		if (data > size || csize > size - data) {
			rc = bad(path, lho, "an entry runs past the end of the file", err);
			goto out;
		}
		(void)usize;
		if (pkl) {
			pk = (struct record){ NULL, data, csize, method == 0 };
			havepk = true;
			continue;
		}
		if (method != 0)
			set->compressed++;
		/* read after the pickle, which may come later in the directory */
		if (NX_ARRAY_PUSH(recs, caprecs, nrecs) || !(recs[nrecs].name = strdup((char *)var))) {
			rc = nx_error_oom(err, NULL);
			goto out;
		}
		recs[nrecs].data = data;
		recs[nrecs].size = csize;
		recs[nrecs].stored = method == 0;
		nrecs++;
	}
	if ((rc = pickle_dtypes(fd, path, size, havepk ? &pk : NULL, nrecs, &pkbuf, &dt, &ndt,
				err)) != 0)
		goto out;
	for (i = 0; i < nrecs && !rc; i++)
		rc = storage(set, fd, path, &recs[i], dt, ndt, min, err);
out:
	for (i = 0; i < nrecs; i++)
		free(recs[i].name);
	free(recs);
	free(dt);
	free(pkbuf);
	free(var);
	return rc;
}
