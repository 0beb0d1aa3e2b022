/*
 * overridable.c - one ONNX Runtime session in which chosen initializers can
 * be replaced run by run (liveness.c checks every initializer with it).
 *
 * ONNX (IR version 4 and later) lets an initializer also be an input of
 * the main graph: its contents are then a default that a run may feed
 * instead (ONNX Runtime's "overridable initializers").  The bundle's model
 * lists none so; this file reads it as if it did, without writing it
 * anywhere: protobuf merges a message field that occurs twice, so the
 * model's bytes followed by one more ModelProto.graph field holding only
 * GraphProto.input entries (a ValueInfoProto per initializer: its name,
 * element type and shape) parse as the model with those inputs appended.
 * The model's bytes are mapped copy-on-write; only the page that holds its
 * end is copied, and the added bytes follow it in memory.
 *
 * The encoder is written here (thirty lines): the runtime links no
 * protobuf library, and only these five nested messages are written.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "rt_ort.h"

struct wbuf {
	unsigned char *p;
	size_t n, cap;
	bool oom;
};

static void put(struct wbuf *w, const void *src, size_t len)
{
	if (w->oom)
		return;
	if (len > w->cap - w->n) {
		size_t cap = w->cap ? w->cap : 256;
		unsigned char *p;

		while (cap - w->n < len)
			cap *= 2;
		if (!(p = realloc(w->p, cap))) {
			w->oom = true;
			return;
		}
		w->p = p;
		w->cap = cap;
	}
	memcpy(w->p + w->n, src, len);
	w->n += len;
}

static void varint(struct wbuf *w, uint64_t v)
{
	unsigned char b[10];
	size_t n = 0;

	do {
		b[n++] = (unsigned char)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
		v >>= 7;
	} while (v);
	put(w, b, n);
}

/* Field `field` (wire type 2) holding the bytes of inner, which is reset. */
static void message(struct wbuf *w, unsigned field, struct wbuf *inner)
{
	varint(w, field << 3 | 2);
	varint(w, inner->n);
	put(w, inner->p, inner->n);
	w->oom |= inner->oom;
	inner->n = 0;
}

/* ModelProto { graph (7) { input (11) { ValueInfoProto } ... } } */
static int encode(struct wbuf *model, const struct rt_override *ov, size_t n)
{
	struct wbuf graph = {0}, vi = {0}, type = {0}, tensor = {0}, shape = {0}, dim = {0};
	size_t i, k;

	for (i = 0; i < n; i++) {
		for (k = 0; k < ov[i].ndims; k++) {
			varint(&dim, 1 << 3);                   /* Dimension.dim_value */
			varint(&dim, (uint64_t)ov[i].dims[k]);
			message(&shape, 1, &dim);               /* TensorShapeProto.dim */
		}
		varint(&tensor, 1 << 3);                        /* TypeProto.Tensor.elem_type */
		varint(&tensor, (uint64_t)ov[i].data_type);
		message(&tensor, 2, &shape);                    /* .shape */
		message(&type, 1, &tensor);                     /* TypeProto.tensor_type */
		varint(&vi, 1 << 3 | 2);                        /* ValueInfoProto.name */
		varint(&vi, strlen(ov[i].name));
		put(&vi, ov[i].name, strlen(ov[i].name));
		message(&vi, 2, &type);                         /* .type */
		message(&graph, 11, &vi);                       /* GraphProto.input */
	}
	message(model, 7, &graph);                              /* ModelProto.graph */
	free(graph.p);
	free(vi.p);
	free(type.p);
	free(tensor.p);
	free(shape.p);
	free(dim.p);
	return model->oom ? NX_ENOMEM : 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* NX_ECHECK unless every name of ov[] is an overridable initializer of s. */
static int all_overridable(struct rt_session *s, const struct rt_override *ov, size_t n,
			   nx_error *err)
{
	size_t count = 0, i, j = 0;
	char **have = NULL;
	const char **want = NULL;
	int rc = 0;

	ORT_TRY(s->ort->SessionGetOverridableInitializerCount(s->sess, &count),
		"overridable initializers");
	have = calloc(count ? count : 1, sizeof(*have));
	want = calloc(n ? n : 1, sizeof(*want));
	if (!have || !want) {
		rc = nx_error_oom(err, NULL);
		goto out;
	}
	for (i = 0; i < count; i++)
		ORT_TRY(s->ort->SessionGetOverridableInitializerName(s->sess, i, s->alloc, &have[i]),
			"overridable initializer name");
	for (i = 0; i < n; i++)
		want[i] = ov[i].name;
	/* sorted, then merged: linear after the sort, whatever the names */
	qsort(have, count, sizeof(*have), cmp_str);
	qsort(want, n, sizeof(*want), cmp_str);
	for (i = 0; i < n; i++) {
		while (j < count && strcmp(have[j], want[i]) < 0)
			j++;
		if (j == count || strcmp(have[j], want[i])) {
			rc = nx_error_set(err, NX_ECHECK, RT_MODEL, 0, -1,
					  "onnx runtime does not offer initializer '%.200s' as "
					  "overridable", want[i]);
			goto out;
		}
	}
out:
	for (i = 0; have && i < count; i++)
		if (have[i])
			s->alloc->Free(s->alloc, have[i]);
	free(have);
	free(want);
	return rc;
}

int rt_session_open_overridable(struct rt_session **out, const struct rt_bundle *b,
				const struct rt_override *ov, size_t n, nx_error *err)
{
	struct wbuf add = {0};
	size_t page = (size_t)sysconf(_SC_PAGESIZE), fsize, total = 0;
	unsigned char *map = MAP_FAILED;
	int rc;

	*out = NULL;
	if ((rc = encode(&add, ov, n))) {
		rc = nx_error_oom(err, NULL);
		goto out;
	}
	fsize = (b->model_size + page - 1) / page * page;
	total = (b->model_size + add.n + page - 1) / page * page;
	/* anonymous pages for the whole, then the model's own pages over the
	 * start, private: the write below copies only the last of them (a
	 * file page past its end reads as zeros) */
	map = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (map == MAP_FAILED ||
	    (fsize && mmap(map, fsize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, b->model_fd,
			   0) == MAP_FAILED)) {
		rc = nx_error_errno(err, NX_EIO, errno, NULL, "cannot map the model");
		goto out;
	}
	memcpy(map + b->model_size, add.p, add.n);
	if ((rc = rt_session_open_model(out, b, false, NULL, true, map, b->model_size + add.n,
					err)))
		goto out;
	if ((rc = all_overridable(*out, ov, n, err))) {
		rt_session_free(*out);
		*out = NULL;
	}
out:
	if (map != MAP_FAILED)
		munmap(map, total);
	free(add.p);
	return rc;
}

int rt_session_feed(struct rt_session *s, const struct rt_override *ov, nx_error *err)
{
	int rc = 0;

	if (s->feed)
		s->ort->ReleaseValue(s->feed);
	s->feed = NULL;
	s->feed_name = NULL;
	if (!ov)
		return 0;
	ORT_TRY(s->ort->CreateTensorWithDataAsOrtValue(s->mem, ov->data, ov->bytes, ov->dims,
		ov->ndims, (ONNXTensorElementDataType)ov->data_type, &s->feed),
		"replacement initializer");
	s->feed_name = ov->name;
out:
	return rc;
}
