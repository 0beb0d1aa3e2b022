/* cmd_inspect.c - `nexus inspect MODEL.onnx [--json]`: an ONNX summary read
 * without loading the weights (nexus/onnx.h), plus what an export would
 * remove (nexus/export.h), and with --export-to the export itself. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "cli.h"
#include "nexus/export.h"
#include "nexus/fingerprint.h"
#include "nexus/onnx.h"
#include "nexus/sign.h"

enum { OPT_JSON = 1, OPT_OUTPUT, OPT_KEEP, OPT_FORBID, OPT_EXPORT, OPT_NO_EXTRACT,
       OPT_TEACHER, OPT_EXTERNAL, OPT_QUANTIZE, OPT_QEXCLUDE, OPT_QBLOCK, OPT_QTHREADS,
       OPT_PUBKEY };

static const struct cli_opt opts[] = {
	{ "json", 0, NULL, "print one JSON document instead of text", OPT_JSON },
	{ "output", 0, "NAME", "export: keep only what this output needs (repeatable)",
	  OPT_OUTPUT },
	{ "keep-metadata", 0, "KEY", "export: metadata_props key that survives (repeatable)",
	  OPT_KEEP },
	{ "forbid", 0, "TERM", "export: forbidden term besides teacher, distillation, "
	  "soft_targets (repeatable)", OPT_FORBID },
	{ "no-extract", 0, NULL, "export: keep every node (no output subgraph extraction)",
	  OPT_NO_EXTRACT },
	{ "teacher", 0, "PATH", "fingerprint: fail (exit 1) if a tensor of 4 KiB or more equals "
	  "one of this teacher file (ONNX, PyTorch zip, safetensors; repeatable)", OPT_TEACHER },
	{ "export-to", 0, "PATH", "write the exported model to PATH (must not exist); "
	  "external data goes beside it as " NX_EXPORT_DATA_NAME, OPT_EXPORT },
	{ "external-data", 0, "MODE", "export: auto (default: initializers of 64 KiB or more "
	  "go to the data file when the model is 64 MiB or more), always, never", OPT_EXTERNAL },
	{ "quantize", 0, "MODE", "export: none (default), int8 (MatMul and Gather weights), "
	  "int4 (MatMul weights in MatMulNBits blocks) or fp16 (float16 weights, float32 "
	  "compute), as export.quantize in nexus.yaml(5)",
	  OPT_QUANTIZE },
	{ "quantize-block", 0, "N", "export: int4 block size, 32 (default), 64 or 128", OPT_QBLOCK },
	{ "quantize-threads", 0, "N", "export: threads that quantize, 1 to 8 (default: one per "
	  "CPU, at most 8); the output is the same for any number", OPT_QTHREADS },
	{ "quantize-exclude", 0, "PATTERN", "export: node or initializer names kept in float "
	  "(fnmatch; repeatable)", OPT_QEXCLUDE },
	{ "pubkey", 0, "PUB", "a BUNDLE's signature: check it with this Ed25519 public key "
	  "(repeatable)", OPT_PUBKEY },
	{0},
};

#define INSPECT_LIST_MAX 64

struct export_args {
	const char *outputs[INSPECT_LIST_MAX], *keep[INSPECT_LIST_MAX], *forbid[INSPECT_LIST_MAX];
	const char *teachers[INSPECT_LIST_MAX], *qexclude[INSPECT_LIST_MAX];
	size_t noutputs, nkeep, nforbid, nteachers, nqexclude;
	int quantize;        /* enum nx_export_quantize */
	unsigned block;      /* --quantize-block, 0: default */
	unsigned threads;    /* --quantize-threads, 0: default */
	bool no_extract;
	enum nx_export_external external;
	bool ext_created;    /* the data file exists: remove it on failure */
	const char *to;
	int dirfd;           /* directory of the model */
	const char *base;    /* model file name in it */
	int ext_dirfd;       /* directory of --export-to */
};

/* The index of s in names (NULL-terminated), or -1. */
static int name_index(const char *const *names, const char *s)
{
	int i;

	for (i = 0; names[i]; i++)
		if (!strcmp(names[i], s))
			return i;
	return -1;
}

static void export_opts(struct nx_export_opts *o, const struct export_args *a)
{
	memset(o, 0, sizeof(*o));
	o->outputs = a->outputs;
	o->noutputs = a->noutputs;
	o->metadata_keep = a->keep;
	o->nmetadata_keep = a->nkeep;
	o->forbidden_terms = a->forbid;
	o->nforbidden_terms = a->nforbid;
	o->extract = !a->no_extract;
	o->strip_metadata = true;
	o->external = a->external;
	o->quantize = (enum nx_export_quantize)a->quantize;
	o->quantize_block = a->block;
	o->quantize_threads = a->threads;
	o->quantize_exclude = a->qexclude;
	o->nquantize_exclude = a->nqexclude;
	o->producer_version = NX_VERSION;
	o->ws_dirfd = a->dirfd;
	o->model_relpath = a->base;
}

static json_t *export_json(const struct nx_export_result *r)
{
	json_t *root = json_object(), *items = json_array();
	size_t i;

	for (i = 0; i < r->nremoved; i++)
		json_array_append_new(items, json_pack("{s:s, s:s, s:I, s:I}", "kind",
						       nx_export_what_name(r->removed[i].what),
						       "name", r->removed[i].name, "bytes",
						       (json_int_t)r->removed[i].bytes, "offset",
						       (json_int_t)r->removed[i].offset));
	json_object_set_new(root, "removed", items);
	json_object_set_new(root, "doc_strings", json_integer((json_int_t)r->doc_strings));
	json_object_set_new(root, "removed_bytes", json_integer((json_int_t)r->removed_bytes));
	json_object_set_new(root, "kept_nodes", json_integer((json_int_t)r->kept_nodes));
	json_object_set_new(root, "kept_initializers",
			    json_integer((json_int_t)r->kept_initializers));
	json_object_set_new(root, "external_tensors", json_integer((json_int_t)r->ext_tensors));
	json_object_set_new(root, "quantized_tensors", json_integer((json_int_t)r->quantized));
	json_object_set_new(root, "quantized_int4", json_integer((json_int_t)r->quantized_int4));
	json_object_set_new(root, "quantized_float_bytes",
			    json_integer((json_int_t)r->quant_float_bytes));
	json_object_set_new(root, "quantized_bytes", json_integer((json_int_t)r->quant_bytes));
	if (r->size) {
		char hex[2 * NX_SHA256_LEN + 1];

		nx_hex(hex, r->sha256);
		json_object_set_new(root, "sha256", json_string(hex));
		json_object_set_new(root, "size", json_integer((json_int_t)r->size));
		if (r->has_external) {
			nx_hex(hex, r->ext_sha256);
			json_object_set_new(root, "data_sha256", json_string(hex));
			json_object_set_new(root, "data_size", json_integer((json_int_t)r->ext_size));
		}
	}
	return root;
}

/* The preview never fails inspect: an export error is shown as such. */
static json_t *preview_json(int fd, const char *path, const struct export_args *a)
{
	struct nx_export_opts o;
	struct nx_export_result r;
	nx_error err;
	json_t *j;

	export_opts(&o, a);
	nx_error_clear(&err);
	if (nx_export_plan(&r, fd, path, &o, &err) != 0)
		return json_pack("{s:{s:s, s:s, s:I}}", "error", "code", nx_error_name(err.code),
				 "message", err.message, "offset", (json_int_t)err.offset);
	j = export_json(&r);
	nx_export_result_release(&r);
	return j;
}

static int ext_open(void *ctx, int *out_fd, nx_error *err)
{
	struct export_args *a = ctx;
	int fd = openat(a->ext_dirfd, NX_EXPORT_DATA_NAME,
			O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);

	if (fd < 0)
		return nx_error_errno(err, NX_EIO, errno, NX_EXPORT_DATA_NAME,
				      "cannot create %s beside the export", NX_EXPORT_DATA_NAME);
	a->ext_created = true;
	*out_fd = fd;
	return 0;
}

static int do_export(int fd, const char *path, struct export_args *a, bool json)
{
	struct nx_export_opts o;
	struct nx_export_result r;
	nx_error err;
	char *dir = strdup(a->to), *slash, ext_name[4096];
	int out = -1, rc;

	nx_error_clear(&err);
	if (!dir)
		return 3;
	slash = strrchr(dir, '/');
	if (slash)
		*slash = '\0';
	a->ext_dirfd = open(slash ? (dir[0] ? dir : "/") : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	/* errors name the data file where the user will look for it */
	snprintf(ext_name, sizeof(ext_name), "%s%s%s", slash ? dir : "", slash ? "/" : "",
		 NX_EXPORT_DATA_NAME);
	free(dir);
	if (a->ext_dirfd < 0) {
		nx_error_errno(&err, NX_EIO, errno, a->to, "cannot open the directory of %s", a->to);
		return cli_fail("inspect", &err);
	}
	out = open(a->to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (out < 0) {
		nx_error_errno(&err, errno == EEXIST ? NX_EEXIST : NX_EIO, errno, a->to,
			       "cannot create %s", a->to);
		rc = cli_fail("inspect", &err);
		goto out;
	}
	export_opts(&o, a);
	/* Only --json prints the data file's digest; without it the export is
	 * a copy, at copy speed (hashing 1 GB takes about a second). */
	o.data_digest = json ? NX_EXPORT_DIGEST_INLINE : NX_EXPORT_DIGEST_NONE;
	o.ext_open = ext_open;
	o.ext_ctx = a;
	o.dst_name = a->to;
	o.ext_name = ext_name;
	if (nx_export_run(&r, fd, path, out, &o, &err) != 0) {
		unlink(a->to);
		if (a->ext_created)
			unlinkat(a->ext_dirfd, NX_EXPORT_DATA_NAME, 0);
		rc = cli_fail("inspect", &err);
		goto out;
	}
	if (json) {
		json_t *j = export_json(&r);

		json_object_set_new(j, "schema", json_string("nexus.inspect-export.v1"));
		rc = json_dumpf(j, stdout, JSON_INDENT(2) | JSON_SORT_KEYS) == 0 &&
		     fputc('\n', stdout) != EOF ? 0 : 3;
		json_decref(j);
	} else {
		char hex[2 * NX_SHA256_LEN + 1];

		nx_hex(hex, r.sha256);
		printf("exported %s -> %s (%" PRIu64 " bytes, sha256 %s), %zu items removed\n",
		       path, a->to, r.size, hex, r.nremoved);
		if (r.has_external)
			printf("weights: %" PRIu64 " tensors, %" PRIu64 " bytes in %s beside it "
			       "(--json adds its sha256)\n", r.ext_tensors, r.ext_size,
			       NX_EXPORT_DATA_NAME);
		rc = 0;
	}
	nx_export_result_release(&r);
out:
	if (out >= 0)
		close(out);
	close(a->ext_dirfd);
	return rc;
}

static const char *opset_domain(const char *d)
{
	return d[0] ? d : "ai.onnx";
}

json_t *cli_onnx_value_json(const struct nx_onnx_value *v)
{
	json_t *shape = json_array();
	size_t i;

	for (i = 0; i < v->ndims; i++) {
		if (v->dims[i] >= 0)
			json_array_append_new(shape, json_integer(v->dims[i]));
		else if (v->dim_params && v->dim_params[i])
			json_array_append_new(shape, json_string(v->dim_params[i]));
		else
			json_array_append_new(shape, json_string("?"));
	}
	return json_pack("{s:s, s:s, s:o}", "name", v->name, "dtype",
			 nx_onnx_dtype_name(v->elem_type), "shape",
			 v->has_shape ? shape : (json_decref(shape), json_null()));
}

static json_t *values_json(const struct nx_onnx_value *v, size_t n)
{
	json_t *a = json_array();
	size_t i;

	for (i = 0; i < n; i++)
		json_array_append_new(a, cli_onnx_value_json(&v[i]));
	return a;
}

/* Weights by element type: {dtype: {tensors, elements, bytes}} (node
 * attribute tensors left out, as from the parameter count): what a
 * quantized export holds in int8 and what stayed float. */
static json_t *dtypes_json(const nx_onnx_summary *s)
{
	json_t *d = json_object();
	size_t i;

	for (i = 0; i < s->ntensors; i++) {
		const struct nx_onnx_tensor *t = &s->tensors[i];
		const char *name = nx_onnx_dtype_name(t->data_type);
		json_t *e;
		uint64_t bytes = (t->nelem * nx_onnx_dtype_bits(t->data_type) + 7) / 8;

		if (t->attribute)
			continue;
		if (!(e = json_object_get(d, name))) {
			e = json_pack("{s:I, s:I, s:I}", "tensors", (json_int_t)0, "elements",
				      (json_int_t)0, "bytes", (json_int_t)0);
			json_object_set_new(d, name, e);
		}
		json_object_set_new(e, "tensors",
				    json_integer(json_integer_value(json_object_get(e, "tensors")) + 1));
		json_object_set_new(e, "elements", json_integer(json_integer_value(
					   json_object_get(e, "elements")) + (json_int_t)t->nelem));
		json_object_set_new(e, "bytes", json_integer(json_integer_value(
					   json_object_get(e, "bytes")) + (json_int_t)bytes));
	}
	return d;
}

static int print_json(const nx_onnx_summary *s, json_t *preview)
{
	json_t *root, *opsets = json_object(), *meta = json_object(), *ext = json_array();
	json_t *domains = json_array();
	char human[32];
	size_t i;
	int rc;

	for (i = 0; i < s->nopsets; i++)
		json_object_set_new(opsets, opset_domain(s->opsets[i].domain),
				    json_integer(s->opsets[i].version));
	for (i = 0; i < s->nmetadata; i++)
		json_object_set_new(meta, s->metadata[i].key, json_string(s->metadata[i].value));
	for (i = 0; i < s->ntensors; i++) {
		const struct nx_onnx_tensor *t = &s->tensors[i];

		if (t->location != NX_TENSOR_EXTERNAL)
			continue;
		json_array_append_new(ext, json_pack("{s:s, s:s?, s:I, s:I, s:s}", "tensor",
						     t->name, "location", t->ext_location,
						     "offset", (json_int_t)t->ext_offset,
						     "length", (json_int_t)t->ext_length,
						     "scope", t->scope));
	}
	for (i = 0; i < s->nop_domains; i++)
		json_array_append_new(domains, json_string(opset_domain(s->op_domains[i])));
	nx_human_count(human, sizeof(human), s->parameters);
	root = json_object();
	json_object_set_new(root, "format", json_string("onnx"));
	json_object_set_new(root, "ir_version", json_integer(s->ir_version));
	json_object_set_new(root, "model_version", json_integer(s->model_version));
	json_object_set_new(root, "producer", json_string(s->producer_name));
	json_object_set_new(root, "producer_version", json_string(s->producer_version));
	json_object_set_new(root, "domain", json_string(s->domain));
	json_object_set_new(root, "doc_string", json_string(s->doc_string));
	json_object_set_new(root, "opsets", opsets);
	json_object_set_new(root, "inputs", values_json(s->inputs, s->ninputs));
	json_object_set_new(root, "outputs", values_json(s->outputs, s->noutputs));
	json_object_set_new(root, "parameters", json_integer((json_int_t)s->parameters));
	json_object_set_new(root, "parameters_human", json_string(human));
	json_object_set_new(root, "quantization", json_string(s->quantization));
	json_object_set_new(root, "metadata", meta);
	json_object_set_new(root, "external_data", ext);
	json_object_set_new(root, "file_size", json_integer((json_int_t)s->file_size));
	json_object_set_new(root, "weight_bytes", json_integer((json_int_t)s->weight_bytes));
	json_object_set_new(root, "tensors", json_integer((json_int_t)s->ntensors));
	json_object_set_new(root, "dtypes", dtypes_json(s));
	json_object_set_new(root, "nodes", json_integer((json_int_t)s->nnodes));
	json_object_set_new(root, "graphs", json_integer((json_int_t)s->ngraphs));
	json_object_set_new(root, "functions", json_integer((json_int_t)s->nfunctions));
	json_object_set_new(root, "op_domains", domains);
	json_object_set_new(root, "training_info", json_boolean(s->has_training_info));
	json_object_set_new(root, "unknown_fields", json_integer((json_int_t)s->unknown_fields));
	json_object_set_new(root, "first_unknown_offset", json_integer(s->first_unknown_offset));
	json_object_set_new(root, "export_preview", preview);
	json_object_set_new(root, "schema", json_string("nexus.inspect.v1"));
	if (!root) {
		fprintf(stderr, "nexus inspect: error: cannot build the JSON output (out of memory?)\n");
		return 3;
	}
	rc = json_dumpf(root, stdout, JSON_INDENT(2) | JSON_SORT_KEYS);
	json_decref(root);
	if (rc != 0 || fputc('\n', stdout) == EOF)
		return 3;
	return 0;
}

static void print_value(const struct nx_onnx_value *v)
{
	size_t i;

	printf("  %s: %s", v->name, nx_onnx_dtype_name(v->elem_type));
	if (!v->has_shape) {
		printf(" [?]\n");
		return;
	}
	printf(" [");
	for (i = 0; i < v->ndims; i++) {
		if (i)
			printf(", ");
		if (v->dims[i] >= 0)
			printf("%" PRId64, v->dims[i]);
		else
			printf("%s", v->dim_params && v->dim_params[i] ? v->dim_params[i] : "?");
	}
	printf("]\n");
}

static void print_text(const char *path, const nx_onnx_summary *s)
{
	char human[32];
	size_t i, next = 0;

	nx_human_count(human, sizeof(human), s->parameters);
	printf("model:        %s (%" PRIu64 " bytes)\n", path, s->file_size);
	printf("producer:     %s%s%s\n", s->producer_name[0] ? s->producer_name : "(none)",
	       s->producer_version[0] ? " " : "", s->producer_version);
	printf("ir version:   %" PRId64 "\n", s->ir_version);
	printf("opsets:      ");
	for (i = 0; i < s->nopsets; i++)
		printf(" %s=%" PRId64, opset_domain(s->opsets[i].domain), s->opsets[i].version);
	printf("\nparameters:   %s (%" PRIu64 ")\n", human, s->parameters);
	printf("weights:      %" PRIu64 " bytes in %zu tensors\n", s->weight_bytes, s->ntensors);
	printf("quantization: %s\n", s->quantization);
	printf("graph:        %zu nodes, %zu graphs, %zu functions\n", s->nnodes, s->ngraphs,
	       s->nfunctions);
	printf("inputs:\n");
	for (i = 0; i < s->ninputs; i++)
		print_value(&s->inputs[i]);
	printf("outputs:\n");
	for (i = 0; i < s->noutputs; i++)
		print_value(&s->outputs[i]);
	if (s->nmetadata)
		printf("metadata:\n");
	for (i = 0; i < s->nmetadata; i++)
		printf("  %s = %s\n", s->metadata[i].key, s->metadata[i].value);
	for (i = 0; i < s->ntensors; i++) {
		const struct nx_onnx_tensor *t = &s->tensors[i];

		if (t->location != NX_TENSOR_EXTERNAL)
			continue;
		if (!next++)
			printf("external data:\n");
		printf("  %s -> %s offset %" PRId64 " length %" PRId64 "\n", t->name,
		       t->ext_location ? t->ext_location : "(no location)", t->ext_offset,
		       t->ext_length);
	}
	if (s->has_training_info)
		printf("training_info: present\n");
	if (s->unknown_fields)
		printf("unknown fields: %" PRIu64 " (first @%" PRId64 ")\n", s->unknown_fields,
		       s->first_unknown_offset);
}

/* --teacher: the student's tensors against the teachers' fingerprints. */
static int fingerprint(const char *model, const struct export_args *a, bool json)
{
	nx_fp_set *set = NULL;
	struct nx_fp_match *m = NULL;
	size_t n = 0, i;
	nx_error err;
	int rc;

	nx_error_clear(&err);
	if ((rc = nx_fp_set_new(&set, &err)) != 0)
		return cli_fail("inspect", &err);
	if (nx_fp_set_quant_shapes(set, AT_FDCWD, model, &err) != 0)
		goto fail;
	for (i = 0; i < a->nteachers; i++)
		if (nx_fingerprint_file(set, AT_FDCWD, a->teachers[i], NX_FP_MIN_BYTES, &err) != 0)
			goto fail;
	if (nx_fingerprint_student(&m, &n, set, AT_FDCWD, model, NX_FP_MIN_BYTES, &err) != 0)
		goto fail;
	if (json) {
		json_t *arr = json_array(), *root;

		for (i = 0; i < n; i++) {
			json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:b, s:b, s:b, s:b, s:b}",
					      "tensor", m[i].student_tensor, "teacher_tensor",
					      m[i].teacher_tensor, "teacher_file", m[i].teacher_file,
					      "bytes", (json_int_t)m[i].bytes, "partial", m[i].partial,
					      "transposed", m[i].transposed, "values", m[i].values,
					      "approx", m[i].approx, "units", m[i].units);
			/* a part of the one sum (nexus/fingerprint.h: sum_bytes) */
			const char *part = m[i].pooled ? "pooled" : m[i].implied ? "kept in place"
					 : m[i].units ? "re-encoded vectors"
					 : m[i].small ? "small copies" : NULL;

			if (o && part) {
				json_object_set_new(o, "sum_part", json_string(part));
				json_object_set_new(o, "sum_bytes", json_integer((json_int_t)m[i].sum_bytes));
				json_object_set_new(o, "sum_total", json_integer((json_int_t)m[i].sum_total));
			}
			json_array_append_new(arr, o);
		}
		root = json_pack("{s:s, s:o, s:I, s:I}", "schema", "nexus.inspect-teacher.v1",
				 "shared_tensors", arr, "teacher_tensors",
				 (json_int_t)nx_fp_set_count(set), "compressed_records",
				 (json_int_t)nx_fp_set_compressed(set));
		json_dumpf(root, stdout, JSON_INDENT(2) | JSON_SORT_KEYS);
		fputc('\n', stdout);
		json_decref(root);
	} else {
		for (i = 0; i < n; i++)
			printf("FAIL %s (%" PRIu64 " bytes) %s %s in %s\n", m[i].student_tensor,
			       m[i].bytes, m[i].units ? "holds re-encoded vectors of" :
			       m[i].approx ? "approximately (correlation) equals" :
			       m[i].pooled ? "holds small teacher tensors in another form "
					     "(pooled windows), some of" :
			       m[i].values ? "hold the values of" :
			       m[i].partial ? "are pieces of" :
			       m[i].transposed ? "transposed equals" : "equals",
			       m[i].teacher_tensor, m[i].teacher_file);
		if (!n)
			printf("no tensor shared with %zu teacher tensors\n", nx_fp_set_count(set));
	}
	rc = n ? 1 : 0;
	nx_fp_matches_free(m, n);
	nx_fp_set_free(set);
	return rc;
fail:
	nx_fp_set_free(set);
	return cli_fail("inspect", &err);
}

/* A bundle directory: its own description (cmd_bundle.c), keys loaded here. */
static int inspect_bundle(const char *path, bool json, const char *const *pub, size_t npub)
{
	nx_key *keys[INSPECT_LIST_MAX];
	size_t n = 0;
	nx_error err;
	int rc = 0;

	nx_error_clear(&err);
	while (n < npub && !nx_key_load_public(&keys[n], pub[n], &err))
		n++;
	rc = n < npub ? cli_fail("inspect", &err) : cli_inspect_bundle(path, json, keys, n);
	while (n > 0)
		nx_key_free(keys[--n]);
	return rc;
}

static int run(const struct cli_verb *verb, int argc, char **argv)
{
	const char *pubkeys[INSPECT_LIST_MAX];
	size_t npubkeys = 0;
	struct stat st;
	struct cli_parser p;
	nx_onnx_model *m = NULL;
	nx_error err;
	struct export_args a;
	bool json = false;
	char *dir = NULL, *slash;
	int k, fd = -1, rc;

	memset(&a, 0, sizeof(a));
	a.dirfd = -1;
	cli_init(&p, verb, argc, argv);
	while ((k = cli_next(&p)) > 0) {
		const char **list = NULL;
		size_t *n = NULL;

		if (k == OPT_JSON)
			json = true;
		else if (k == OPT_NO_EXTRACT)
			a.no_extract = true;
		else if (k == OPT_EXPORT)
			a.to = p.optarg;
		else if (k == OPT_EXTERNAL && nx_export_external_parse(p.optarg, &a.external))
			return cli_usage(verb, "--external-data takes auto, always or never, not '%s'",
					 p.optarg);
		else if (k == OPT_QUANTIZE && (a.quantize = name_index(nx_export_quantize_names,
								      p.optarg)) < 0)
			return cli_usage(verb, "--quantize takes none, int8 or int4, not '%s'", p.optarg);
		else if (k == OPT_QBLOCK && (!strcmp(p.optarg, "32") || !strcmp(p.optarg, "64") ||
					     !strcmp(p.optarg, "128")))
			a.block = (unsigned)strtoul(p.optarg, NULL, 10);   /* one of the three above */
		else if (k == OPT_QBLOCK)
			return cli_usage(verb, "--quantize-block takes 32, 64 or 128, not '%s'", p.optarg);
		else if (k == OPT_QTHREADS && p.optarg[0] >= '1' && p.optarg[0] <= '8' && !p.optarg[1])
			a.threads = (unsigned)(p.optarg[0] - '0');
		else if (k == OPT_QTHREADS)
			return cli_usage(verb, "--quantize-threads takes 1 to %d, not '%s'",
					 NX_QUANT_THREADS_MAX, p.optarg);
		else if (k == OPT_QEXCLUDE)
			list = a.qexclude, n = &a.nqexclude;
		else if (k == OPT_OUTPUT)
			list = a.outputs, n = &a.noutputs;
		else if (k == OPT_KEEP)
			list = a.keep, n = &a.nkeep;
		else if (k == OPT_FORBID)
			list = a.forbid, n = &a.nforbid;
		else if (k == OPT_TEACHER)
			list = a.teachers, n = &a.nteachers;
		else if (k == OPT_PUBKEY)
			list = pubkeys, n = &npubkeys;
		if (list && *n == INSPECT_LIST_MAX)
			return cli_usage(verb, "at most %d values per option", INSPECT_LIST_MAX);
		if (list)
			list[(*n)++] = p.optarg;
	}
	if (k < 0)
		return k == -1 ? 0 : 2;
	if (p.npos != 1)
		return cli_usage(verb, "expected one MODEL.onnx or BUNDLE argument");
	if (stat(p.pos[0], &st) == 0 && S_ISDIR(st.st_mode))
		return inspect_bundle(p.pos[0], json, pubkeys, npubkeys);
	if (!(dir = strdup(p.pos[0])))
		return 3;
	slash = strrchr(dir, '/');
	a.base = slash ? p.pos[0] + (slash - dir) + 1 : p.pos[0];
	if (slash)
		*slash = '\0';
	a.dirfd = open(slash ? (dir[0] ? dir : "/") : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	free(dir);
	nx_error_clear(&err);
	fd = open(p.pos[0], O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		nx_error_errno(&err, NX_EIO, errno, p.pos[0], "cannot open %s", p.pos[0]);
		return cli_fail(verb->name, &err);
	}
	if (nx_onnx_open(&m, fd, p.pos[0], &err) != 0) {
		rc = cli_fail(verb->name, &err);
		goto out;
	}
	if (a.nteachers) {
		rc = fingerprint(p.pos[0], &a, json);
	} else if (a.to) {
		rc = do_export(fd, p.pos[0], &a, json);
	} else if (json) {
		rc = print_json(nx_onnx_summary_get(m), preview_json(fd, p.pos[0], &a));
	} else {
		print_text(p.pos[0], nx_onnx_summary_get(m));
		rc = fflush(stdout) == 0 ? 0 : 3;
	}
out:
	nx_onnx_free(m);
	close(fd);
	if (a.dirfd >= 0)
		close(a.dirfd);
	return rc;
}

const struct cli_verb cmd_inspect = {
	.name = "inspect",
	.args = "MODEL.onnx | BUNDLE",
	.summary = "summarise an ONNX model without reading its weights, or a bundle",
	.details = "Prints the producer, IR and opset versions, inputs and outputs with their\n"
		   "shapes, the exact parameter count, quantization, metadata, external data\n"
		   "references, training_info and unknown protobuf fields.  Weight bytes are\n"
		   "never read, so large models are inspected in milliseconds.\n"
		   "--json adds export_preview: what `nexus build` would remove from the model\n"
		   "(other nodes, dead initializers, metadata, doc strings, training_info).\n"
		   "--export-to writes that export, copying the weights without decoding them.\n"
		   "Given a BUNDLE directory: its files with sizes and modes, the model's\n"
		   "summary, the signature and its key id (checked with --pubkey), and the\n"
		   "policy and runtime its manifest records.",
	.opts = opts,
	.run = run,
};
