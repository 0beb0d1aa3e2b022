/*
 * onnx_canon_rules.c - what the canonical form (nx_onnx_canon_check) asks
 * of a tensor's payload and of an attribute's value, once the walk in
 * onnx_canon.c has seen all their fields.  It also holds what both files
 * use to report a departure (nx_canon__depart) and to size a varint.
 */
#include "onnx_canon_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The packed varints of [f] are shortest, sign-extended int32 when int32
 * (and within [lo, hi]); *count their number. */
static int packed_varints(struct canon *c, const struct nx_pb_reader *r,
			  const struct nx_pb_field *f, bool int32, int64_t lo, int64_t hi,
			  uint64_t *count)
{
	struct nx_pb_reader p;
	int rc;

	if ((rc = nx_pb_sub(&p, r, f, c->err)) != 0)
		return rc;
	*count = 0;
	while (p.pos < p.end) {
		uint64_t start = p.pos, v;
		int64_t s;

		if ((rc = nx_pb_read_varint(&p, &v, c->err)) != 0)
			return rc;
		s = (int64_t)v;
		if (p.pos - start != nx_canon__varint_len(v))
			return nx_canon__depart(c, start, "tensor field %u holds a padded varint", f->num);
		if (int32 && s != (int32_t)s)
			return nx_canon__depart(c, start, "tensor field %u holds %lld, not an int32: "
				      "ONNX Runtime reads only its low 32 bits", f->num, (long long)s);
		if (s < lo || s > hi)
			return nx_canon__depart(c, start, "tensor field %u holds %lld, outside the range of "
				      "the tensor's data type", f->num, (long long)s);
		(*count)++;
	}
	return 0;
}

/* A bool's raw_data bytes are 0 or 1: ONNX Runtime reads any other byte
 * as true, so its 7 other bits were free data in a live tensor (review C
 * of stop 22), as int32_data's bools are held to 0..1 (int32_range). */
static int bool_bytes(struct canon *c, const struct nx_pb_field *f)
{
	unsigned char buf[4096];
	uint64_t at;
	int rc;

	for (at = 0; at < f->len; at += sizeof(buf)) {
		size_t k = f->len - at < sizeof(buf) ? (size_t)(f->len - at) : sizeof(buf);

		if ((rc = nx_pb_read_at(&c->f, f->offset + at, buf, k, c->err)) != 0)
			return rc;
		for (size_t i = 0; i < k; i++)
			if (buf[i] > 1)
				return nx_canon__depart(c, f->offset + at + i, "bool tensor holds "
					      "the byte %u, not 0 or 1", buf[i]);
	}
	return 0;
}

/* The range a value of dtype takes in int32_data (sign-extended). */
static void int32_range(int32_t dtype, int64_t *lo, int64_t *hi)
{
	*lo = 0;
	switch (dtype) {
	case 9:                                  /* bool */
		*hi = 1;
		break;
	case 3:                                  /* int8 */
		*lo = -128, *hi = 127;
		break;
	case 5:                                  /* int16 */
		*lo = -32768, *hi = 32767;
		break;
	case 4: case 10: case 16:                /* uint16, float16, bfloat16 */
		*hi = 65535;
		break;
	case 6:                                  /* int32 */
		*lo = INT32_MIN, *hi = INT32_MAX;
		break;
	default:                                 /* uint8, float8, packed sub-byte */
		*hi = 255;
	}
}

/* A canonical external_data entry value: plain decimal, no sign, no
 * leading zero. */
static bool plain_decimal(const char *s)
{
	size_t i;

	if (!s[0] || (s[0] == '0' && s[1]) || strlen(s) > 19)
		return false;
	for (i = 0; s[i]; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

/* external_data: location, offset and length, once each and in that
 * order (as the ONNX helpers, torch and nexus write them), plain decimal
 * values; *length the length. */
static int check_external(struct canon *c, const struct nx_pb_reader *r, const struct nx_pb_field *fld,
			  int64_t *length)
{
	static const char *const keys[] = { "location", "offset", "length" };
	struct nx_pb_reader t = *r;
	struct nx_pb_field f;
	unsigned next = 0, k;
	int rc;

	*length = -1;
	t.pos = fld->tag_offset;
	LOOP_FIELDS(c, &t, &f, rc) {
		struct nx_pb_reader e;
		struct nx_pb_field ef;
		char *key = NULL, *val = NULL;

		if (f.num != 13)
			continue;
		if ((rc = nx_pb_sub(&e, &t, &f, c->err)) != 0)
			return rc;
		LOOP_FIELDS(c, &e, &ef, rc) {
			char **dst = ef.num == 1 ? &key : &val;

			free(*dst);
			*dst = NULL;
			if ((rc = nx_pb_read_string(&c->f, &ef, NX_ONNX_NAME_MAX, dst, NULL, c->err)))
				break;
		}
		k = next;
		if (!rc && (!key || !val || k == 3 || strcmp(key, keys[k]) ||
			    (k > 0 && !plain_decimal(val))))
			rc = nx_canon__depart(c, f.tag_offset, "external_data entry '%.64s' is not location, "
				    "offset, length (once each, in that order, plain decimal values)",
				    key ? key : "");
		else if (!rc && k == 2)
			*length = strtoll(val, NULL, 10);
		next = k + 1;
		free(key);
		free(val);
		if (rc)
			return rc;
	}
	if (rc)
		return rc;
	return next == 3 ? 0 : nx_canon__depart(c, fld->tag_offset, "external_data lacks its location, "
				      "offset or length");
}

/* TensorProto: exactly one payload, of exactly the size dims and
 * data_type give. */
int nx_canon__tensor(struct canon *c, const struct nx_pb_reader *r,
			const struct nx_pb_field *fld, const struct seen *s)
{
	static const uint32_t payloads[] = { 4, 5, 6, 7, 9, 10, 11 };
	int32_t dtype = s->count[2] ? (int32_t)s->first[2].value : 0;
	size_t bits = nx_onnx_dtype_bits(dtype);
	unsigned width = 0;
	uint32_t typed = nx_onnx__typed_field(dtype, &width), have = 0, i;
	uint64_t want, n = s->nelem;
	bool external = s->count[14] && s->first[14].value == 1;
	int64_t length;
	int rc;

	if (s->nelem_overflow)
		return nx_canon__depart(c, fld->tag_offset, "tensor has more than 2^64 elements");
	if (!s->count[2] || (!bits && dtype != 8))
		return nx_canon__depart(c, fld->tag_offset, "tensor has no known data_type");
	if (s->count[3])
		return nx_canon__depart(c, s->first[3].tag_offset, "tensor has a segment (split tensors "
			      "are not read by ONNX Runtime)");
	if (n == 0 && s->dims_big)
		return nx_canon__depart(c, fld->tag_offset, "an empty tensor has a dimension over %u",
			      NX_ONNX_DIM_VALUE_MAX);
	if (s->count[14] && s->first[14].value > 1)
		return nx_canon__depart(c, s->first[14].tag_offset, "tensor has an unknown data_location");
	if (external != (s->count[13] > 0))
		return nx_canon__depart(c, fld->tag_offset, "tensor has external_data without "
			      "data_location EXTERNAL, or the reverse");
	for (i = 0; i < sizeof(payloads) / sizeof(payloads[0]); i++) {
		if (!s->count[payloads[i]])
			continue;
		if (have || external)
			return nx_canon__depart(c, s->first[payloads[i]].tag_offset, "tensor has a second "
				      "payload field (%u): ONNX Runtime reads only one",
				      payloads[i]);
		have = payloads[i];
	}
	/* the bytes the elements take: sub-byte types packed */
	want = bits && n > UINT64_MAX / bits ? UINT64_MAX : (n * bits + 7) / 8;
	if (external) {
		if ((rc = check_external(c, r, &s->first[13], &length)) != 0)
			return rc;
		if (length < 0 || (uint64_t)length != want)
			return nx_canon__depart(c, s->first[13].tag_offset, "external tensor's length is "
				      "not the %llu bytes its shape and type take",
				      (unsigned long long)want);
		return 0;
	}
	if (!have)
		return n == 0 ? 0 : nx_canon__depart(c, fld->tag_offset, "tensor of %llu elements has no "
					   "data", (unsigned long long)n);
	if (dtype == 8)
		return have == 6 && s->count[6] == n ? 0 :
		       nx_canon__depart(c, s->first[have].tag_offset, "string tensor does not hold exactly "
			      "one string per element");
	if (have == 9 && s->first[9].len != want)
		return nx_canon__depart(c, s->first[9].tag_offset, "raw_data of %llu bytes where its shape "
			      "and type take %llu", (unsigned long long)s->first[9].len,
			      (unsigned long long)want);
	if (have == 9)
		return dtype == 9 ? bool_bytes(c, &s->first[9]) : 0;
	if (have != typed)
		return nx_canon__depart(c, s->first[have].tag_offset, "tensor field %u does not hold a %s",
			      have, nx_onnx_dtype_name(dtype));
	if (s->count[have] > 1)
		return nx_canon__depart(c, s->first[have].tag_offset, "tensor field %u is split into "
			      "several runs", have);
	/* one value per element (two for complex; per byte for sub-byte) */
	if (bits < 8)
		n = want;
	else if (dtype == 14 || dtype == 15)
		n *= 2;
	if (have == 4 || have == 10) {
		uint64_t per = have == 4 ? 4 : 8;

		return n <= UINT64_MAX / per && s->first[have].len == n * per ? 0 :
		       nx_canon__depart(c, s->first[have].tag_offset, "tensor field %u does not hold "
			      "exactly its %llu elements", have, (unsigned long long)n);
	} else {
		int64_t lo = INT64_MIN, hi = INT64_MAX;
		uint64_t count = 0;

		if (have == 5)
			int32_range(dtype, &lo, &hi);
		else if (have == 11 && dtype == 12)
			lo = 0, hi = UINT32_MAX;
		else if (have == 11)
			lo = INT64_MIN;
		if ((rc = packed_varints(c, r, &s->first[have], have == 5, lo, hi, &count)) != 0)
			return rc;
		return count == n ? 0 :
		       nx_canon__depart(c, s->first[have].tag_offset, "tensor field %u holds %llu values "
			      "for %llu elements", have, (unsigned long long)count,
			      (unsigned long long)n);
	}
}

/* AttributeProto.type -> the one value field it names. */
static uint32_t attr_value_field(uint64_t type)
{
	static const uint32_t fields[] = {
		[1] = 2, [2] = 3, [3] = 4, [4] = 5, [5] = 6, [6] = 7, [7] = 8, [8] = 9,
		[9] = 10, [10] = 11, [11] = 22, [12] = 23, [13] = 14, [14] = 15,
	};

	return type < sizeof(fields) / sizeof(fields[0]) ? fields[type] : 0;
}

/* AttributeProto: the value its type names and no other; lists short. */
int nx_canon__attr(struct canon *c, const struct nx_pb_field *fld, const struct seen *s)
{
	static const uint32_t values[] = { 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 14, 15, 22, 23 };
	uint32_t want = s->count[20] ? attr_value_field(s->first[20].value) : 0, i;

	if (!want)
		return nx_canon__depart(c, fld->tag_offset, "attribute has no known type");
	for (i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
		uint32_t v = values[i];

		if (v != want && s->count[v])
			return nx_canon__depart(c, s->first[v].tag_offset, "attribute of type %llu also has "
				      "field %u, which ONNX Runtime never reads",
				      (unsigned long long)s->first[20].value, v);
		if (v == want && s->count[v] > NX_ONNX_ATTR_LIST_MAX)
			return nx_canon__depart(c, s->first[v].tag_offset, "attribute list of %u values, over "
				      "the limit of %u: data belongs in an initializer", s->count[v],
				      NX_ONNX_ATTR_LIST_MAX);
	}
	/* a value is required unless the attribute refers to a function's */
	if (!s->count[want] && !s->count[21] && want != 7 && want != 8 && want != 9 &&
	    want != 10 && want != 11 && want != 15 && want != 23)
		return nx_canon__depart(c, fld->tag_offset, "attribute has no value");
	return 0;
}

int nx_canon__depart(struct canon *c, uint64_t offset, const char *fmt, ...)
{
	va_list ap;

	c->out->canonical = false;
	c->out->offset = (int64_t)offset;
	va_start(ap, fmt);
	vsnprintf(c->out->what, sizeof(c->out->what), fmt, ap);
	va_end(ap);
	return CANON_STOP;
}

unsigned nx_canon__varint_len(uint64_t v)
{
	unsigned n = 1;

	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}
