/*
 * nexus/bundle.h - the bundle layout of docs/FORMAT.md §2, spelled once.
 * Every path a program or a check names inside a bundle comes from here
 * (scripts/dev/use_bundle_paths.py rewrites stray literals to these names).
 * The external-data location rule is nx_onnx_location_problem (onnx.h) and
 * the built-in forbidden terms are nx_scan_builtin_terms (scan.h).
 */
#ifndef NEXUS_BUNDLE_H
#define NEXUS_BUNDLE_H

#define NX_MANIFEST_NAME "manifest.json"
#define NX_BUNDLE_CLI "bin/nexus_cli"
#define NX_BUNDLE_LIB_DIR "lib"
#define NX_BUNDLE_MODEL_DIR "model"
#define NX_MODEL_PATH "model/student_model.onnx"
#define NX_BUNDLE_MODEL_DATA "model/student_model.onnx.data"
#define NX_BUNDLE_TOKENIZER_DIR "model/tokenizer"
#define NX_BUNDLE_TOKENIZER_JSON "model/tokenizer/tokenizer.json"
#define NX_BUNDLE_VOCAB "model/tokenizer/vocab.txt"
#define NX_BUNDLE_TOKENIZER_CONFIG "model/tokenizer/tokenizer_config.json" /* chat_template */
#define NX_BUNDLE_CONFIG_DIR "config"
#define NX_BUNDLE_RUNTIME_CONFIG "config/runtime.yaml"
#define NX_BUNDLE_SELFTEST "config/selftest.json"
#define NX_BUNDLE_GENERATION_CONFIG "config/generation_config.json"
#define NX_BUNDLE_SRC_DIR "src"
/* The licence texts of what a bundle redistributes (scripts/notices.py): a
 * runtime file, compared byte for byte with the trusted runtime's copy. */
#define NX_BUNDLE_NOTICES "THIRD_PARTY_NOTICES"

#endif
