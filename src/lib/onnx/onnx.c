/* onnx.c - nx_onnx_open() and nx_onnx_visit_strings(): the ModelProto walk
 * and the summary it leaves (nexus/onnx.h). */
#include "onnx_int.h"

#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#define LOOP_FIELDS(w, r, fld, rc) while (((rc) = nx_pb_next((r), (fld), (w)->err)) > 0)

struct nx_onnx_model {
	nx_onnx_summary sum;
};

static void summary_release(nx_onnx_summary *s)
{
	size_t i;

	free(s->producer_name);
	free(s->producer_version);
	free(s->domain);
	free(s->doc_string);
	for (i = 0; i < s->nopsets; i++)
		free(s->opsets[i].domain);
	free(s->opsets);
	for (i = 0; i < s->nmetadata; i++) {
		free(s->metadata[i].key);
		free(s->metadata[i].value);
	}
	free(s->metadata);
	for (i = 0; i < s->ninputs; i++)
		nx_onnx__value_release(&s->inputs[i]);
	free(s->inputs);
	for (i = 0; i < s->noutputs; i++)
		nx_onnx__value_release(&s->outputs[i]);
	free(s->outputs);
	for (i = 0; i < s->ntensors; i++)
		nx_onnx__tensor_release(&s->tensors[i]);
	free(s->tensors);
	for (i = 0; i < s->nop_domains; i++)
		free(s->op_domains[i]);
	free(s->op_domains);
	memset(s, 0, sizeof(*s));
}

static int add_metadata(struct walk *w, const struct nx_pb_reader *r, const struct nx_pb_field *f)
{
	nx_onnx_summary *s = w->sum;
	struct nx_onnx_kv kv = { NULL, NULL };
	int rc;

	if ((rc = nx_onnx__walk_kv(w, r, f, NX_ONNX_META_KEY, NX_ONNX_META_VALUE, &kv.key, &kv.value)) != 0)
		goto out;
	if ((!kv.key && !(kv.key = strdup(""))) || (!kv.value && !(kv.value = strdup("")))) {
		rc = nx_error_oom(w->err, w->f.path);
		goto out;
	}
	if ((rc = nx_onnx__walk_grow(w, (void **)&s->metadata, &w->cap_meta, s->nmetadata, sizeof(kv),
			    NX_ONNX_ENTRIES_MAX)) != 0)
		goto out;
	s->metadata[s->nmetadata++] = kv;
	kv.key = kv.value = NULL;
out:
	free(kv.key);
	free(kv.value);
	return rc;
}

/* TrainingInfoProto: initialization = 1, algorithm = 2 (graphs),
 * initialization_binding = 3, update_binding = 4 (string pairs). */
static int walk_training(struct walk *w, const struct nx_pb_reader *parent,
			 const struct nx_pb_field *fld, size_t index)
{
	struct nx_pb_reader r;
	struct nx_pb_field f;
	size_t mark;
	int rc;

	if ((rc = nx_pb_sub(&r, parent, fld, w->err)) != 0)
		return rc;
	w->sum->has_training_info = true;
	LOOP_FIELDS(w, &r, &f, rc) {
		if (f.num == 1 || f.num == 2) {
			mark = nx_onnx__scope_push(w, "training_info[%zu]/%s", index,
					  f.num == 1 ? "initialization" : "algorithm");
			rc = nx_onnx__walk_graph(w, &r, &f, NULL, false);
			nx_onnx__scope_pop(w, mark);
		} else if (f.num == 3 || f.num == 4) {
			mark = nx_onnx__scope_push(w, "training_info[%zu]", index);
			rc = nx_onnx__walk_kv(w, &r, &f, NX_ONNX_TRAINING, NX_ONNX_TRAINING, NULL, NULL);
			nx_onnx__scope_pop(w, mark);
		} else {
			rc = nx_onnx__walk_unknown(w, &f);
		}
		if (rc)
			break;
	}
	return rc;
}

static int walk_model(struct walk *w)
{
	nx_onnx_summary *s = w->sum;
	struct nx_pb_reader r;
	struct nx_pb_field f;
	bool have_ir = false, have_graph = false;
	size_t ntraining = 0, nfunc = 0, mark;
	int rc;

	if ((rc = nx_pb_reader_init(&r, &w->f, 0, w->f.size, w->err)) != 0)
		return rc;
	LOOP_FIELDS(w, &r, &f, rc) {
		switch (f.num) {
		case 1:
			if (!(rc = nx_onnx__walk_expect(w, &f, NX_PB_VARINT))) {
				s->ir_version = (int64_t)f.value;
				have_ir = true;
			}
			break;
		case 5:
			if (!(rc = nx_onnx__walk_expect(w, &f, NX_PB_VARINT)))
				s->model_version = (int64_t)f.value;
			break;
		case 2:
			rc = nx_onnx__walk_string(w, &f, NX_ONNX_PRODUCER, NX_ONNX_NAME_MAX, &s->producer_name);
			break;
		case 3:
			rc = nx_onnx__walk_string(w, &f, NX_ONNX_PRODUCER, NX_ONNX_NAME_MAX,
					 &s->producer_version);
			break;
		case 4:
			rc = nx_onnx__walk_string(w, &f, NX_ONNX_DOMAIN, NX_ONNX_NAME_MAX, &s->domain);
			break;
		case 6:
			rc = nx_onnx__walk_string(w, &f, NX_ONNX_DOC, NX_PB_STRING_MAX, &s->doc_string);
			break;
		case 8:
			rc = nx_onnx__walk_opset(w, &r, &f, true);
			break;
		case 7:
			/* protobuf would merge two graphs; a model never has two */
			if (have_graph) {
				rc = nx_error_set(w->err, NX_EFORMAT, w->f.path, 0,
						  (long long)f.tag_offset,
						  "the model has a second graph: not a valid ONNX model");
				break;
			}
			have_graph = true;
			mark = nx_onnx__scope_push(w, "graph");
			rc = nx_onnx__walk_graph(w, &r, &f, NULL, true);
			nx_onnx__scope_pop(w, mark);
			break;
		case 14:
			rc = add_metadata(w, &r, &f);
			break;
		case 20:
			rc = walk_training(w, &r, &f, ntraining++);
			break;
		case 25:
			mark = nx_onnx__scope_push(w, "function[%zu]", nfunc++);
			rc = nx_onnx__walk_function(w, &r, &f);
			nx_onnx__scope_pop(w, mark);
			break;
		default:
			rc = nx_onnx__walk_unknown(w, &f);
		}
		if (rc)
			return rc;
	}
	if (rc)
		return rc;
	if (!have_ir || !have_graph || s->nopsets == 0)
		return nx_error_set(w->err, NX_EFORMAT, w->f.path, 0, (long long)w->f.size,
				    "not an ONNX model (no %s): check the file is a complete .onnx export",
				    !have_ir ? "ir_version" : !have_graph ? "graph" : "opset_import");
	return 0;
}

static void classify(nx_onnx_summary *s, bool quant_op, bool nbits_op)
{
	uint64_t half = 0;
	size_t i;
	bool int8 = quant_op;

	for (i = 0; i < s->ntensors; i++) {
		const struct nx_onnx_tensor *t = &s->tensors[i];

		if (t->attribute)
			continue;
		switch (t->data_type) {
		case 2: case 3: case 21: case 22:  /* uint8 int8 uint4 int4 */
			int8 = true;
			break;
		case 10: case 16:                  /* float16 bfloat16 */
			half += t->nelem;
			break;
		}
	}
	if (nbits_op)
		s->quantization = "int4";
	else if (int8)
		s->quantization = "int8";
	else if (s->parameters && half > s->parameters / 2)
		s->quantization = "fp16";
	else
		s->quantization = "none";
}

static int run_walk(nx_onnx_summary *out, int fd, const char *path, nx_onnx_visit_fn fn,
		    void *ctx, nx_error *err)
{
	struct walk *w = NULL;
	int rc;

	if (!(w = calloc(1, sizeof(*w))))
		return nx_error_oom(err, path);
	w->err = err;
	w->sum = out;
	w->fn = fn;
	w->ctx = ctx;
	memset(out, 0, sizeof(*out));
	out->first_unknown_offset = -1;
	if ((rc = nx_pb_file_init(&w->f, fd, path, err)) != 0)
		goto out;
	out->file_size = w->f.size;
	if ((rc = walk_model(w)) != 0)
		goto out;
	if ((!out->producer_name && !(out->producer_name = strdup(""))) ||
	    (!out->producer_version && !(out->producer_version = strdup(""))) ||
	    (!out->domain && !(out->domain = strdup(""))) ||
	    (!out->doc_string && !(out->doc_string = strdup("")))) {
		rc = nx_error_oom(err, path);
		goto out;
	}
	classify(out, w->quant_op, w->nbits_op);
out:
	if (rc == WALK_STOP)
		rc = w->stop_rc;
	if (rc)
		summary_release(out);
	nx_pb_file_release(&w->f);
	free(w->tensor_graph);
	free(w);
	return rc;
}

int nx_onnx_open(nx_onnx_model **out, int fd, const char *path, nx_error *err)
{
	nx_onnx_model *m = NULL;
	int rc;

	if (!(m = calloc(1, sizeof(*m))))
		return nx_error_oom(err, path);
	if ((rc = run_walk(&m->sum, fd, path, NULL, NULL, err)) != 0) {
		free(m);
		/* Say what it means for the user before how the bytes broke. */
		if (rc == NX_EFORMAT && err && strncmp(err->message, "not a valid ONNX", 16)) {
			char why[NX_ERROR_MSG_MAX];

			snprintf(why, sizeof(why), "%s", err->message);
			snprintf(err->message, sizeof(err->message),
				 "not a valid ONNX model (%.900s); export the model to ONNX, or "
				 "check the file is complete", why);
		}
		return rc;
	}
	*out = m;
	return 0;
}

const nx_onnx_summary *nx_onnx_summary_get(const nx_onnx_model *m)
{
	return &m->sum;
}

void nx_onnx_free(nx_onnx_model *m)
{
	if (!m)
		return;
	summary_release(&m->sum);
	free(m);
}

int nx_onnx_visit_strings(int fd, const char *path, nx_onnx_visit_fn fn, void *ctx,
			  nx_error *err)
{
	nx_onnx_summary sum;
	int rc;

	if (!fn)
		return nx_error_set(err, NX_EINTERNAL, path, 0, -1, "no visitor given");
	if ((rc = run_walk(&sum, fd, path, fn, ctx, err)) != 0)
		return rc;
	summary_release(&sum);
	return 0;
}
