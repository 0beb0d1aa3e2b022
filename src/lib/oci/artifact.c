/*
 * artifact.c - the OCI artifact of a bundle (docs/FORMAT.md §8): one image
 * manifest whose layers are manifest.json and then every file of files[],
 * each a raw blob whose digest is the file's SHA-256 as the signed manifest
 * lists it.  The JSON is compact with sorted keys (jansson JSON_COMPACT |
 * JSON_SORT_KEYS), built only from manifest.json, so one bundle always gives
 * one manifest digest.
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "nexus/oci.h"
#include "nexus/bundle.h"

#define DUMP_FLAGS (JSON_COMPACT | JSON_SORT_KEYS)

/* ModelPack layer types by where a file lives in the bundle (FORMAT.md §1). */
static const struct {
	const char *prefix; /* a directory with '/', or a whole path */
	const char *media;
} media_rules[] = {
	{NX_BUNDLE_TOKENIZER_DIR "/", "application/vnd.cncf.model.weight.config.v1.raw"},
	{"model/", "application/vnd.cncf.model.weight.v1.raw"},
	{"config/", "application/vnd.cncf.model.weight.config.v1.raw"},
	{"README.md", "application/vnd.cncf.model.doc.v1.raw"},
	{"LICENSE", "application/vnd.cncf.model.doc.v1.raw"},
	{NX_BUNDLE_NOTICES, "application/vnd.cncf.model.doc.v1.raw"},
	{"bin/", "application/vnd.cncf.model.code.v1.raw"},
	{"lib/", "application/vnd.cncf.model.code.v1.raw"},
	{"src/", "application/vnd.cncf.model.code.v1.raw"},
};

const char *nx_oci_layer_media(const char *path)
{
	size_t i, n;

	for (i = 0; i < sizeof(media_rules) / sizeof(media_rules[0]); i++) {
		n = strlen(media_rules[i].prefix);
		if (media_rules[i].prefix[n - 1] == '/' ? !strncmp(path, media_rules[i].prefix, n)
							: !strcmp(path, media_rules[i].prefix))
			return media_rules[i].media;
	}
	return "application/vnd.cncf.model.code.v1.raw";
}

static json_t *descriptor(const char *media, const unsigned char sha[NX_SHA256_LEN],
			  uint64_t size, const char *title)
{
	char hex[2 * NX_SHA256_LEN + 1], digest[8 + sizeof(hex)];
	json_t *d;

	nx_hex(hex, sha);
	snprintf(digest, sizeof(digest), "sha256:%s", hex);
	d = json_pack("{s:s, s:s, s:I}", "mediaType", media, "digest", digest, "size",
		      (json_int_t)size);
	if (d && title &&
	    json_object_set_new(d, "annotations", json_pack("{s:s, s:s}", NX_OCI_TITLE, title,
							    NX_OCI_FILEPATH, title)))
		return json_decref(d), NULL;
	return d;
}

static char *lower(const char *s)
{
	char *o = strdup(s), *p;

	for (p = o; p && *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	return o;
}

/* ModelPack's config: descriptor, config, modelfs (its required part). */
static json_t *model_config(const nx_manifest *m, const unsigned char msha[NX_SHA256_LEN])
{
	json_t *diff = json_array(), *c = NULL;
	char hex[2 * NX_SHA256_LEN + 1], id[8 + sizeof(hex)], *fmt = lower(m->format);
	size_t i;

	if (!diff || !fmt)
		goto out;
	for (i = 0; i <= m->nfiles; i++) {
		nx_hex(hex, i ? m->files[i - 1].sha256 : msha);
		snprintf(id, sizeof(id), "sha256:%s", hex);
		if (json_array_append_new(diff, json_string(id)))
			goto out;
	}
	c = json_pack("{s:{s:s, s:s}, s:{s:s, s:s, s:s, s:s}, s:{s:s, s:O}}",
		      "descriptor", "createdAt", m->build_timestamp, "name", m->bundle_id,
		      "config", "architecture", m->architecture, "format", fmt,
		      "paramSize", m->parameters, "quantization", m->quantization,
		      "modelfs", "type", "layers", "diffIds", diff);
out:
	json_decref(diff);
	free(fmt);
	return c;
}

int nx_oci_artifact(char **out_manifest, size_t *out_manifest_len, char **out_config,
		    size_t *out_config_len, const nx_manifest *m, const char *mjson,
		    size_t mlen, nx_error *err)
{
	unsigned char msha[NX_SHA256_LEN], csha[NX_SHA256_LEN];
	json_t *cfg = NULL, *layers = NULL, *root = NULL;
	char *cjson = NULL, *ojson = NULL;
	size_t i;
	int rc = NX_ENOMEM;

	if (nx_sha256_buf(msha, mjson, mlen))
		return nx_error_set(err, NX_EINTERNAL, NULL, 0, -1, "sha-256 failed");
	if (!(cfg = model_config(m, msha)) || !(cjson = json_dumps(cfg, DUMP_FLAGS)))
		goto out;
	if (nx_sha256_buf(csha, cjson, strlen(cjson))) {
		rc = nx_error_set(err, NX_EINTERNAL, NULL, 0, -1, "sha-256 failed");
		goto out;
	}
	if (!(layers = json_array()) ||
	    json_array_append_new(layers, descriptor(NX_OCI_NEXUS_MANIFEST_MEDIA, msha, mlen,
						     NX_MANIFEST_NAME)))
		goto out;
	for (i = 0; i < m->nfiles; i++)
		if (json_array_append_new(layers, descriptor(nx_oci_layer_media(m->files[i].path),
							     m->files[i].sha256, m->files[i].size,
							     m->files[i].path)))
			goto out;
	root = json_pack("{s:i, s:s, s:s, s:o, s:O, s:{s:s}}", "schemaVersion", 2,
			 "mediaType", NX_OCI_MANIFEST_MEDIA, "artifactType", NX_OCI_ARTIFACT_TYPE,
			 "config", descriptor(NX_OCI_CONFIG_MEDIA, csha, strlen(cjson), NULL),
			 "layers", layers, "annotations", NX_OCI_CREATED, m->build_timestamp);
	if (!root || !(ojson = json_dumps(root, DUMP_FLAGS)))
		goto out;
	*out_manifest_len = strlen(ojson);
	*out_manifest = ojson;
	*out_config_len = strlen(cjson);
	*out_config = cjson;
	ojson = cjson = NULL;
	rc = 0;
out:
	if (rc == NX_ENOMEM)
		nx_error_set(err, NX_ENOMEM, NULL, 0, -1, "out of memory building the oci manifest");
	json_decref(cfg);
	json_decref(layers);
	json_decref(root);
	free(cjson);
	free(ojson);
	return rc;
}
