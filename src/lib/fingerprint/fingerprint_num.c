/*
 * fingerprint_num.c - a tensor's elements as numbers, for every check that
 * compares values (the correlation, the per-vector blocks, the vectors
 * moved within themselves, the folded maps).
 *
 * One decoder, so that a type is read by all of them or by none: each
 * check had its own switch, and a type one of them lacked was a door
 * (red team 11: int64 codes; red team 12: float8 codes, r = 0.999 with the
 * teacher, read by none).  An integer code stands for the weight it
 * encodes up to an affine map, which every check allows; 64-bit integers
 * are read as doubles (53 high bits, more than any check needs).
 *
 * The float8 types (ONNX 1.14+: e4m3fn, e4m3fnuz, e5m2, e5m2fnuz; 1.18:
 * e8m0) are decoded by their formulas (onnx/onnx.proto3 and the OCP 8-bit
 * floating point specification): sign, then exponent and mantissa bits,
 * subnormals at exponent 0.  Sub-byte packed types (int4, uint4,
 * float4e2m1, int2, uint2) have no whole byte per element and are not
 * read here: nx_fp__num_width() is 0 for them, and the student walk
 * unpacks such a tensor to int8 first (fingerprint.c unpack_sub_byte).
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "fingerprint_int.h"

unsigned nx_fp__num_width(int32_t dtype)
{
	switch (dtype) {
	case 2: case 3: case 9:                 /* uint8, int8, bool */
	case 17: case 18: case 19: case 20: case 24:  /* float8 */
		return 1;
	case 4: case 5: case 10: case 16: return 2;   /* uint16, int16, float16, bfloat16 */
	case 1: case 6: case 12: return 4;            /* float32, int32, uint32 */
	case 7: case 11: case 13: return 8;           /* int64, float64, uint64 */
	default: return 0;
	}
}

bool nx_fp__num_float(int32_t dtype)
{
	return dtype == 1 || dtype == 10 || dtype == 16 || dtype == 11 ||
	       (dtype >= 17 && dtype <= 20) || dtype == 24;
}

/*
 * Float8 code c: ebits exponent bits of bias `bias`, the rest mantissa.
 * fnuz: no negative zero, 0x80 is the NaN, no infinity.  fn (e4m3fn): no
 * infinity, S.1111.111 is the NaN.  e5m2: IEEE-like, exponent all ones is
 * infinity (mantissa 0) or NaN.
 */
enum f8_kind { F8_IEEE, F8_FN, F8_FNUZ };

static double f8(unsigned c, unsigned ebits, int bias, enum f8_kind kind)
{
	unsigned mbits = 7 - ebits, e = (c >> mbits) & ((1u << ebits) - 1), m = c & ((1u << mbits) - 1);
	double v;

	if (kind == F8_FNUZ && c == 0x80)
		return NAN;
	if (kind == F8_FN && e == (1u << ebits) - 1 && m == (1u << mbits) - 1)
		return NAN;
	if (kind == F8_IEEE && e == (1u << ebits) - 1)
		v = m ? NAN : INFINITY;
	else if (e == 0)
		v = ldexp((double)m, 1 - bias - (int)mbits);
	else
		v = ldexp((double)((1u << mbits) | m), (int)e - bias - (int)mbits);
	return (c & 0x80) ? -v : v;
}

double nx_fp__num_get(const unsigned char *p, int32_t dtype)
{
	uint64_t u64;
	uint32_t u32;
	uint16_t u16;
	float f;
	double d;

	switch (dtype) {
	case 1: memcpy(&f, p, 4); return f;
	case 2: case 9: return p[0];
	case 3: return (int8_t)p[0];
	case 4: memcpy(&u16, p, 2); return u16;
	case 5: memcpy(&u16, p, 2); return (int16_t)u16;
	case 6: memcpy(&u32, p, 4); return (int32_t)u32;
	case 12: memcpy(&u32, p, 4); return u32;
	case 7: memcpy(&u64, p, 8); return (double)(int64_t)u64;
	case 13: memcpy(&u64, p, 8); return (double)u64;
	case 10: memcpy(&u16, p, 2); u32 = nx_fp__f16_to_f32(u16); memcpy(&f, &u32, 4); return f;
	case 16: memcpy(&u16, p, 2); u32 = (uint32_t)u16 << 16; memcpy(&f, &u32, 4); return f;
	case 11: memcpy(&d, p, 8); return d;
	case 17: return f8(p[0], 4, 7, F8_FN);      /* e4m3fn */
	case 18: return f8(p[0], 4, 8, F8_FNUZ);      /* e4m3fnuz */
	case 19: return f8(p[0], 5, 15, F8_IEEE);     /* e5m2 */
	case 20: return f8(p[0], 5, 16, F8_FNUZ);     /* e5m2fnuz */
	case 24: return p[0] == 0xFF ? NAN : ldexp(1.0, (int)p[0] - 127);   /* e8m0 */
	default: return NAN;   /* nx_fp__num_width() is 0: never asked */
	}
}

void nx_fp__num_get_n(double *out, const unsigned char *p, size_t n, size_t stride,
		      int32_t dtype)
{
	size_t i;
	float f;

	if (dtype == 1) {   /* the common case, without the switch */
		for (i = 0; i < n; i++, p += stride) {
			memcpy(&f, p, 4);
			out[i] = f;
		}
		return;
	}
	for (i = 0; i < n; i++, p += stride)
		out[i] = nx_fp__num_get(p, dtype);
}
