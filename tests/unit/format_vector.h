/*
 * format_vector.h - the manifest test vector of docs/FORMAT.md §5.1, byte
 * for byte, shared by the tests that build on it (manifest, OCI artifact).
 */
#ifndef NEXUS_TEST_FORMAT_VECTOR_H
#define NEXUS_TEST_FORMAT_VECTOR_H

/* The test vector of docs/FORMAT.md, byte for byte. */
static const char VECTOR[] =
	"{\n"
	"  \"build_timestamp\": \"2026-11-27T01:02:03Z\",\n"
	"  \"bundle_id\": \"nexus_bundle_v1\",\n"
	"  \"files\": [\n"
	"    {\n"
	"      \"path\": \"README.md\",\n"
	"      \"sha256\": \"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\",\n"
	"      \"size_bytes\": 3\n"
	"    },\n"
	"    {\n"
	"      \"path\": \"model/student_model.onnx\",\n"
	"      \"sha256\": \"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\",\n"
	"      \"size_bytes\": 0\n"
	"    }\n"
	"  ],\n"
	"  \"invariants\": {\n"
	"    \"teacher_free\": true,\n"
	"    \"training_code_excluded\": true\n"
	"  },\n"
	"  \"model_metadata\": {\n"
	"    \"architecture\": \"SpamStudent-2L\",\n"
	"    \"format\": \"ONNX\",\n"
	"    \"parameters\": \"4.4M\",\n"
	"    \"quantization\": \"none\"\n"
	"  },\n"
	"  \"schema_version\": \"1.0\",\n"
	"  \"signature\": \"\"\n"
	"}\n";

#endif
