/*
 * cmd_diff.c - `nexus diff A B`: two bundles compared by their manifests
 * (files added, removed, changed), their recorded metadata, and their
 * models tensor by tensor (name, dtype, shape, SHA-256 of the contents).
 * Exit status as diff(1): 0 the same, 1 different, 2 and up errors.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"
#include "nexus/onnx.h"
#include "nexus/pack.h"

enum { OPT_JSON = 1 };

static const struct cli_opt opts[] = {
	{"json", 0, NULL, "print the differences as one JSON document (schema nexus.diff.v1)",
	 OPT_JSON},
	{0},
};

/* The differences, collected as JSON whether or not they are printed so. */
struct diff {
	json_t *added, *removed, *changed;        /* files */
	json_t *meta;                             /* [{key, a, b}] */
	json_t *t_added, *t_removed, *t_changed;  /* tensors */
	size_t n;
};

static json_t *file_json(const struct nx_manifest_file *f)
{
	char hex[2 * NX_SHA256_LEN + 1], mode[8];

	nx_hex(hex, f->sha256);
	snprintf(mode, sizeof(mode), "%04o", nx_manifest_file_mode(f));
	return json_pack("{s:s, s:I, s:s, s:s}", "path", f->path, "size_bytes",
			 (json_int_t)f->size, "mode", mode, "sha256", hex);
}

static void files(struct diff *d, const nx_manifest *a, const nx_manifest *b)
{
	size_t i = 0, j = 0;

	while (i < a->nfiles || j < b->nfiles) {
		int c = i == a->nfiles ? 1 : j == b->nfiles ? -1 :
			strcmp(a->files[i].path, b->files[j].path);

		if (c < 0) {
			json_array_append_new(d->removed, file_json(&a->files[i++]));
		} else if (c > 0) {
			json_array_append_new(d->added, file_json(&b->files[j++]));
		} else {
			const struct nx_manifest_file *x = &a->files[i++], *y = &b->files[j++];

			if (x->size != y->size || memcmp(x->sha256, y->sha256, NX_SHA256_LEN) ||
			    nx_manifest_file_mode(x) != nx_manifest_file_mode(y))
				json_array_append_new(d->changed, json_pack("{s:s, s:o, s:o}", "path",
					x->path, "a", file_json(x), "b", file_json(y)));
			else
				continue;
		}
		d->n++;
	}
}

static void meta(struct diff *d, const char *key, const char *a, const char *b)
{
	if (strcmp(a, b) == 0)
		return;
	json_array_append_new(d->meta, json_pack("{s:s, s:s, s:s}", "key", key, "a", a, "b", b));
	d->n++;
}

static void metadata(struct diff *d, const nx_bundle_desc *x, const nx_bundle_desc *y,
		     json_t *tx, json_t *ty)
{
	const nx_manifest *a = x->manifest, *b = y->manifest;
	const char *keys[] = { "policy", "runtime" };
	size_t i;

	meta(d, "schema_version", a->schema_version, b->schema_version);
	meta(d, "bundle_id", a->bundle_id, b->bundle_id);
	meta(d, "build_timestamp", a->build_timestamp, b->build_timestamp);
	meta(d, "model_metadata.architecture", a->architecture, b->architecture);
	meta(d, "model_metadata.parameters", a->parameters, b->parameters);
	meta(d, "model_metadata.format", a->format, b->format);
	meta(d, "model_metadata.quantization", a->quantization, b->quantization);
	meta(d, "signature.key_id", x->keyid, y->keyid);
	for (i = 0; i < 2; i++) {
		json_t *va = json_object_get(tx, keys[i]), *vb = json_object_get(ty, keys[i]);
		char *sa, *sb;

		if ((!va && !vb) || (va && vb && json_equal(va, vb)))
			continue;
		sa = va ? json_dumps(va, JSON_COMPACT | JSON_SORT_KEYS) : strdup("(none)");
		sb = vb ? json_dumps(vb, JSON_COMPACT | JSON_SORT_KEYS) : strdup("(none)");
		if (sa && sb)
			meta(d, keys[i], sa, sb);
		free(sa);
		free(sb);
	}
}

static json_t *shape_json(const struct nx_onnx_tensor *t)
{
	json_t *a = json_array();
	size_t i;

	for (i = 0; i < t->ndims; i++)
		json_array_append_new(a, json_integer(t->dims[i]));
	return a;
}

static json_t *tensor_json(const struct nx_bundle_tensor *bt)
{
	char hex[2 * NX_SHA256_LEN + 1] = "";

	if (bt->hashed)
		nx_hex(hex, bt->sha256);
	return json_pack("{s:s, s:s, s:o, s:s}", "name", bt->t->name, "dtype",
			 nx_onnx_dtype_name(bt->t->data_type), "shape", shape_json(bt->t),
			 "sha256", hex);
}

static bool same_shape(const struct nx_onnx_tensor *a, const struct nx_onnx_tensor *b)
{
	return a->ndims == b->ndims && !memcmp(a->dims, b->dims, a->ndims * sizeof(*a->dims));
}

static void tensor_pair(struct diff *d, const struct nx_bundle_tensor *x,
			const struct nx_bundle_tensor *y)
{
	json_t *what = json_array();

	if (x->t->data_type != y->t->data_type)
		json_array_append_new(what, json_string("dtype"));
	if (!same_shape(x->t, y->t))
		json_array_append_new(what, json_string("shape"));
	if (x->hashed != y->hashed || memcmp(x->sha256, y->sha256, NX_SHA256_LEN))
		json_array_append_new(what, json_string("contents"));
	if (!json_array_size(what)) {
		json_decref(what);
		return;
	}
	json_array_append_new(d->t_changed, json_pack("{s:s, s:o, s:o, s:o}", "name", x->t->name,
		"differs", what, "a", tensor_json(x), "b", tensor_json(y)));
	d->n++;
}

static void tensors(struct diff *d, const nx_bundle_desc *a, const nx_bundle_desc *b)
{
	size_t i = 0, j = 0;

	while (i < a->ntensors || j < b->ntensors) {
		int c = i == a->ntensors ? 1 : j == b->ntensors ? -1 :
			strcmp(a->tensors[i].t->name, b->tensors[j].t->name);

		if (c < 0)
			json_array_append_new(d->t_removed, tensor_json(&a->tensors[i++]));
		else if (c > 0)
			json_array_append_new(d->t_added, tensor_json(&b->tensors[j++]));
		else {
			tensor_pair(d, &a->tensors[i++], &b->tensors[j++]);
			continue;
		}
		d->n++;
	}
}

static void print_shape(json_t *shape)
{
	size_t i;

	printf("[");
	for (i = 0; i < json_array_size(shape); i++)
		printf("%s%lld", i ? ", " : "", (long long)json_integer_value(json_array_get(shape, i)));
	printf("]");
}

static void print_text(const struct diff *d, const char *a, const char *b)
{
	json_t *e;
	size_t i, k;

	if (!d->n) {
		printf("%s and %s are the same bundle\n", a, b);
		return;
	}
	printf("--- %s\n+++ %s\n", a, b);
	json_array_foreach(d->removed, i, e)
		printf("file    - %s\n", json_string_value(json_object_get(e, "path")));
	json_array_foreach(d->added, i, e)
		printf("file    + %s\n", json_string_value(json_object_get(e, "path")));
	json_array_foreach(d->changed, i, e) {
		json_t *x = json_object_get(e, "a"), *y = json_object_get(e, "b");
		char sa[NX_SIZE_STR_MAX], sb[NX_SIZE_STR_MAX];

		nx_size_str(sa, (uint64_t)json_integer_value(json_object_get(x, "size_bytes")));
		nx_size_str(sb, (uint64_t)json_integer_value(json_object_get(y, "size_bytes")));
		printf("file    ~ %s (%s -> %s, sha256 %.12s -> %.12s", json_string_value(json_object_get(e, "path")),
		       sa, sb, json_string_value(json_object_get(x, "sha256")),
		       json_string_value(json_object_get(y, "sha256")));
		if (strcmp(json_string_value(json_object_get(x, "mode")),
			   json_string_value(json_object_get(y, "mode"))))
			printf(", mode %s -> %s", json_string_value(json_object_get(x, "mode")),
			       json_string_value(json_object_get(y, "mode")));
		printf(")\n");
	}
	json_array_foreach(d->meta, i, e)
		printf("meta    ~ %s: %s -> %s\n", json_string_value(json_object_get(e, "key")),
		       json_string_value(json_object_get(e, "a")),
		       json_string_value(json_object_get(e, "b")));
	json_array_foreach(d->t_removed, i, e)
		printf("tensor  - %s\n", json_string_value(json_object_get(e, "name")));
	json_array_foreach(d->t_added, i, e)
		printf("tensor  + %s\n", json_string_value(json_object_get(e, "name")));
	json_array_foreach(d->t_changed, i, e) {
		json_t *x = json_object_get(e, "a"), *y = json_object_get(e, "b"), *w;

		printf("tensor  ~ %s:", json_string_value(json_object_get(e, "name")));
		json_array_foreach(json_object_get(e, "differs"), k, w) {
			const char *what = json_string_value(w);

			printf("%s %s ", k ? "," : "", what);
			if (!strcmp(what, "shape")) {
				print_shape(json_object_get(x, "shape"));
				printf(" -> ");
				print_shape(json_object_get(y, "shape"));
			} else {
				const char *key = strcmp(what, "dtype") ? "sha256" : "dtype";

				printf("%.12s -> %.12s", json_string_value(json_object_get(x, key)),
				       json_string_value(json_object_get(y, key)));
			}
		}
		printf("\n");
	}
	printf("%zu difference%s\n", d->n, d->n == 1 ? "" : "s");
}

static int run(const struct cli_verb *verb, int argc, char **argv)
{
	struct diff d = { .added = json_array(), .removed = json_array(), .changed = json_array(),
			  .meta = json_array(), .t_added = json_array(), .t_removed = json_array(),
			  .t_changed = json_array() };
	nx_bundle_desc *x = NULL, *y = NULL;
	json_t *tx = NULL, *ty = NULL;
	struct cli_parser p;
	bool json = false;
	nx_error err;
	int k, status;

	cli_init(&p, verb, argc, argv);
	while ((k = cli_next(&p)) > 0)
		json |= k == OPT_JSON;
	if (k < 0) {
		status = k == -1 ? 0 : 2;
		goto out;
	}
	if (p.npos != 2) {
		status = cli_usage(verb, "expected two BUNDLE directories");
		goto out;
	}
	nx_error_clear(&err);
	if (nx_bundle_describe(&x, p.pos[0], NULL, 0, true, &err) ||
	    nx_bundle_describe(&y, p.pos[1], NULL, 0, true, &err)) {
		status = cli_fail(verb->name, &err);
		goto out;
	}
	tx = cli_manifest_tree(p.pos[0]);
	ty = cli_manifest_tree(p.pos[1]);
	files(&d, x->manifest, y->manifest);
	metadata(&d, x, y, tx, ty);
	tensors(&d, x, y);
	if (json) {
		status = cli_oci_print_json(json_pack("{s:s, s:s, s:s, s:b, s:I, s:{s:O, s:O, s:O}, s:O,"
						      " s:{s:O, s:O, s:O}}",
			"schema", "nexus.diff.v1", "a", p.pos[0], "b", p.pos[1], "same", d.n == 0,
			"differences", (json_int_t)d.n,
			"files", "added", d.added, "removed", d.removed, "changed", d.changed,
			"metadata", d.meta,
			"tensors", "added", d.t_added, "removed", d.t_removed, "changed", d.t_changed));
	} else {
		print_text(&d, p.pos[0], p.pos[1]);
		status = fflush(stdout) ? 3 : 0;
	}
	if (!status && d.n)
		status = 1;
out:
	json_decref(tx);
	json_decref(ty);
	json_decref(d.added);
	json_decref(d.removed);
	json_decref(d.changed);
	json_decref(d.meta);
	json_decref(d.t_added);
	json_decref(d.t_removed);
	json_decref(d.t_changed);
	nx_bundle_desc_free(x);
	nx_bundle_desc_free(y);
	return status;
}

const struct cli_verb cmd_diff = {
	.name = "diff",
	.args = "A B",
	.summary = "compare two bundles: files, model metadata, tensors (exit 1 when they differ)",
	.details =
	"Compares the manifests (files added, removed, changed in size, SHA-256 or\n"
	"mode), the metadata they record (build timestamp, model_metadata, key id,\n"
	"policy, runtime), and the two models initializer by initializer: added,\n"
	"removed, or changed in dtype, shape or contents (a SHA-256 of each tensor's\n"
	"elements, so two encodings of the same values compare equal).  The files\n"
	"are not verified here: run 'nexus verify' for that.  Exit status as diff(1):\n"
	"0 the same, 1 different, 2 usage error, 3 a bundle cannot be read.",
	.opts = opts,
	.run = run,
};
