/*
 * cmd_bundle.c - `nexus inspect BUNDLE` (a directory): files, sizes, model
 * summary, signature and key id, recorded policy and runtime, as text or
 * one JSON document (schema nexus.inspect-bundle.v1).
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "cli.h"
#include "nexus/onnx.h"
#include "nexus/pack.h"

/* manifest.json as a tree, for its policy and runtime objects verbatim
 * (nx_bundle_describe has parsed it strictly already). */
json_t *cli_manifest_tree(const char *path)
{
	char *p = NULL;
	json_t *j;

	if (asprintf(&p, "%s/%s", path, NX_MANIFEST_NAME) < 0)
		return NULL;
	j = json_load_file(p, JSON_REJECT_DUPLICATES, NULL);
	free(p);
	return j;
}

static const char *sig_text(const nx_bundle_desc *d, size_t nkeys)
{
	switch (d->sig) {
	case NX_SIG_VALID:
		return "valid (signed by a --pubkey key)";
	case NX_SIG_UNSIGNED:
		return "unsigned";
	case NX_SIG_UNKNOWN_KEY:
		return nkeys ? "signed by a key not among --pubkey" :
			       "signed, not checked (pass --pubkey to check it)";
	case NX_SIG_BAD_ENCODING:
		return "malformed signature";
	case NX_SIG_BAD_SIGNATURE:
		return "BAD signature (does not verify with the key it names)";
	}
	return "?";
}

static json_t *model_json(const nx_bundle_desc *d)
{
	const nx_onnx_summary *s;
	json_t *in = json_array(), *out = json_array();
	size_t i;

	if (!d->model)
		return json_pack("{s:s}", "error", d->model_error ? d->model_error : "");
	s = nx_onnx_summary_get(d->model);
	for (i = 0; i < s->ninputs; i++)
		json_array_append_new(in, cli_onnx_value_json(&s->inputs[i]));
	for (i = 0; i < s->noutputs; i++)
		json_array_append_new(out, cli_onnx_value_json(&s->outputs[i]));
	return json_pack("{s:I, s:I, s:s, s:I, s:I, s:o, s:o, s:s, s:I}",
			 "parameters", (json_int_t)s->parameters,
			 "weight_bytes", (json_int_t)s->weight_bytes,
			 "quantization", s->quantization,
			 "nodes", (json_int_t)s->nnodes,
			 "initializers", (json_int_t)d->ntensors,
			 "inputs", in, "outputs", out,
			 "producer", s->producer_name,
			 "ir_version", (json_int_t)s->ir_version);
}

static int print_json(const char *path, const nx_bundle_desc *d, size_t nkeys)
{
	const nx_manifest *m = d->manifest;
	json_t *tree = cli_manifest_tree(path), *files = json_array(), *doc;
	uint64_t total = 0;
	size_t i;

	for (i = 0; i < m->nfiles; i++) {
		char hex[2 * NX_SHA256_LEN + 1], mode[8];

		nx_hex(hex, m->files[i].sha256);
		snprintf(mode, sizeof(mode), "%04o", nx_manifest_file_mode(&m->files[i]));
		json_array_append_new(files, json_pack("{s:s, s:I, s:s, s:s}", "path",
			m->files[i].path, "size_bytes", (json_int_t)m->files[i].size, "mode", mode,
			"sha256", hex));
		total += m->files[i].size;
	}
	doc = json_pack("{s:s, s:s, s:s, s:s, s:s, s:{s:s, s:s, s:s, s:s}, s:o, s:I, s:o,"
			" s:{s:s, s:s, s:b}, s:O?, s:O?, s:O?}",
		"schema", "nexus.inspect-bundle.v1", "bundle", path,
		"schema_version", m->schema_version, "bundle_id", m->bundle_id,
		"build_timestamp", m->build_timestamp,
		"model_metadata", "architecture", m->architecture, "parameters", m->parameters,
		"format", m->format, "quantization", m->quantization,
		"files", files, "total_bytes", (json_int_t)total,
		"model", model_json(d),
		"signature", "status", nx_sig_status_code(d->sig), "key_id", d->keyid,
		"checked", nkeys > 0,
		"policy", tree ? json_object_get(tree, "policy") : NULL,
		"runtime", tree ? json_object_get(tree, "runtime") : NULL,
		"platform", tree ? json_object_get(tree, "platform") : NULL);
	json_decref(tree);
	return cli_oci_print_json(doc);
}

static void print_values(const char *what, const struct nx_onnx_value *v, size_t n)
{
	size_t i, k;

	for (i = 0; i < n; i++) {
		printf("  %-8s %s %s [", i ? "" : what, v[i].name, nx_onnx_dtype_name(v[i].elem_type));
		for (k = 0; k < v[i].ndims; k++) {
			if (v[i].dims[k] >= 0)
				printf("%s%lld", k ? ", " : "", (long long)v[i].dims[k]);
			else
				printf("%s%s", k ? ", " : "", v[i].dim_params && v[i].dim_params[k] ?
				       v[i].dim_params[k] : "?");
		}
		printf("]\n");
	}
}

static void print_text(const char *path, const nx_bundle_desc *d, size_t nkeys)
{
	const nx_manifest *m = d->manifest;
	const nx_manifest_policy *p = m->policy;
	uint64_t total = 0;
	char size[NX_SIZE_STR_MAX];
	size_t i;

	printf("bundle     %s\n  id       %s, built %s, manifest schema %s\n", path,
	       m->bundle_id, m->build_timestamp, m->schema_version);
	printf("model      %s, %s parameters, %s, quantization %s\n",
	       m->architecture[0] ? m->architecture : "(no architecture)", m->parameters,
	       m->format, m->quantization);
	if (d->model) {
		const nx_onnx_summary *s = nx_onnx_summary_get(d->model);

		nx_size_str(size, s->weight_bytes);
		printf("  onnx     %llu parameters in %zu initializers, %s of weights, %zu nodes\n",
		       (unsigned long long)s->parameters, d->ntensors, size, s->nnodes);
		print_values("inputs", s->inputs, s->ninputs);
		print_values("outputs", s->outputs, s->noutputs);
	} else {
		printf("  onnx     cannot be read: %s\n", d->model_error);
	}
	printf("signature  %s%s%s\n", sig_text(d, nkeys), d->keyid[0] ? ", key id " : "",
	       d->keyid);
	if (p) {
		char leak[NX_SIZE_STR_MAX];

		nx_size_str(size, p->max_model_bytes);
		nx_size_str(leak, p->max_leak_bytes);
		printf("policy     max_model_bytes %s, max_leak_bytes %s, size_slack %g, "
		       "selftest_tolerance %g, teacher files %llu\n", size, leak, p->size_slack,
		       p->selftest_tolerance, (unsigned long long)p->teacher_files);
		printf("  imports  forbidden:");
		for (i = 0; i < p->nforbidden_imports; i++)
			printf(" %s", p->forbidden_imports[i]);
		printf("\n");
	} else {
		printf("policy     none recorded (schema 1.0): verify applies its defaults\n");
	}
	if (m->runtime)
		printf("runtime    nexus %s (%zu files: bin/, lib/, %s)\n", m->runtime->version,
		       m->runtime->nfiles, NX_BUNDLE_NOTICES);
	if (m->platform)
		printf("platform   %s/%s, glibc %s or newer\n", m->platform->os, m->platform->arch,
		       m->platform->min_glibc);
	for (i = 0; i < m->nfiles; i++)
		total += m->files[i].size;
	nx_size_str(size, total);
	printf("files      %zu, %s (+ manifest.json)\n", m->nfiles, size);
	for (i = 0; i < m->nfiles; i++) {
		nx_size_str(size, m->files[i].size);
		printf("  %04o %10s  %s\n", nx_manifest_file_mode(&m->files[i]), size,
		       m->files[i].path);
	}
}

int cli_inspect_bundle(const char *path, bool json, nx_key *const *keys, size_t nkeys)
{
	nx_bundle_desc *d = NULL;
	nx_error err;
	int rc;

	nx_error_clear(&err);
	if (nx_bundle_describe(&d, path, keys, nkeys, false, &err))
		return cli_fail("inspect", &err);
	if (json) {
		rc = print_json(path, d, nkeys);
	} else {
		print_text(path, d, nkeys);
		rc = fflush(stdout) == 0 ? 0 : 3;
	}
	nx_bundle_desc_free(d);
	return rc;
}
