/*
 * export_ext.h - the external-data location rule of export_ext.c, the one
 * part of the exporter another folder uses: the teacher fingerprint
 * (fingerprint.c) follows a teacher model's external data by the same rule.
 * Everything else of export stays in export_int.h.
 */
#ifndef NEXUS_EXPORT_EXT_H
#define NEXUS_EXPORT_EXT_H

/* An open of a relative path below dirfd that follows no symlink (-errno
 * on failure).  The location rule itself is nx_onnx_location_problem. */
int nx_export__open_beneath(int dirfd, const char *path, int *out);

#endif
