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
 * fewer bytes than the fingerprint check judges (NX_FP_MIN_BYTES), inline
 * or in external data.  Any
 * other shared tensor is a teacher tensor, and a teacher name the student
 * reads directly is still refused by the term check of the rewrite.
 */
#include "export_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


#define ALIAS_BLOCK (64u << 10)   /* bytes read at a time to judge contents */
#define ALIAS_PERIOD 8u           /* the widest element a constant fill repeats */

void ex_alias_mark(struct ex *x)
{
	size_t i;

	for (i = 0; i < x->nnodes; i++) {
		struct ex_node *n = &x->nodes[i];

		n->alias = n->op && !strcmp(n->op, "Identity") && n->nin == 1 && n->nout == 1 &&
			   nx_strset_has(&x->initializers, n->in[0]) && ex_term_of(x, n->in[0]);
	}
}

/* Contents judged so far: the first ALIAS_PERIOD bytes and whether every
 * later byte repeats them. */
struct judge {
	unsigned char first[ALIAS_PERIOD];
	uint64_t seen, bytes;
	bool flat;
	unsigned char *buf;
};

/* Feed [off, off + len) of fd to j. */
static int judge_range(struct ex *x, struct judge *j, int fd, const char *path, uint64_t off,
		       uint64_t len)
{
	uint64_t done, k, n;
	ssize_t got;

	j->bytes += len;
	for (done = 0; j->flat && done < len; done += n) {
		n = len - done < ALIAS_BLOCK ? len - done : ALIAS_BLOCK;
		got = pread(fd, j->buf, (size_t)n, (off_t)(off + done));
		if (got != (ssize_t)n)
			return nx_error_errno(x->err, NX_EIO, got < 0 ? errno : EIO, path,
					      "cannot read %s", path);
		for (k = 0; k < n && j->flat; k++, j->seen++) {
			if (j->seen < ALIAS_PERIOD)
				j->first[j->seen] = j->buf[k];
			else
				j->flat = j->buf[k] == j->first[j->seen % ALIAS_PERIOD];
		}
	}
	return 0;
}

/*
 * Whether the data of tensor fld (raw_data, the packed typed lists, or its
 * external data) repeats its first ALIAS_PERIOD bytes throughout, and its
 * size.  String data, unpacked lists and external data that cannot be read
 * (a dry run without a workspace) are never "flat".
 */
int ex_alias_flat(struct ex *x, const struct nx_pb_reader *parent,
		  const struct nx_pb_field *fld, bool *flat, uint64_t *bytes, const char *name)
{
	struct judge j = { .flat = true };
	struct ext_ref e = { NULL, -1, -1 };
	struct ex_src src = { -1, NULL, 0, 0 };
	struct nx_pb_reader r;
	struct nx_pb_field f;
	bool external = false;
	int rc;

	if ((rc = nx_pb_sub(&r, parent, fld, x->err)) != 0)
		return rc;
	if (!(j.buf = malloc(ALIAS_BLOCK)))
		return ex_oom(x);
	while ((rc = nx_pb_next(&r, &f, x->err)) > 0) {
		bool data = f.num == 9 || f.num == 4 || f.num == 5 || f.num == 7 || f.num == 10 ||
			    f.num == 11;

		rc = 0;
		if (f.num == 13 && f.wire == NX_PB_LEN)
			rc = ex_ext_entry(x, &r, &f, &e);
		else if (f.num == 14 && f.wire == NX_PB_VARINT)
			external = f.value == 1;
		else if (data && f.wire == NX_PB_LEN)
			rc = judge_range(x, &j, x->src_fd, x->path, f.offset, f.len);
		else if (data || f.num == 6) {  /* unpacked numbers, strings */
			j.flat = false;
			j.bytes += f.wire == NX_PB_LEN ? f.len : 8;
		}
		if (rc)
			goto out;
	}
	if (rc)
		goto out;
	if (external && e.location &&
	    (rc = ex_external(x, name, e.location, e.offset, e.length, fld->tag_offset, &src)) != 0)
		goto out;
	if (external && src.fd >= 0)
		rc = judge_range(x, &j, src.fd, src.path, src.off, src.len);
	else if (external)
		j.flat = false;
	*flat = j.flat;
	*bytes = external && src.fd < 0 && e.length > 0 ? (uint64_t)e.length : j.bytes;
out:
	free(j.buf);
	free(e.location);
	ex_src_release(&src);
	return rc;
}
