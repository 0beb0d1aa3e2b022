/* onnx_util.c - ONNX data type table, string-kind names, human counts. */
#include "nexus/onnx.h"

#include <stdio.h>
#include <string.h>

struct dtype {
	const char *name;
	unsigned bits;
};

/* Indexed by TensorProto.DataType. */
static const struct dtype dtypes[] = {
	[0] = {"undefined", 0},   [1] = {"float", 32},     [2] = {"uint8", 8},
	[3] = {"int8", 8},        [4] = {"uint16", 16},    [5] = {"int16", 16},
	[6] = {"int32", 32},      [7] = {"int64", 64},     [8] = {"string", 0},
	[9] = {"bool", 8},        [10] = {"float16", 16},  [11] = {"double", 64},
	[12] = {"uint32", 32},    [13] = {"uint64", 64},   [14] = {"complex64", 64},
	[15] = {"complex128", 128}, [16] = {"bfloat16", 16},
	[17] = {"float8e4m3fn", 8}, [18] = {"float8e4m3fnuz", 8},
	[19] = {"float8e5m2", 8}, [20] = {"float8e5m2fnuz", 8},
	[21] = {"uint4", 4},      [22] = {"int4", 4},      [23] = {"float4e2m1", 4},
	[24] = {"float8e8m0", 8}, [25] = {"uint2", 2},     [26] = {"int2", 2},
};
#define NDTYPES (sizeof(dtypes) / sizeof(dtypes[0]))

const char *nx_onnx_dtype_name(int32_t t)
{
	if (t < 0 || (size_t)t >= NDTYPES)
		return "undefined";
	return dtypes[t].name;
}

size_t nx_onnx_dtype_bits(int32_t t)
{
	if (t < 0 || (size_t)t >= NDTYPES)
		return 0;
	return dtypes[t].bits;
}

size_t nx_onnx_dtype_size(int32_t t)
{
	size_t bits = nx_onnx_dtype_bits(t);

	return bits % 8 ? 0 : bits / 8;
}

const char *nx_onnx_str_kind_name(enum nx_onnx_str_kind k)
{
	static const char *const names[] = {
		[NX_ONNX_PRODUCER] = "producer",
		[NX_ONNX_DOMAIN] = "domain",
		[NX_ONNX_DOC] = "doc_string",
		[NX_ONNX_META_KEY] = "metadata_key",
		[NX_ONNX_META_VALUE] = "metadata_value",
		[NX_ONNX_GRAPH_NAME] = "graph_name",
		[NX_ONNX_NODE_NAME] = "node_name",
		[NX_ONNX_OP_TYPE] = "op_type",
		[NX_ONNX_NODE_DOMAIN] = "node_domain",
		[NX_ONNX_EDGE] = "edge",
		[NX_ONNX_TENSOR_NAME] = "tensor_name",
		[NX_ONNX_VALUE_NAME] = "value_name",
		[NX_ONNX_ATTR_NAME] = "attribute_name",
		[NX_ONNX_ATTR_STRING] = "attribute_string",
		[NX_ONNX_FUNCTION_NAME] = "function_name",
		[NX_ONNX_TRAINING] = "training_info",
		[NX_ONNX_OTHER] = "other",
		[NX_ONNX_TENSOR_STRING] = "tensor_string",
	};

	if ((unsigned)k >= sizeof(names) / sizeof(names[0]))
		return "other";
	return names[k];
}

int nx_human_count(char *out, size_t n, uint64_t count)
{
	static const char units[] = "KMBT";
	uint64_t unit = 1000;
	size_t i;

	if (count < 1000)
		return snprintf(out, n, "%llu", (unsigned long long)count);
	for (i = 0; i < sizeof(units) - 1; i++, unit *= 1000) {
		uint64_t tenth = unit / 10, tenths, whole;

		/* rounding must not overflow near UINT64_MAX */
		tenths = count / tenth + (count % tenth >= tenth / 2);
		if (tenths < 1000)
			return snprintf(out, n, "%llu.%llu%c", (unsigned long long)(tenths / 10),
					(unsigned long long)(tenths % 10), units[i]);
		whole = count / unit + (count % unit >= unit / 2);
		if (whole < 1000 || i == sizeof(units) - 2)
			return snprintf(out, n, "%llu%c", (unsigned long long)whole, units[i]);
	}
	return snprintf(out, n, "%llu", (unsigned long long)count);
}

/* Lexical rules: relative, no empty/./.. component, no backslash. */
const char *nx_onnx_location_problem(const char *loc)
{
	const char *p = loc;

	if (!loc[0])
		return "is empty";
	if (strlen(loc) > NX_ONNX_LOCATION_MAX)
		return "is too long";
	if (loc[0] == '/')
		return "is an absolute path";
	while (*p) {
		const char *slash = strchr(p, '/');
		size_t n = slash ? (size_t)(slash - p) : strlen(p);

		if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
			return "leaves the model's directory or has an empty, '.' or '..' component";
		p += n;
		if (*p == '/')
			p++;
		if (!*p && slash)
			return "ends with '/'";
	}
	if (strchr(loc, '\\'))
		return "holds a backslash";
	return NULL;
}
