/*
 * infer.c - the ONNX Runtime session: one env and one session per process,
 * telemetry off, inputs found by name, dynamic batches padded to the
 * longest sequence, and the task's post-processing (softmax / pooling).
 *
 * The session is created from the bytes of the model fd that bundle.c
 * checked against the manifest, so the file that runs is the file that was
 * verified (no second open by path).
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "rt_ort.h"

/* The name of input role k: student.inputs / runtime.yaml inputs: for the
 * roles of nx_input_role (ids, mask, type ids, positions), then the merged
 * decoder's branch flag, which Optimum always names so. */
static const char *in_name(const struct rt_settings *set, size_t k)
{
	return k < NX_INPUT_ROLES ? set->inputs[k] : "use_cache_branch";
}

int rt_ort_fail(const OrtApi *ort, OrtStatus *st, nx_error *err, const char *what)
{
	const char *m = ort->GetErrorMessage(st);
	size_t n = strlen(m);
	int rc;

	while (n && (m[n - 1] == '\n' || m[n - 1] == ' '))  /* ORT ends some with a newline */
		n--;
	rc = nx_error_set(err, NX_EIO, NULL, 0, -1, "onnx runtime: %s: %.*s", what, (int)n, m);

	ort->ReleaseStatus(st);
	return rc;
}

static const char *type_name(ONNXTensorElementDataType t)
{
	switch (t) {
	case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT: return "float32";
	case ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE: return "float64";
	case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16: return "float16";
	case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64: return "int64";
	case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32: return "int32";
	case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8: return "int8";
	case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8: return "uint8";
	case ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL: return "bool";
	default: return "other";
	}
}

/* {"name", "type", "shape": [dims, -1 = dynamic]} and the element type */
static int describe_value(json_t **out, ONNXTensorElementDataType *type, bool *seq,
			  struct rt_session *s, OrtTypeInfo *ti, const char *name, nx_error *err)
{
	const OrtTensorTypeAndShapeInfo *tsi = NULL;
	int64_t dims[16];
	size_t nd = 0, i;
	json_t *shape = json_array();
	int rc = 0;

	*type = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
	*seq = false;
	ORT_TRY(s->ort->CastTypeInfoToTensorInfo(ti, &tsi), "type info");
	if (tsi) {
		ORT_TRY(s->ort->GetTensorElementType(tsi, type), "element type");
		ORT_TRY(s->ort->GetDimensionsCount(tsi, &nd), "shape");
		if (nd > 16)
			nd = 16;
		ORT_TRY(s->ort->GetDimensions(tsi, dims, nd), "shape");
		for (i = 0; i < nd; i++)
			json_array_append_new(shape, json_integer(dims[i]));
		*seq = nd >= 2 && dims[1] < 0;
	}
	*out = json_pack("{s:s,s:s,s:O}", "name", name, "type", type_name(*type), "shape", shape);
out:
	json_decref(shape);
	return rc;
}

/* A past_key_values.* input: its declared [batch, heads, past, head_dim]. */
static int add_past(struct rt_session *s, json_t *d, const char *name,
		    ONNXTensorElementDataType t, nx_error *err)
{
	json_t *shape = json_object_get(d, "shape");
	struct rt_past *p = &s->past[s->npast];
	size_t i;

	if (s->npast == RT_PAST_MAX)
		return nx_error_set(err, NX_ELIMIT, NULL, 0, -1,
				    "the model has more than %d past_key_values inputs", RT_PAST_MAX);
	if (json_array_size(shape) != 4 ||
	    json_integer_value(json_array_get(shape, 1)) <= 0 ||
	    json_integer_value(json_array_get(shape, 3)) <= 0)
		return nx_error_set(err, NX_ECONFIG, NULL, 0, -1,
				    "the model input '%s' is not declared [batch, heads, past_sequence, "
				    "head_dim] with a fixed number of heads and head_dim, which the "
				    "runtime needs to start the cache", name);
	for (i = 0; i < 4; i++)
		p->dims[i] = json_integer_value(json_array_get(shape, i));
	p->type = t;
	if (!(p->name = strdup(name)))
		return nx_error_oom(err, NULL);
	s->npast++;
	return 0;
}

/* Every past_key_values.X has its present.X output; the decoder's kind. */
static int match_present(struct rt_session *s, const struct rt_settings *set, nx_error *err)
{
	size_t k, i;
	char want[512];

	for (k = 0; k < s->npast; k++) {
		snprintf(want, sizeof(want), "present%s", s->past[k].name + strlen(RT_PAST_PREFIX) - 1);
		for (i = 0; i < s->nout && strcmp(s->out_names[i], want); i++)
			;
		if (i == s->nout)
			return nx_error_set(err, NX_ECONFIG, NULL, 0, -1,
					    "the model input '%s' has no output '%s' to carry the cache "
					    "to the next step (%s)", s->past[k].name, want,
					    RT_INPUTS_EXPECTED);
		s->past[k].present = i;
	}
	if (s->in_present[IN_BRANCH] && !s->npast)
		return nx_error_set(err, NX_ECONFIG, NULL, 0, -1,
				    "the model has use_cache_branch but no past_key_values inputs (%s)",
				    RT_INPUTS_EXPECTED);
	s->dec = s->npast ? (s->in_present[IN_BRANCH] ? RT_DEC_MERGED : RT_DEC_PAST)
		: set->task == RT_TASK_GENERATION ? RT_DEC_PLAIN : RT_DEC_NONE;
	if (set->task == RT_TASK_GENERATION && !set->output)
		for (i = 0; i < s->nout; i++)
			if (!strcmp(s->out_names[i], "logits"))
				s->main_out = i;
	return 0;
}

static int discover(struct rt_session *s, const struct rt_settings *set, nx_error *err)
{
	OrtAllocator *alloc = NULL;
	json_t *ins = json_array(), *outs = json_array(), *d = NULL;
	size_t n, i, k;
	int rc = 0;

	ORT_TRY(s->ort->GetAllocatorWithDefaultOptions(&alloc), "allocator");
	s->alloc = alloc;
	ORT_TRY(s->ort->SessionGetInputCount(s->sess, &n), "inputs");
	for (i = 0; i < n; i++) {
		char *name = NULL;
		OrtTypeInfo *ti = NULL;
		ONNXTensorElementDataType t;
		bool seq;

		ORT_TRY(s->ort->SessionGetInputName(s->sess, i, alloc, &name), "input name");
		ORT_TRY(s->ort->SessionGetInputTypeInfo(s->sess, i, &ti), "input type");
		rc = describe_value(&d, &t, &seq, s, ti, name, err);
		s->ort->ReleaseTypeInfo(ti);
		json_array_append_new(ins, d);
		for (k = 0; k < IN_COUNT && strcmp(name, in_name(set, k)); k++)
			;
		if (!rc && k < IN_COUNT) {
			s->in_present[k] = 1;
			s->in_type[k] = t;
		}
		if (!rc && k == IN_COUNT && !strncmp(name, RT_PAST_PREFIX, strlen(RT_PAST_PREFIX)))
			rc = add_past(s, d, name, t, err);
		else if (!rc && k == IN_COUNT)
			rc = nx_error_set(err, NX_ECONFIG, NULL, 0, -1,
					  "the model input '%s' is not one the runtime can feed: %s, %s, "
					  "%s, %s (nexus.yaml student.inputs names them) or a decoder's "
					  "past_key_values.N.key/.value (Optimum's with-past layout)", name,
					  set->inputs[IN_IDS], set->inputs[IN_MASK], set->inputs[IN_TYPES],
					  set->inputs[IN_POS]);
		else if (!rc && k == IN_BRANCH && t != ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL)
			rc = nx_error_set(err, NX_ECONFIG, NULL, 0, -1,
					  "the model input 'use_cache_branch' is %s; bool expected",
					  type_name(t));
		else if (!rc && k != IN_BRANCH && t != ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64 &&
			 t != ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32)
			rc = nx_error_set(err, NX_ECONFIG, NULL, 0, -1,
					  "the model input '%s' is %s; int64 or int32 expected",
					  name, type_name(t));
		alloc->Free(alloc, name);
		if (rc)
			goto out;
	}
	if (!s->in_present[IN_IDS]) {
		rc = nx_error_set(err, NX_ECONFIG, NULL, 0, -1, "the model has no %s input (the "
				  "token ids; student.inputs.ids names another)", set->inputs[IN_IDS]);
		goto out;
	}
	for (k = 0; k < IN_COUNT; k++)
		if (s->in_present[k]) {
			s->run_kind[s->nin] = (int)k;
			s->run_in[s->nin++] = in_name(set, k);
		}
	for (k = 0; k < s->npast; k++) {
		s->run_kind[s->nin] = IN_COUNT + (int)k;
		s->run_in[s->nin++] = s->past[k].name;
	}
	ORT_TRY(s->ort->SessionGetOutputCount(s->sess, &n), "outputs");
	if (n == 0 || n > RT_OUTPUTS_MAX) {
		rc = nx_error_set(err, NX_ECONFIG, NULL, 0, -1, "the model has %zu outputs (1 to %d handled)",
				  n, RT_OUTPUTS_MAX);
		goto out;
	}
	for (i = 0; i < n; i++) {
		char *name = NULL;
		OrtTypeInfo *ti = NULL;
		ONNXTensorElementDataType t;

		ORT_TRY(s->ort->SessionGetOutputName(s->sess, i, alloc, &name), "output name");
		s->out_names[s->nout++] = strdup(name);
		rc = s->ort->SessionGetOutputTypeInfo(s->sess, i, &ti) ? NX_EIO : 0;
		if (!rc) {
			rc = describe_value(&d, &t, &s->out_seq[i], s, ti, name, err);
			s->ort->ReleaseTypeInfo(ti);
			s->any_f64 |= t == ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE;
			json_array_append_new(outs, d);
		}
		alloc->Free(alloc, name);
		if (!s->out_names[i] || rc) {
			rc = rc ? rc : NX_ENOMEM;
			goto out;
		}
		if (set->output && !strcmp(set->output, s->out_names[i]))
			s->main_out = i;
	}
	if (set->output && strcmp(set->output, s->out_names[s->main_out])) {
		rc = nx_error_set(err, NX_ECONFIG, NULL, 0, -1,
				  "runtime.yaml names output '%s', which the model does not have",
				  set->output);
		goto out;
	}
	if ((rc = match_present(s, set, err)))
		goto out;
	s->describe = json_pack("{s:O,s:O}", "inputs", ins, "outputs", outs);
out:
	json_decref(ins);
	json_decref(outs);
	return rc;
}

/* ONNX Runtime's log, one line each on stderr as "nexus_cli: onnxruntime
 * <level>: <message>", without its colour escapes or other control bytes. */
static void ORT_API_CALL ort_log(void *param, OrtLoggingLevel level, const char *category,
				 const char *logid, const char *where, const char *message)
{
	static const char *const names[] = { "verbose", "info", "warning", "error", "fatal" };
	char line[RT_LOG_LINE_MAX];
	size_t n = 0;
	const char *p;

	(void)param, (void)category, (void)logid, (void)where;
	for (p = message; p && *p && n < sizeof(line) - 1; p++) {
		unsigned char c = (unsigned char)*p;

		if (c == 0x1b && p[1] == '[') {        /* CSI ... final byte */
			for (p += 2; *p && !(*p >= 0x40 && *p <= 0x7e); p++)
				;
			if (!*p)
				break;
			continue;
		}
		line[n++] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
	}
	line[n] = '\0';
	fprintf(stderr, "nexus_cli: onnxruntime %s: %s\n",
		(unsigned)level < sizeof(names) / sizeof(names[0]) ? names[level] : "log", line);
}

int rt_session_open(struct rt_session **out, const struct rt_bundle *b, bool verbose,
		    nx_error *err)
{
	return rt_session_open_with(out, b, verbose, NULL, false, err);
}

int rt_session_open_with(struct rt_session **out, const struct rt_bundle *b, bool verbose,
			 const struct rt_override *ov, bool unoptimized, nx_error *err)
{
	void *map = mmap(NULL, b->model_size, PROT_READ, MAP_PRIVATE, b->model_fd, 0);
	int rc;

	if (map == MAP_FAILED)
		return nx_error_errno(err, NX_EIO, errno, NULL, "cannot map the model");
	rc = rt_session_open_model(out, b, verbose, ov, unoptimized, map, b->model_size, err);
	munmap(map, b->model_size);
	return rc;
}

int rt_session_open_model(struct rt_session **out, const struct rt_bundle *b, bool verbose,
			  const struct rt_override *ov, bool unoptimized, const void *model,
			  size_t size, nx_error *err)
{
	struct rt_session *s = calloc(1, sizeof(*s));
	const OrtApi *ort = OrtGetApiBase()->GetApi(ORT_API_VERSION);
	OrtSessionOptions *so = NULL;
	char dir[sizeof(b->root) + 8];
	int rc = 0;

	if (!s)
		return nx_error_oom(err, NULL);
	s->ort = ort;
	if (!s->ort) {
		free(s);
		return nx_error_set(err, NX_EDEP, NULL, 0, -1,
				    "the bundled onnx runtime (%s) does not offer api version %d",
				    OrtGetApiBase()->GetVersionString(), ORT_API_VERSION);
	}
	ORT_TRY(s->ort->CreateEnvWithCustomLogger(ort_log, NULL, verbose ? ORT_LOGGING_LEVEL_INFO :
						  ORT_LOGGING_LEVEL_ERROR, "nexus_cli", &s->env),
		"create env");
	ORT_TRY(s->ort->DisableTelemetryEvents(s->env), "disable telemetry");
	ORT_TRY(s->ort->CreateSessionOptions(&so), "session options");
	if (b->set.threads > 0)
		ORT_TRY(s->ort->SetIntraOpNumThreads(so, b->set.threads), "threads");
	ORT_TRY(s->ort->SetInterOpNumThreads(so, 1), "threads");
	if (b->set.no_spin)
		ORT_TRY(s->ort->AddSessionConfigEntry(so, "session.intra_op.allow_spinning", "0"),
			"thread spinning");
	ORT_TRY(s->ort->SetSessionGraphOptimizationLevel(so, unoptimized ? ORT_DISABLE_ALL :
							 (GraphOptimizationLevel)b->set.graph_opt),
		"graph optimization");
	/* The memory pattern is a plan cached per input shape; batches
	 * bucketed by length have a new shape almost every time, so it only
	 * costs planning.  The arena stays: it reuses the activations. */
	ORT_TRY(s->ort->DisableMemPattern(so), "memory pattern");
	/* A large model's weights (and their pre-packed copies) outside the
	 * arena: the arena's growth rounding would add up to their size to
	 * the peak memory of every process. */
	if (b->model_size + b->data_size >= RT_LARGE_MODEL)
		ORT_TRY(s->ort->AddSessionConfigEntry(so, "session.use_device_allocator_for_initializers",
						      "1"), "initializer allocator");
	/* A model loaded from memory resolves external data against the working
	 * directory; point it at model/, where the export put the data file.
	 * ONNX Runtime then maps the page-aligned weights rather than copying
	 * them (the data file was checked against the manifest like every
	 * file; ORT opens it by name, below the same bundle root). */
	if (snprintf(dir, sizeof(dir), "%s/model", b->root) >= (int)sizeof(dir)) {
		rc = nx_error_set(err, NX_EIO, b->root, 0, -1, "bundle path too long");
		goto out;
	}
	ORT_TRY(s->ort->AddSessionConfigEntry(so, "session.model_external_initializers_file_folder_path",
					      dir), "external data folder");
	/* ONNX Runtime takes an initializer given in the options instead of
	 * the model's own of that name (OrtApi::AddInitializer). */
	if (ov) {
		ORT_TRY(s->ort->CreateCpuMemoryInfo(OrtArenaAllocator, OrtMemTypeDefault, &s->mem),
			"memory info");
		ORT_TRY(s->ort->CreateTensorWithDataAsOrtValue(s->mem, ov->data, ov->bytes, ov->dims,
			ov->ndims, (ONNXTensorElementDataType)ov->data_type, &s->override),
			"replacement initializer");
		ORT_TRY(s->ort->AddInitializer(so, ov->name, s->override), "replacement initializer");
	}
	ORT_TRY(s->ort->CreateSessionFromArray(s->env, model, size, so, &s->sess),
		"loading model/student_model.onnx");
	if (!s->mem)
		ORT_TRY(s->ort->CreateCpuMemoryInfo(OrtArenaAllocator, OrtMemTypeDefault, &s->mem),
			"memory info");
	if ((rc = discover(s, &b->set, err)))
		goto out;
	*out = s;
	s = NULL;
out:
	if (so)
		ort->ReleaseSessionOptions(so);
	rt_session_free(s);
	return rc;
}

void rt_session_free(struct rt_session *s)
{
	size_t i;

	if (!s)
		return;
	for (i = 0; i < s->nout; i++)
		free(s->out_names[i]);
	for (i = 0; i < s->npast; i++)
		free(s->past[i].name);
	json_decref(s->describe);
	if (s->sess)
		s->ort->ReleaseSession(s->sess);
	if (s->override)
		s->ort->ReleaseValue(s->override);
	if (s->feed)
		s->ort->ReleaseValue(s->feed);
	if (s->mem)
		s->ort->ReleaseMemoryInfo(s->mem);
	if (s->env)
		s->ort->ReleaseEnv(s->env);
	free(s);
}

json_t *rt_session_describe(const struct rt_session *s)
{
	return s->describe;
}

void rt_session_sink(struct rt_session *s, rt_sink_fn fn, void *ctx)
{
	s->sink = fn;
	s->sink_ctx = ctx;
}

bool rt_session_run_failed(const struct rt_session *s)
{
	return s->run_failed;
}

size_t rt_session_json_flags(const struct rt_session *s)
{
	return JSON_REAL_PRECISION(s->any_f64 ? 17 : 9);
}

static int fetch(struct rt_output *o, struct rt_session *s, OrtValue *val, const char *name,
		 nx_error *err)
{
	OrtTensorTypeAndShapeInfo *info = NULL;
	ONNXTensorElementDataType t;
	void *data = NULL;
	size_t i;
	int rc = 0;

	ORT_TRY(s->ort->GetTensorTypeAndShape(val, &info), "output shape");
	ORT_TRY(s->ort->GetTensorElementType(info, &t), "output type");
	ORT_TRY(s->ort->GetDimensionsCount(info, &o->nd), "output shape");
	if (o->nd > 8 || o->nd == 0) {
		rc = nx_error_set(err, NX_ECONFIG, NULL, 0, -1,
				  "the model output '%s' has %zu dimensions (1 to 8 handled)", name, o->nd);
		goto out;
	}
	ORT_TRY(s->ort->GetDimensions(info, o->dims, o->nd), "output shape");
	ORT_TRY(s->ort->GetTensorShapeElementCount(info, &o->count), "output size");
	ORT_TRY(s->ort->GetTensorMutableData(val, &data), "output data");
	if (!(o->v = malloc((o->count ? o->count : 1) * sizeof(double)))) {
		rc = nx_error_oom(err, NULL);
		goto out;
	}
	o->num = t == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT || t == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16
		 ? RT_NUM_F32 : t == ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE ? RT_NUM_F64 : RT_NUM_INT;
	for (i = 0; i < o->count; i++) {
		switch (t) {
		case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT: o->v[i] = ((float *)data)[i]; break;
		case ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE: o->v[i] = ((double *)data)[i]; break;
		case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16: o->v[i] = rt_half_to_double(((uint16_t *)data)[i]); break;
		case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64: o->v[i] = (double)((int64_t *)data)[i]; break;
		case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32: o->v[i] = ((int32_t *)data)[i]; break;
		case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8: o->v[i] = ((int8_t *)data)[i]; break;
		case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8: o->v[i] = ((uint8_t *)data)[i]; break;
		case ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL: o->v[i] = ((uint8_t *)data)[i] != 0; break;
		default:
			rc = nx_error_set(err, NX_ECONFIG, NULL, 0, -1,
					  "the model output '%s' has an element type the runtime cannot print",
					  name);
			goto out;
		}
	}
out:
	if (info)
		s->ort->ReleaseTensorTypeAndShapeInfo(info);
	return rc;
}

int rt_past_empty(OrtValue **out, struct rt_session *s, size_t k, int64_t batch, nx_error *err)
{
	int64_t shape[4] = { batch, s->past[k].dims[1], 0, s->past[k].dims[3] };
	int rc = 0;

	ORT_TRY(s->ort->CreateTensorAsOrtValue(s->alloc, shape, 4, s->past[k].type, out),
		"empty cache tensor");
out:
	return rc;
}

int rt_session_run(struct rt_session *s, const struct rt_bundle *b, int64_t *const *ids,
		   int64_t *const *types, int64_t *const *masks, const size_t *lens, size_t n,
		   json_t **results, nx_error *err)
{
	OrtValue *in[IN_COUNT + RT_PAST_MAX + 1] = { NULL }, *outv[RT_OUTPUTS_MAX] = { NULL };
	const char *names[IN_COUNT + RT_PAST_MAX + 1];
	struct rt_output o[RT_OUTPUTS_MAX];
	void *buf[IN_COUNT] = { NULL };
	size_t L = 1, r, t, k, ni = 0;
	bool raw = b->set.raw || b->set.task == RT_TASK_CLASSIFICATION || b->set.task == RT_TASK_RAW;
	bool left = nx_tokenizer_pad_left(b->tok);
	int64_t shape[2], one = 1;
	int rc = 0;

	memset(o, 0, sizeof(o));
	memset(results, 0, n * sizeof(*results));
	for (r = 0; r < n; r++)
		if (lens[r] > L)
			L = lens[r];
	shape[0] = (int64_t)n;
	shape[1] = (int64_t)L;
	for (k = 0; k < IN_COUNT; k++) {
		bool i32 = s->in_type[k] == ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32;
		size_t esz = i32 ? 4 : 8;

		if (!s->in_present[k])
			continue;
		if (k == IN_BRANCH) {   /* merged decoder: the branch without cache */
			if (!(buf[k] = calloc(1, 1))) {
				rc = nx_error_oom(err, NULL);
				goto out;
			}
			ORT_TRY(s->ort->CreateTensorWithDataAsOrtValue(s->mem, buf[k], 1, &one, 1,
				ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL, &in[ni]), "input tensor");
			ni++;
			continue;
		}
		if (!(buf[k] = calloc(n * L, esz))) {
			rc = nx_error_oom(err, NULL);
			goto out;
		}
		for (r = 0; r < n; r++) {
			size_t off = left ? L - lens[r] : 0;     /* pads before the text */
			int64_t pos = 0;

			for (t = 0; t < L; t++) {
				size_t at = t - off;    /* the text's token at t, if t >= off */
				bool pad = t < off || at >= lens[r];
				int64_t m = pad ? 0 : masks ? masks[r][at] : 1, v;

				pos += m;
				if (k == IN_POS)
					v = m ? pos - 1 : 1;
				else if (pad)
					v = k == IN_IDS ? nx_tokenizer_pad_id(b->tok)
					  : k == IN_TYPES ? nx_tokenizer_pad_type_id(b->tok) : 0;
				else if (k == IN_IDS)
					v = ids[r][at];
				else if (k == IN_MASK)
					v = m;
				else
					v = types ? types[r][at] : 0;

				if (i32)
					((int32_t *)buf[k])[r * L + t] = (int32_t)v;
				else
					((int64_t *)buf[k])[r * L + t] = v;
			}
		}
		ORT_TRY(s->ort->CreateTensorWithDataAsOrtValue(s->mem, buf[k], n * L * esz, shape, 2,
			i32 ? ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32 : ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64,
			&in[ni]), "input tensor");
		ni++;
	}
	/* a decoder's cache starts empty: one pass over the whole text */
	for (k = 0; k < s->npast; k++)
		if ((rc = rt_past_empty(&in[ni++], s, k, (int64_t)n, err)))
			goto out;
	/* an initializer given in place of the model's (rt_session_feed),
	 * after the inputs the loop below releases */
	memcpy(names, s->run_in, ni * sizeof(*names));
	if (s->feed) {
		names[ni] = s->feed_name;
		in[ni] = s->feed;
	}
	s->run_failed = true;
	ORT_TRY(s->ort->Run(s->sess, NULL, names, (const OrtValue *const *)in, ni + !!s->feed,
			    (const char *const *)s->out_names, s->nout, outv), "run");
	s->run_failed = false;
	for (k = 0; k < s->nout; k++) {
		if ((rc = fetch(&o[k], s, outv[k], s->out_names[k], err)))
			goto out;
		if (o[k].dims[0] != (int64_t)n) {
			rc = nx_error_set(err, NX_ECONFIG, NULL, 0, -1,
					  "the model output '%s' is not batched (first dimension %lld, batch %zu)",
					  s->out_names[k], (long long)o[k].dims[0], n);
			goto out;
		}
	}
	/* the numbers themselves (rt_session_sink): printing each output
	 * number as JSON costs more than the run of a decoder */
	for (k = 0; s->sink && k < s->nout; k++)
		if (s->sink(s->sink_ctx, o[k].v, o[k].count)) {
			rc = nx_error_oom(err, NULL);
			goto out;
		}
	if (s->sink)
		goto out;
	for (r = 0; r < n; r++) {
		json_t *res = json_object(), *outs = json_object(), *bad;
		const struct rt_output *m = &o[s->main_out];
		size_t row = m->count / n, off = left ? L - lens[r] : 0;

		results[r] = res;
		if (!res || !outs) {
			json_decref(outs);
			rc = nx_error_oom(err, NULL);
			goto out;
		}
		for (k = 0; raw && k < s->nout; k++) {
			size_t per = o[k].count / n, keep = per, from = 0;

			/* per-token outputs lose their padding, so that a result does
			 * not depend on the other texts of its batch */
			if (s->out_seq[k] && o[k].dims[1] == (int64_t)L) {
				keep = per / L * lens[r];
				from = per / L * off;
			}
			json_object_set_new(outs, s->out_names[k],
					    rt_reals(o[k].v + r * per + from, keep, o[k].num));
		}
		if (raw)
			json_object_set_new(res, "outputs", outs);
		else
			json_decref(outs);
		if (b->set.task == RT_TASK_CLASSIFICATION)
			rc = rt_classify(res, &b->set, m->v + r * row, row, m->num, err);
		else if (b->set.task == RT_TASK_EMBEDDING)
			rc = rt_embed(res, &b->set, m, r, off, lens[r], masks ? masks[r] : NULL, err);
		else if (b->set.task == RT_TASK_RERANK)
			rc = rt_rerank(res, m->v + r * row, row, m->num, err);
		if (rc)
			goto out;
		if ((bad = rt_nonfinite_result(res))) {
			json_decref(res);
			results[r] = bad;
		}
	}
out:
	if (rc)
		for (r = 0; r < n; r++) {
			json_decref(results[r]);
			results[r] = NULL;
		}
	for (k = 0; k < ni; k++)
		if (in[k])
			s->ort->ReleaseValue(in[k]);
	for (k = 0; k < IN_COUNT; k++)
		free(buf[k]);
	for (k = 0; k < s->nout; k++) {
		if (outv[k])
			s->ort->ReleaseValue(outv[k]);
		free(o[k].v);
	}
	return rc;
}
