/*
 * export_ext.h - the external-data location rule of export_ext.c, the one
 * part of the exporter another folder uses: the teacher fingerprint
 * (fingerprint.c) follows a teacher model's external data by the same rule.
 * Everything else of export stays in export_int.h.
 */
#ifndef NEXUS_EXPORT_EXT_H
#define NEXUS_EXPORT_EXT_H

/* Why a location is refused (NULL when it is acceptable), and an open of a
 * relative path below dirfd that follows no symlink (-errno on failure). */
const char *ex_location_problem(const char *loc);
int ex_open_beneath(int dirfd, const char *path, int *out);

#endif
