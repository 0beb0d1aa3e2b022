/*
 * export_alias.c - initializers that torch.onnx.export shares between the
 * teacher and the student of one combined module.
 *
 * torch stores equal initializers once: a student's zero bias of the same
 * shape as a teacher's becomes `Identity(teacher.fc.bias) ->
 * student.fc.bias`.  The student does not compute with the teacher there;
 * it only names the same constant.  Such an alias is resolved by content:
 * the tensor is written again under the student's name and the Identity and
 * the teacher name go.  Only contents that carry no teacher knowledge are
 * resolved - a constant fill (zeros, ones: a 1, 2, 4 or 8 byte pattern) or
 * fewer bytes than the fingerprint check judges (NX_FP_MIN_BYTES).  Any
 * other shared tensor is a teacher tensor, and a teacher name the student
 * reads directly is still refused by the term check of the rewrite.
 */
#include "export_int.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "nexus/fingerprint.h"

#define ALIAS_BLOCK (64u << 10)   /* bytes read at a time to judge contents */
#define ALIAS_PERIOD 8u           /* the widest element a constant fill repeats */

void ex_alias_mark(struct ex *x)
{
	size_t i;

	for (i = 0; i < x->nnodes; i++) {
		struct ex_node *n = &x->nodes[i];

		n->alias = n->op && !strcmp(n->op, "Identity") && n->nin == 1 && n->nout == 1 &&
			   ex_set_has(&x->initializers, n->in[0]) && ex_term_of(x, n->in[0]);
	}
}

/*
 * Whether the data fields of tensor fld (raw_data and the packed typed
 * lists) repeat their first ALIAS_PERIOD bytes throughout; their size in
 * *bytes.  External or string data is never "flat".
 */
static int tensor_flat(struct ex *x, const struct nx_pb_reader *parent,
		       const struct nx_pb_field *fld, bool *flat, uint64_t *bytes)
{
	unsigned char *buf = NULL, first[ALIAS_PERIOD];
	struct nx_pb_reader r;
	struct nx_pb_field f;
	uint64_t seen = 0, done, i;
	int rc;

	*flat = true;
	*bytes = 0;
	if ((rc = nx_pb_sub(&r, parent, fld, x->err)) != 0)
		return rc;
	if (!(buf = malloc(ALIAS_BLOCK)))
		return ex_oom(x);
	while ((rc = nx_pb_next(&r, &f, x->err)) > 0) {
		rc = 0;
		if ((f.num == 6 || (f.num == 14 && f.value == 1)) ||
		    ((f.num == 4 || f.num == 5 || f.num == 7 || f.num == 10 || f.num == 11) &&
		     f.wire != NX_PB_LEN)) {
			*flat = false;  /* strings, external data, unpacked lists */
			*bytes += f.wire == NX_PB_LEN ? f.len : 8;
			continue;
		}
		if (!(f.wire == NX_PB_LEN && (f.num == 9 || f.num == 4 || f.num == 5 ||
					      f.num == 7 || f.num == 10 || f.num == 11)))
			continue;
		*bytes += f.len;
		for (done = 0; *flat && done < f.len; done += i) {
			i = f.len - done < ALIAS_BLOCK ? f.len - done : ALIAS_BLOCK;
			if ((rc = nx_pb_read_at(&x->f, f.offset + done, buf, (size_t)i, x->err)) != 0)
				goto out;
			for (uint64_t k = 0; k < i && *flat; k++, seen++) {
				if (seen < ALIAS_PERIOD)
					first[seen] = buf[k];
				else
					*flat = buf[k] == first[seen % ALIAS_PERIOD];
			}
		}
	}
out:
	free(buf);
	return rc;
}

int ex_alias_emit(struct ex *x, const struct nx_pb_reader *r, const struct nx_pb_field *fld,
		  const char *name, struct pw_msg *m)
{
	struct pw_msg *c = NULL;
	bool judged = false, flat = false;
	uint64_t bytes = 0;
	size_t i;
	int rc = 0;

	for (i = 0; i < x->nnodes && !rc; i++) {
		const struct ex_node *n = &x->nodes[i];

		if (!n->materialise || strcmp(n->in[0], name))
			continue;
		if (!judged && (rc = tensor_flat(x, r, fld, &flat, &bytes)) != 0)
			break;
		judged = true;
		if (!flat && bytes >= NX_FP_MIN_BYTES) {
			rc = nx_error_set(x->err, NX_ECHECK, x->path, 0, (long long)fld->tag_offset,
					  "%s: the student's tensor '%s' is the teacher's '%s' (the "
					  "exporter stored equal tensors once), and its %" PRIu64
					  " bytes are not a constant fill: the student computes with "
					  "teacher weights; give the student its own values and "
					  "re-export", x->path, n->out[0], name, bytes);
			break;
		}
		if ((rc = ex_check_term(x, "initializer", n->out[0], fld->offset)) != 0 ||
		    (rc = ex_rewrite_tensor_as(x, r, fld, n->out[0], &c)) != 0)
			break;
		if ((rc = pw_child(m, fld->num, c)) != 0) {
			rc = ex_oom(x);
			break;
		}
		x->res->kept_initializers++;
	}
	return rc;
}
