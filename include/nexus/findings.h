/*
 * nexus/findings.h - the finding codes of nexus verify as an enum, from
 * the one table nexus/findings.def (code, check, severity, summary).
 * docs/TRV.md explains every code; `make lint` checks the two agree.
 */
#ifndef NEXUS_FINDINGS_H
#define NEXUS_FINDINGS_H

#ifdef __cplusplus
extern "C" {
#endif

enum nx_severity { NX_SEV_INFO, NX_SEV_WARN, NX_SEV_FAIL };

/* NX_F_HASH_MISMATCH for "hash-mismatch", ... */
enum nx_finding_code {
#define NX_FINDING(name, code, check, sev, summary) NX_F_##name,
#include "nexus/findings.def"
#undef NX_FINDING
	NX_F__COUNT
};

/* One row of the table. */
struct nx_finding_kind {
	const char *code;          /* "hash-mismatch" */
	const char *check;         /* the check docs/TRV.md lists it under; "" for any */
	enum nx_severity severity; /* the usual severity; a call site may differ */
	const char *summary;
};

/* The row of c; NULL when c is not a code of the table. */
const struct nx_finding_kind *nx_finding_kind(enum nx_finding_code c);
/* The code's string ("hash-mismatch"); "?" when c is not a code. */
const char *nx_finding_name(enum nx_finding_code c);

#ifdef __cplusplus
}
#endif

#endif
