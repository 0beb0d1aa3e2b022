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

int nx_fp__torch_zip(nx_fp_set *set, int fd, const char *path, uint64_t size, size_t min,
		 nx_error *err)
{
	unsigned char h[CDH_SIZE], lfh[LFH_SIZE];
	unsigned char *var = NULL;
	uint64_t cd_off = 0, count = 0, pos, k;
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
		if (memchr(var, '\0', nlen) || !storage_name((char *)var))
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
		if (method != 0)
			set->compressed++;
		(void)usize;
		if (csize < min)
			continue;
		/* a storage's type is in the pickle, not read: one of 4-byte
		 * elements may be float32, so its casts are recorded too */
		if ((rc = nx_fp__add_range(set, (char *)var, method == 0 && csize % 4 == 0, fd, data,
				       csize, min, path, err)) != 0)
			goto out;
	}
out:
	free(var);
	return rc;
}
