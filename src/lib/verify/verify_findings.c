/* verify_findings.c - the rows of nexus/findings.def, by code. */
#include "nexus/findings.h"

#include <stddef.h>

static const struct nx_finding_kind kinds[NX_F__COUNT] = {
#define NX_FINDING(name, code, check, sev, summary) [NX_F_##name] = {code, check, NX_SEV_##sev, summary},
#include "nexus/findings.def"
#undef NX_FINDING
};

const struct nx_finding_kind *nx_finding_kind(enum nx_finding_code c)
{
	return (unsigned)c < NX_F__COUNT ? &kinds[c] : NULL;
}

const char *nx_finding_name(enum nx_finding_code c)
{
	return (unsigned)c < NX_F__COUNT ? kinds[c].code : "?";
}
