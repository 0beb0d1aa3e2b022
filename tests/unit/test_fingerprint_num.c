/*
 * test_fingerprint_num.c - the one element decoder the value checks share
 * (src/lib/fingerprint/fingerprint_num.c): widths, and the float8 types
 * against values from their specifications (ONNX's float8 table; OCP 8-bit
 * floating point), not against the decoder's own formula.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "../../src/lib/fingerprint/fingerprint_int.h"

static double f8(int32_t dtype, unsigned code)
{
	unsigned char c = (unsigned char)code;

	return nx_fp__num_get(&c, dtype);
}

static void test_widths(void **state)
{
	static const struct { int32_t dt; unsigned w; } tab[] = {
		{ 1, 4 }, { 2, 1 }, { 3, 1 }, { 4, 2 }, { 5, 2 }, { 6, 4 }, { 7, 8 },
		{ 8, 0 },   /* string */
		{ 9, 1 }, { 10, 2 }, { 11, 8 }, { 12, 4 }, { 13, 8 },
		{ 14, 0 }, { 15, 0 },   /* complex */
		{ 16, 2 }, { 17, 1 }, { 18, 1 }, { 19, 1 }, { 20, 1 },
		{ 21, 0 }, { 22, 0 }, { 23, 0 },   /* uint4, int4, float4e2m1: packed */
		{ 24, 1 }, { 25, 0 }, { 26, 0 }, { 0, 0 }, { 99, 0 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++)
		assert_int_equal(nx_fp__num_width(tab[i].dt), tab[i].w);
	assert_true(nx_fp__num_float(17) && nx_fp__num_float(24) && nx_fp__num_float(16));
	assert_false(nx_fp__num_float(6) || nx_fp__num_float(9) || nx_fp__num_float(21));
}

static void test_float8_values(void **state)
{
	(void)state;
	/* e4m3fn: bias 7, no infinity, S.1111.111 NaN, max 448 */
	assert_true(f8(17, 0x38) == 1.0 && f8(17, 0xB8) == -1.0);
	assert_true(f8(17, 0x7E) == 448.0 && f8(17, 0x01) == ldexp(1, -9));
	assert_true(f8(17, 0x08) == ldexp(1, -6) && isnan(f8(17, 0x7F)) && isnan(f8(17, 0xFF)));
	assert_true(f8(17, 0x78) == 256.0);   /* exponent all ones is a number */
	/* e4m3fnuz: bias 8, 0x80 NaN, max 240 */
	assert_true(f8(18, 0x40) == 1.0 && f8(18, 0x7F) == 240.0 && f8(18, 0x01) == ldexp(1, -10));
	assert_true(isnan(f8(18, 0x80)) && f8(18, 0x00) == 0.0 && f8(18, 0xC0) == -1.0);
	/* e5m2: bias 15, IEEE-like */
	assert_true(f8(19, 0x3C) == 1.0 && f8(19, 0x7B) == 57344.0 && f8(19, 0x01) == ldexp(1, -16));
	assert_true(isinf(f8(19, 0x7C)) && f8(19, 0xFC) < 0 && isnan(f8(19, 0x7D)));
	/* e5m2fnuz: bias 16, 0x80 NaN, max 57344 */
	assert_true(f8(20, 0x40) == 1.0 && f8(20, 0x7F) == 57344.0 && f8(20, 0x01) == ldexp(1, -17));
	assert_true(isnan(f8(20, 0x80)));
	/* e8m0: 2^(c - 127), 0xFF NaN */
	assert_true(f8(24, 127) == 1.0 && f8(24, 0) == ldexp(1, -127) && isnan(f8(24, 0xFF)));
}

/* Every finite positive code of each float8 type decodes in code order:
 * strictly increasing, as the types are laid out. */
static void test_float8_monotone(void **state)
{
	static const struct { int32_t dt; unsigned last; } tab[] = {
		{ 17, 0x7E }, { 18, 0x7F }, { 19, 0x7B }, { 20, 0x7F }, { 24, 0xFE },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++)
		for (unsigned c = 1; c <= tab[i].last; c++)
			assert_true(f8(tab[i].dt, c) > f8(tab[i].dt, c - 1));
}

static void test_others_and_stride(void **state)
{
	unsigned char b[32];
	double out[4];
	uint16_t bf = 0x3FC0;   /* bfloat16 1.5 */
	int64_t q = -(INT64_C(1) << 40);
	float f = -2.5f;

	(void)state;
	memset(b, 0, sizeof(b));
	memcpy(b, &f, 4);
	memcpy(b + 8, &f, 4);
	assert_true(nx_fp__num_get(b, 1) == -2.5);
	nx_fp__num_get_n(out, b, 2, 8, 1);
	assert_true(out[0] == -2.5 && out[1] == -2.5);
	memcpy(b, &bf, 2);
	assert_true(nx_fp__num_get(b, 16) == 1.5);
	memcpy(b, &q, 8);
	assert_true(nx_fp__num_get(b, 7) == -ldexp(1, 40));
	b[0] = 0xFF;
	assert_true(nx_fp__num_get(b, 3) == -1.0 && nx_fp__num_get(b, 2) == 255.0);
	b[0] = 1;
	assert_true(nx_fp__num_get(b, 9) == 1.0);
	b[0] = 0x38; b[1] = 0x40;
	nx_fp__num_get_n(out, b, 2, 1, 17);
	assert_true(out[0] == 1.0 && out[1] == 2.0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_widths),
		cmocka_unit_test(test_float8_values),
		cmocka_unit_test(test_float8_monotone),
		cmocka_unit_test(test_others_and_stride),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
