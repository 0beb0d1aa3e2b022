/*
 * elf_platform.c - the platform a bundle's runtime needs (nexus/elf.h,
 * nx_elf_platform): read from its ELF files, so the manifest's "platform"
 * is a fact of the packaged bytes, never a setting.
 */
#include "nexus/elf.h"
#include "nexus/manifest.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

/* e_machine as the kernel's uname -m spells it; the machines glibc and
 * ONNX Runtime ship for on Linux. */
static const struct { uint16_t machine; const char *name; } machines[] = {
	{ EM_X86_64, "x86_64" }, { EM_AARCH64, "aarch64" }, { EM_PPC64, "ppc64le" },
	{ EM_S390, "s390x" }, { EM_RISCV, "riscv64" },
};

int nx_elf_platform(char arch[NX_ELF_ARCH_MAX], char glibc[NX_ELF_GLIBC_MAX], int dirfd,
		    const struct nx_manifest *m, nx_error *err)
{
	char need[NX_ELF_GLIBC_MAX] = "2.2.5";
	const char *name = NULL;
	uint16_t machine = 0;
	size_t i, k;
	int rc = 0;

	for (i = 0; !rc && i < m->nfiles; i++) {
		const char *p = m->files[i].path;
		struct nx_elf_info info = {0};
		int fd;

		if (!nx_manifest_is_runtime_path(p) || !strcmp(p, NX_BUNDLE_NOTICES))
			continue;
		fd = openat(dirfd, p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		if (fd < 0)
			return nx_error_errno(err, NX_EIO, errno, p, "cannot open %s", p);
		rc = nx_elf_read(&info, fd, p, err);
		close(fd);
		if (rc)
			return rc;
		if (info.glibc[0] && nx_manifest_glibc_cmp(info.glibc, need) > 0)
			memcpy(need, info.glibc, sizeof(need));
		if (machine && info.machine != machine)
			rc = nx_error_set(err, NX_EFORMAT, p, 0, -1,
					  "%s is for another machine (ELF e_machine %u) than the "
					  "runtime's other files (%u)", p, info.machine, machine);
		machine = info.machine;
		if (!strcmp(p, NX_BUNDLE_CLI))
			for (k = 0; k < sizeof(machines) / sizeof(machines[0]); k++)
				if (machines[k].machine == info.machine)
					name = machines[k].name;
		nx_elf_info_release(&info);
	}
	if (!rc && !name)
		rc = nx_error_set(err, NX_EFORMAT, NX_BUNDLE_CLI, 0, -1,
				  "%s is missing or for a machine nexus has no name for",
				  NX_BUNDLE_CLI);
	if (rc)
		return rc;
	memcpy(arch, name, strlen(name) + 1);
	memcpy(glibc, need, sizeof(need));
	return 0;
}
