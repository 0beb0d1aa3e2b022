/* cmd_inspect.c - `nexus inspect MODEL.onnx [--json]`: an ONNX summary read
 * without loading the weights (nexus/onnx.h). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "nexus/onnx.h"

enum { OPT_JSON = 1 };

static const struct cli_opt opts[] = {
	{ "json", 0, NULL, "print one JSON document instead of text", OPT_JSON },
	{0},
};

static const char *opset_domain(const char *d)
{
	return d[0] ? d : "ai.onnx";
}

static json_t *value_json(const struct nx_onnx_value *v)
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
		json_array_append_new(a, value_json(&v[i]));
	return a;
}

static int print_json(const nx_onnx_summary *s)
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
	json_object_set_new(root, "nodes", json_integer((json_int_t)s->nnodes));
	json_object_set_new(root, "graphs", json_integer((json_int_t)s->ngraphs));
	json_object_set_new(root, "functions", json_integer((json_int_t)s->nfunctions));
	json_object_set_new(root, "op_domains", domains);
	json_object_set_new(root, "training_info", json_boolean(s->has_training_info));
	json_object_set_new(root, "unknown_fields", json_integer((json_int_t)s->unknown_fields));
	json_object_set_new(root, "first_unknown_offset", json_integer(s->first_unknown_offset));
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

static int run(const struct cli_verb *verb, int argc, char **argv)
{
	struct cli_parser p;
	nx_onnx_model *m = NULL;
	nx_error err;
	bool json = false;
	int k, fd = -1, rc;

	cli_init(&p, verb, argc, argv);
	while ((k = cli_next(&p)) > 0)
		if (k == OPT_JSON)
			json = true;
	if (k < 0)
		return k == -1 ? 0 : 2;
	if (p.npos != 1)
		return cli_usage(verb, "expected one MODEL.onnx argument");
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
	if (json) {
		rc = print_json(nx_onnx_summary_get(m));
	} else {
		print_text(p.pos[0], nx_onnx_summary_get(m));
		rc = fflush(stdout) == 0 ? 0 : 3;
	}
out:
	nx_onnx_free(m);
	close(fd);
	return rc;
}

const struct cli_verb cmd_inspect = {
	.name = "inspect",
	.args = "MODEL.onnx",
	.summary = "summarise an ONNX model without reading its weights",
	.details = "Prints the producer, IR and opset versions, inputs and outputs with their\n"
		   "shapes, the exact parameter count, quantization, metadata, external data\n"
		   "references, training_info and unknown protobuf fields.  Weight bytes are\n"
		   "never read, so large models are inspected in milliseconds.",
	.opts = opts,
	.run = run,
};
