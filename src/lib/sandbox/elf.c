/*
 * elf.c - PT_INTERP / DT_NEEDED / DT_RUNPATH of ELF64 files and the load
 * closure of a set of binaries (nexus/elf.h).  Only headers, the dynamic
 * section and its string table are read, each range checked against the
 * file size first.
 */
#include "nexus/elf.h"
#include "nexus/fs.h"
#include "nexus/manifest.h"   /* nx_manifest_glibc_cmp */

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int pread_exact(int fd, void *buf, size_t len, uint64_t off, uint64_t fsize,
		       const char *path, nx_error *err)
{
	ssize_t got;

	if (off > fsize || len > fsize - off)
		return nx_error_set(err, NX_EFORMAT, path, 0, (long long)off,
				    "%s: ELF range of %zu bytes at %llu lies outside the file",
				    path, len, (unsigned long long)off);
	if ((got = nx_pread_full(fd, buf, len, off)) < 0)
		return nx_error_errno(err, NX_EIO, errno, path, "cannot read %s", path);
	if ((size_t)got < len)
		return nx_error_set(err, NX_EFORMAT, path, 0, (long long)(off + (uint64_t)got),
				    "%s ended early; was it changed while being read?", path);
	return 0;
}

/* File offset of virtual address addr through the PT_LOAD segments. */
static int vaddr_to_off(uint64_t *out, const Elf64_Phdr *ph, size_t n, uint64_t addr)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (ph[i].p_type != PT_LOAD)
			continue;
		if (addr >= ph[i].p_vaddr && addr - ph[i].p_vaddr < ph[i].p_filesz) {
			*out = ph[i].p_offset + (addr - ph[i].p_vaddr);
			return 0;
		}
	}
	return -1;
}

static char *str_at(const char *tab, size_t len, uint64_t off)
{
	if (off >= len || !memchr(tab + off, '\0', len - off))
		return NULL;
	return strdup(tab + off);
}

/*
 * The version needs (DT_VERNEED, DT_VERNEEDNUM entries at vaddr): the
 * highest GLIBC_<digits.digits...> they name goes to out->glibc.  Each
 * entry and its aux list are read at checked offsets; the walk is capped.
 */
static int read_verneed(struct nx_elf_info *out, int fd, uint64_t fsize, const Elf64_Phdr *ph,
			size_t nph, uint64_t vaddr, uint64_t count, const char *strtab,
			size_t strsz, const char *path, nx_error *err)
{
	uint64_t off, i, seen = 0;
	int rc;

	if (vaddr_to_off(&off, ph, nph, vaddr) != 0)
		return nx_error_set(err, NX_EFORMAT, path, 0, -1,
				    "%s: DT_VERNEED is not in a loaded segment", path);
	for (i = 0; i < count; i++) {
		Elf64_Verneed vn;
		uint64_t aoff, j;

		if ((rc = pread_exact(fd, &vn, sizeof(vn), off, fsize, path, err)))
			return rc;
		aoff = off + vn.vn_aux;
		for (j = 0; j < vn.vn_cnt; j++) {
			Elf64_Vernaux va;
			const char *name;

			if (++seen > NX_ELF_VERNEED_MAX)
				return nx_error_set(err, NX_ELIMIT, path, 0, -1,
						    "%s has more than %d version needs", path,
						    NX_ELF_VERNEED_MAX);
			if ((rc = pread_exact(fd, &va, sizeof(va), aoff, fsize, path, err)))
				return rc;
			if (va.vna_name >= strsz || !memchr(strtab + va.vna_name, '\0',
							    strsz - va.vna_name))
				return nx_error_set(err, NX_EFORMAT, path, 0, -1,
						    "%s: a version name lies outside the string table",
						    path);
			name = strtab + va.vna_name;
			if (!strncmp(name, "GLIBC_", 6) && name[6] >= '0' && name[6] <= '9' &&
			    strlen(name + 6) < sizeof(out->glibc) &&
			    (!out->glibc[0] || nx_manifest_glibc_cmp(name + 6, out->glibc) > 0))
				memcpy(out->glibc, name + 6, strlen(name + 6) + 1);
			if (!va.vna_next)
				break;
			aoff += va.vna_next;
		}
		if (!vn.vn_next)
			break;
		off += vn.vn_next;
	}
	return 0;
}

/* Dynamic section: NEEDED names, RUNPATH/RPATH and the glibc needed into *out. */
static int read_dynamic(struct nx_elf_info *out, int fd, uint64_t fsize, const Elf64_Phdr *ph,
			size_t nph, const Elf64_Phdr *dynph, const char *path, nx_error *err)
{
	Elf64_Dyn *dyn = NULL;
	char *strtab = NULL;
	uint64_t ndyn = dynph->p_filesz / sizeof(Elf64_Dyn), stroff = 0, strsz = 0, straddr = 0;
	uint64_t runpath = UINT64_MAX, rpath = UINT64_MAX, verneed = 0, nverneed = 0;
	bool have_strtab = false;
	size_t i;
	int rc;

	if (ndyn > NX_ELF_DYN_MAX)
		return nx_error_set(err, NX_ELIMIT, path, 0, -1,
				    "%s has more than %d dynamic entries", path, NX_ELF_DYN_MAX);
	dyn = calloc(ndyn ? ndyn : 1, sizeof(*dyn));
	if (!dyn)
		return nx_error_set(err, NX_ENOMEM, path, 0, -1, "out of memory reading %s", path);
	rc = pread_exact(fd, dyn, ndyn * sizeof(*dyn), dynph->p_offset, fsize, path, err);
	if (rc)
		goto out;
	for (i = 0; i < ndyn && dyn[i].d_tag != DT_NULL; i++) {
		switch (dyn[i].d_tag) {
		case DT_STRTAB: straddr = dyn[i].d_un.d_ptr; have_strtab = true; break;
		case DT_STRSZ: strsz = dyn[i].d_un.d_val; break;
		case DT_RUNPATH: runpath = dyn[i].d_un.d_val; break;
		case DT_RPATH: rpath = dyn[i].d_un.d_val; break;
		case DT_NEEDED: out->nneeded++; break;
		case DT_VERNEED: verneed = dyn[i].d_un.d_ptr; break;
		case DT_VERNEEDNUM: nverneed = dyn[i].d_un.d_val; break;
		default: break;
		}
	}
	ndyn = i;
	if (out->nneeded > NX_ELF_NEEDED_MAX) {
		rc = nx_error_set(err, NX_ELIMIT, path, 0, -1, "%s needs more than %d libraries",
				  path, NX_ELF_NEEDED_MAX);
		goto out;
	}
	if (!out->nneeded && runpath == UINT64_MAX && rpath == UINT64_MAX) {
		rc = 0;
		goto out;
	}
	if (!have_strtab || vaddr_to_off(&stroff, ph, nph, straddr) != 0 || strsz == 0) {
		rc = nx_error_set(err, NX_EFORMAT, path, 0, -1,
				  "%s: dynamic string table missing or not in a loaded segment", path);
		goto out;
	}
	if (strsz > NX_ELF_STRTAB_MAX) {
		rc = nx_error_set(err, NX_ELIMIT, path, 0, -1,
				  "%s: dynamic string table larger than %u bytes", path,
				  NX_ELF_STRTAB_MAX);
		goto out;
	}
	strtab = malloc(strsz);
	out->needed = calloc(out->nneeded + 1, sizeof(char *));
	if (!strtab || !out->needed) {
		rc = nx_error_set(err, NX_ENOMEM, path, 0, -1, "out of memory reading %s", path);
		goto out;
	}
	rc = pread_exact(fd, strtab, strsz, stroff, fsize, path, err);
	if (rc)
		goto out;
	out->nneeded = 0;
	for (i = 0; i < ndyn; i++) {
		char *s;

		if (dyn[i].d_tag != DT_NEEDED)
			continue;
		s = str_at(strtab, strsz, dyn[i].d_un.d_val);
		if (!s) {
			rc = nx_error_set(err, NX_EFORMAT, path, 0, -1,
					  "%s: DT_NEEDED string outside the string table", path);
			goto out;
		}
		out->needed[out->nneeded++] = s;
	}
	if (runpath != UINT64_MAX || rpath != UINT64_MAX) {
		out->runpath = str_at(strtab, strsz, runpath != UINT64_MAX ? runpath : rpath);
		if (!out->runpath) {
			rc = nx_error_set(err, NX_EFORMAT, path, 0, -1,
					  "%s: DT_RUNPATH string outside the string table", path);
			goto out;
		}
	}
	rc = nverneed ? read_verneed(out, fd, fsize, ph, nph, verneed, nverneed, strtab, strsz,
				     path, err) : 0;
out:
	free(strtab);
	free(dyn);
	return rc;
}

int nx_elf_read(struct nx_elf_info *out, int fd, const char *path, nx_error *err)
{
	struct nx_elf_info info = {0};
	Elf64_Ehdr eh;
	Elf64_Phdr *ph = NULL;
	const Elf64_Phdr *dynph = NULL;
	struct stat st;
	size_t i;
	int rc;

	if (!path)
		path = "ELF file";
	if (fstat(fd, &st) != 0)
		return nx_error_errno(err, NX_EIO, errno, path, "cannot stat %s", path);
	if (!S_ISREG(st.st_mode))
		return nx_error_set(err, NX_EFORMAT, path, 0, -1, "%s is not a regular file", path);
	rc = pread_exact(fd, &eh, sizeof(eh), 0, (uint64_t)st.st_size, path, err);
	if (rc)
		return rc;
	if (memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64 ||
	    eh.e_ident[EI_DATA] != ELFDATA2LSB)
		return nx_error_set(err, NX_EFORMAT, path, 0, 0,
				    "%s is not a little-endian ELF64 file", path);
	if (eh.e_phnum && eh.e_phentsize != sizeof(Elf64_Phdr))
		return nx_error_set(err, NX_EFORMAT, path, 0, -1,
				    "%s: unexpected program header size %u", path, eh.e_phentsize);
	if (eh.e_phnum > NX_ELF_PHDR_MAX)
		return nx_error_set(err, NX_ELIMIT, path, 0, -1,
				    "%s has more than %d program headers", path, NX_ELF_PHDR_MAX);
	info.type = eh.e_type;
	info.machine = eh.e_machine;
	ph = calloc(eh.e_phnum ? eh.e_phnum : 1, sizeof(*ph));
	if (!ph)
		return nx_error_set(err, NX_ENOMEM, path, 0, -1, "out of memory reading %s", path);
	rc = pread_exact(fd, ph, (size_t)eh.e_phnum * sizeof(*ph), eh.e_phoff,
			 (uint64_t)st.st_size, path, err);
	if (rc)
		goto out;
	for (i = 0; i < eh.e_phnum; i++) {
		if (ph[i].p_type == PT_DYNAMIC && !dynph)
			dynph = &ph[i];
		if (ph[i].p_type != PT_INTERP || info.interp)
			continue;
		if (ph[i].p_filesz < 2 || ph[i].p_filesz > NX_ELF_PATH_MAX) {
			rc = nx_error_set(err, NX_EFORMAT, path, 0, -1,
					  "%s: PT_INTERP of %llu bytes", path,
					  (unsigned long long)ph[i].p_filesz);
			goto out;
		}
		info.interp = calloc(1, ph[i].p_filesz + 1);
		if (!info.interp) {
			rc = nx_error_set(err, NX_ENOMEM, path, 0, -1, "out of memory reading %s", path);
			goto out;
		}
		rc = pread_exact(fd, info.interp, ph[i].p_filesz, ph[i].p_offset,
				 (uint64_t)st.st_size, path, err);
		if (rc)
			goto out;
		if (strlen(info.interp) != ph[i].p_filesz - 1) {
			rc = nx_error_set(err, NX_EFORMAT, path, 0, (long long)ph[i].p_offset,
					  "%s: PT_INTERP is not one NUL-terminated string", path);
			goto out;
		}
	}
	if (dynph) {
		rc = read_dynamic(&info, fd, (uint64_t)st.st_size, ph, eh.e_phnum, dynph, path, err);
		if (rc)
			goto out;
	}
	*out = info;
	memset(&info, 0, sizeof(info));
	rc = 0;
out:
	nx_elf_info_release(&info);
	free(ph);
	return rc;
}

void nx_elf_info_release(struct nx_elf_info *info)
{
	size_t i;

	if (!info)
		return;
	free(info->interp);
	for (i = 0; info->needed && i < info->nneeded; i++)
		free(info->needed[i]);
	free(info->needed);
	free(info->runpath);
	memset(info, 0, sizeof(*info));
}

void nx_elf_closure_free(char **paths, size_t n)
{
	size_t i;

	for (i = 0; paths && i < n; i++)
		free(paths[i]);
	free(paths);
}
