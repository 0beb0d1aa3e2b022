/*
 * export.c - nx_export_run / nx_export_plan (nexus/export.h): validate the
 * model, analyse the main graph (export_analyze.c), build the rewritten
 * message tree (export_rewrite.c), then write it while hashing (onnx_write.c).
 */
#include "export_int.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nexus/onnx.h"


static void ex_release(struct ex *x)
{
	size_t i, j;

	for (i = 0; i < x->nnodes; i++) {
		for (j = 0; j < x->nodes[i].nin; j++)
			free(x->nodes[i].in[j]);
		for (j = 0; j < x->nodes[i].nout; j++)
			free(x->nodes[i].out[j]);
		free(x->nodes[i].in);
		free(x->nodes[i].out);
		free(x->nodes[i].op);
		free(x->nodes[i].name);
	}
	nx_export__quant_release(x);
	free(x->nodes);
	free(x->keep_node);
	nx_strset_release(&x->needed);
	nx_strset_release(&x->requested);
	nx_strset_release(&x->graph_outputs);
	nx_strset_release(&x->initializers);
	for (i = 0; i < x->nextra; i++)
		free(x->extra_outputs[i]);
	free(x->extra_outputs);
	free(x->terms);
	if (x->ext.ctx)
		nx_pw__out_release(&x->ext);
	nx_hash_follow_cancel(x->ext_follow);
	nx_pb_file_release(&x->f);
}

static int export_do(struct nx_export_result *out, int src_fd, const char *src_path,
		     int dst_fd, const struct nx_export_opts *o, bool dry, nx_error *err)
{
	struct nx_export_result res;
	struct ex x;
	struct nx_pb_reader top;
	struct pw_msg *model = NULL;
	struct pw_out w = { 0 };
	nx_onnx_model *check = NULL;
	size_t i;
	int rc;

	memset(&res, 0, sizeof(res));
	memset(&x, 0, sizeof(x));
	x.src_fd = src_fd;
	x.path = src_path ? src_path : "model";
	x.err = err;
	x.o = o;
	x.res = &res;
	x.dry = dry;
	x.ext_fd = -1;
	/* The reader's checks (structure, caps) first: the rewrite may then
	 * assume a well-formed model and report its own errors only. */
	if ((rc = nx_onnx_open(&check, src_fd, x.path, err)) != 0)
		goto out;
	nx_onnx_free(check);
	if (!(x.terms = calloc(NX_SCAN_BUILTIN_TERMS + o->nforbidden_terms, sizeof(char *)))) {
		rc = nx_export__oom(&x);
		goto out;
	}
	for (i = 0; i < NX_SCAN_BUILTIN_TERMS; i++)
		x.terms[x.nterms++] = nx_scan_builtin_terms[i];
	for (i = 0; i < o->nforbidden_terms; i++)
		x.terms[x.nterms++] = o->forbidden_terms[i];
	if ((rc = nx_pb_file_init(&x.f, src_fd, x.path, err)) != 0)
		goto out;
	if ((rc = nx_pb_reader_init(&top, &x.f, 0, x.f.size, err)) != 0)
		goto out;
	x.externalize = o->external == NX_EXPORT_EXT_ALWAYS ||
			(o->external == NX_EXPORT_EXT_AUTO && x.f.size >= NX_EXPORT_AUTO_MIN);
	if ((rc = nx_export__analyze(&x, &top)) != 0)
		goto out;
	if ((rc = nx_export__rewrite_model(&x, &model)) != 0)
		goto out;
	if (!dry) {
		nx_pw__msg_measure(model);
		if ((rc = nx_pw__out_init(&w, dst_fd, x.path, o->dst_name ? o->dst_name : "model", err)) != 0)
			goto out;
		if ((rc = nx_pw__emit(&w, src_fd, model)) != 0)
			goto out;
		if ((rc = nx_pw__out_finish(&w, res.sha256)) != 0)
			goto out;
		res.size = w.pos;
		if (x.ext_started) {
			if ((rc = nx_pw__out_finish(&x.ext, res.ext_sha256)) != 0)
				goto out;
			res.ext_size = x.ext.pos;
			res.ext_pending = x.ext_follow;
			x.ext_follow = NULL;
		}
	}
	*out = res;
	memset(&res, 0, sizeof(res));
out:
	/* the writer's pieces (nx_pw__*) return a bare NX_ENOMEM: say it here,
	 * once, so that every failure carries its message */
	if (rc == NX_ENOMEM && err && err->code != NX_ENOMEM)
		nx_error_oom(err, x.path);
	if (w.ctx)
		nx_pw__out_release(&w);
	nx_pw__msg_free(model);
	ex_release(&x);
	nx_export_result_release(&res);
	return rc;
}

int nx_export_run(struct nx_export_result *out, int src_fd, const char *src_path, int dst_fd,
		  const struct nx_export_opts *o, nx_error *err)
{
	return export_do(out, src_fd, src_path, dst_fd, o, false, err);
}

int nx_export_plan(struct nx_export_result *out, int src_fd, const char *src_path,
		   const struct nx_export_opts *o, nx_error *err)
{
	return export_do(out, src_fd, src_path, -1, o, true, err);
}

void nx_export_result_release(struct nx_export_result *r)
{
	size_t i;

	if (!r)
		return;
	for (i = 0; i < r->nremoved; i++)
		free(r->removed[i].name);
	free(r->removed);
	for (i = 0; i < r->npos; i++) {
		free(r->pos_table[i]);
		free(r->pos_buffer[i]);
	}
	nx_hash_follow_cancel(r->ext_pending);
	memset(r, 0, sizeof(*r));
}

const char *const nx_export_external_names[] = { "auto", "always", "never", NULL };

int nx_export_external_parse(const char *s, enum nx_export_external *out)
{
	size_t i;

	for (i = 0; nx_export_external_names[i]; i++)
		if (!strcmp(s, nx_export_external_names[i])) {
			*out = (enum nx_export_external)i;
			return 0;
		}
	return -1;
}

const char *nx_export_what_name(enum nx_export_what w)
{
	switch (w) {
	case NX_EXPORT_NODE: return "node";
	case NX_EXPORT_INITIALIZER: return "initializer";
	case NX_EXPORT_INPUT: return "input";
	case NX_EXPORT_OUTPUT: return "output";
	case NX_EXPORT_VALUE_INFO: return "value_info";
	case NX_EXPORT_METADATA: return "metadata";
	case NX_EXPORT_TRAINING_INFO: return "training_info";
	case NX_EXPORT_OPSET: return "opset_import";
	case NX_EXPORT_UNKNOWN_FIELD: return "unknown_field";
	}
	return "unknown";
}
