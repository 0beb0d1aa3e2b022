# Nexus build.  `make` builds everything into $(BUILD)/ with the same layout
# as an installation: bin/nexus, libexec/nexus/{bin/nexus_cli,lib/...}.
# `make test` (= `make check`) runs unit tests, fuzz-corpus replays and the
# end-to-end suite.
# `make asan` does the same build with AddressSanitizer + UBSan in build-asan/.

VERSION    := 0.1.0
PREFIX     ?= /usr/local
DESTDIR    ?=
BUILD      ?= build
CC         ?= cc
PYTHON     ?= /usr/bin/python3
NEXUS_CACHE ?= $(if $(XDG_CACHE_HOME),$(XDG_CACHE_HOME),$(HOME)/.cache)/nexus
ORT_VERSION := 1.30.0
ORT_DIR    ?= $(NEXUS_CACHE)/onnxruntime-$(ORT_VERSION)
ORT_LIB    := $(ORT_DIR)/lib/libonnxruntime.so.1
ORT_INC    := $(ORT_DIR)/include

WARN     := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
            -Wformat=2 -Wno-unused-parameter -Wvla
override CPPFLAGS += -Iinclude -Isrc -D_GNU_SOURCE -DNX_VERSION='"$(VERSION)"'
CFLAGS   ?= -O2 -g
# GNU C: the code uses `?:`, __int128 and __attribute__, so it says so.
override CFLAGS += -std=gnu11 $(WARN) -fstack-protector-strong -fPIE -D_FORTIFY_SOURCE=2 $(SAN)
override LDFLAGS += -pie -Wl,-z,relro,-z,now $(SAN)
# The tool links its libraries dynamically; the in-bundle runtime links them
# statically so that a production host needs only glibc and libstdc++.
LIBS     := -lcrypto -ljansson -lyaml -lutf8proc -lpcre2-8 -lzstd -lseccomp -lm -lpthread
RT_LIBS  := -Wl,-Bstatic -lcrypto -ljansson -lyaml -lutf8proc -lpcre2-8 -Wl,-Bdynamic -ldl -lm -lpthread

# libnexus is one archive per folder, lowest layer first (docs/INTERNALS.md).
# A layer may use only the layers before it; they are linked in reverse
# order, so a reference upwards does not link, and `make check-layers` names
# it.  A new folder under src/lib/ is one word in LAYERS.  PROD_LAYERS are
# all that bin/nexus_cli, the runtime shipped to production hosts, may link.
LAYERS      := util lib/tokenizer lib/format lib/onnx lib/scan lib/export lib/sandbox \
               lib/fingerprint lib/verify lib/build lib/oci lib/pack
PROD_LAYERS := util lib/tokenizer lib/format lib/onnx
STRAY := $(filter-out $(addprefix src/,$(addsuffix /,$(LAYERS))),$(sort $(dir $(wildcard src/lib/*.c src/lib/*/*.c))))
ifneq ($(STRAY),)
$(error $(STRAY): not a layer; add the folder to LAYERS in the Makefile (or move the file into one))
endif
layer_ar  = $(BUILD)/ar/libnx_$(notdir $(1)).a
reverse   = $(if $(1),$(call reverse,$(wordlist 2,$(words $(1)),$(1))) $(firstword $(1)))
LAYER_AR  := $(foreach l,$(LAYERS),$(call layer_ar,$(l)))
LINK_AR   := $(call reverse,$(LAYER_AR))
PROD_AR   := $(call reverse,$(foreach l,$(PROD_LAYERS),$(call layer_ar,$(l))))
LIB_SRC := $(foreach l,$(LAYERS),$(sort $(wildcard src/$(l)/*.c)))
CLI_SRC := $(sort $(wildcard src/cli/*.c))
RT_SRC  := $(sort $(wildcard src/runtime/*.c))
UT_SRC  := $(sort $(wildcard tests/unit/test_*.c))
FZ_SRC  := $(sort $(wildcard tests/fuzz/fuzz_*.c))

LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
RT_OBJ  := $(RT_SRC:%.c=$(BUILD)/obj/%.o)
UT_BIN  := $(UT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
FZ_BIN  := $(FZ_SRC:tests/fuzz/%.c=$(BUILD)/tests/%_replay)
FZ_TORTURE := $(FZ_SRC:tests/fuzz/%.c=$(BUILD)/tests/%_torture)

NEXUS   := $(BUILD)/bin/nexus
RTDIR   := $(BUILD)/libexec/nexus
NX_CLI  := $(RTDIR)/bin/nexus_cli
RT_ORT  := $(RTDIR)/lib/libonnxruntime.so.1
# The licence texts of what a bundle redistributes (scripts/notices.py), part
# of the runtime: the ORT notices setup.sh unpacked, and the copyright files
# of what the link of nexus_cli pulled in ($(NX_CLI_TRACE), ld -t -t).
RT_NOTICES := $(RTDIR)/THIRD_PARTY_NOTICES
ORT_NOTICES := $(ORT_DIR)/notices
NX_CLI_TRACE := $(BUILD)/nexus_cli.trace
# The runtimes this installation trusts: its own, then earlier releases'.
TRUSTED := $(RTDIR)/trusted-runtimes
TRUSTED_EARLIER := src/runtime/trusted-runtimes.txt

# `make V=1` shows full command lines.
V ?= 0
ifeq ($(V),0)
Q = @
msg = @printf '  %-6s %s\n' $(1) $(2)
else
Q =
msg = @true
endif

.PHONY: FORCE all check-layers check-symbols lint check test unit fuzz-replay torture e2e e2e-asan asan fuzz install uninstall clean demo demo-generate bench setup
all: $(NEXUS) $(NX_CLI) $(RT_ORT) $(RT_NOTICES) $(TRUSTED) $(UT_BIN) $(FZ_BIN)

$(ORT_LIB) $(ORT_INC)/onnxruntime_c_api.h:
	@echo "error: ONNX Runtime not found in $(ORT_DIR); run scripts/setup.sh first" >&2; exit 3

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(call msg,CC,$<)
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c -o $@ $<

# What --version prints besides VERSION (both programs): the commit, the
# ONNX Runtime packaged, and a build date that is SOURCE_DATE_EPOCH's or the
# commit's, so that rebuilding one commit gives the same bytes.  The header
# is rewritten only when a value changes, and only the two main.c include it.
# nexus_cli's commit and date are those of the last commit that changed what
# its bytes are made of (RT_INPUTS), not HEAD's: verify compares the bundle's
# runtime with this installation's byte for byte, so a commit elsewhere in the
# tree must not make the bundles built before it runtime-untrusted
# (docs/TRV.md, "Upgrades").  Within a release nothing changes either way.
BUILD_INFO    := $(BUILD)/gen/nx_build_info.h
RT_BUILD_INFO := $(BUILD)/gen/rt/nx_build_info.h
RT_INPUTS     := Makefile include src/runtime $(addprefix src/,$(PROD_LAYERS))
define build_info_sh
	@mkdir -p $(@D)
	@c=$$(git log -1 --format=%h --abbrev=12 $(2) 2>/dev/null); [ -n "$$c" ] || c=unknown; \
	if [ -n "$$SOURCE_DATE_EPOCH" ]; then d=$$(date -u -d "@$$SOURCE_DATE_EPOCH" +%Y-%m-%d); \
	else d=$$(TZ=UTC git log -1 --format=%cd --date=format-local:%Y-%m-%d $(2) 2>/dev/null); fi; \
	[ -n "$$d" ] || d=$$(date -u +%Y-%m-%d); \
	printf '#define NX_COMMIT "%s"\n#define NX_BUILD_DATE "%s"\n#define NX_ORT_VERSION "%s"\n' \
		"$$c" "$$d" "$(ORT_VERSION)" > $(1).tmp; \
	if cmp -s $(1).tmp $(1); then rm -f $(1).tmp; else mv $(1).tmp $(1); fi
endef
$(BUILD_INFO): FORCE
	$(call build_info_sh,$@,HEAD)
$(RT_BUILD_INFO): FORCE
	$(call build_info_sh,$@,HEAD -- $(RT_INPUTS))
FORCE:
$(BUILD)/obj/src/cli/main.o: $(BUILD_INFO)
$(BUILD)/obj/src/cli/main.o: CPPFLAGS += -I$(BUILD)/gen
$(BUILD)/obj/src/runtime/main.o: $(RT_BUILD_INFO)
$(BUILD)/obj/src/runtime/main.o: CPPFLAGS += -I$(BUILD)/gen/rt
# budget.c links the CJK character model in with .incbin (scripts/budget_cjk_gen.py),
# named by absolute path: the assembler resolves a relative one from its own
# working directory, not the source's (every compile, the fuzzers' too)
override CPPFLAGS += -DNX_BUDGET_CJK_ZST='"$(abspath src/lib/scan/budget_cjk.zst)"'
$(BUILD)/obj/src/lib/scan/budget.o: src/lib/scan/budget_cjk.zst

$(BUILD)/obj/src/runtime/%.o: CPPFLAGS += -I$(ORT_INC)
$(RT_OBJ): $(ORT_INC)/onnxruntime_c_api.h

$(foreach l,$(LAYERS),$(eval $(call layer_ar,$(l)): $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard src/$(l)/*.c))))
$(LAYER_AR):
	@mkdir -p $(@D)
	$(call msg,AR,$@)
	$(Q)rm -f $@ && ar rcs $@ $^

$(NEXUS): $(CLI_OBJ) $(LAYER_AR)
	@mkdir -p $(@D)
	$(call msg,LD,$@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $(CLI_OBJ) $(LINK_AR) $(LIBS)

# Every bundle ships nexus_cli, so it ships stripped; its debug info stays in
# the build tree ($(NX_CLI_DEBUG), named by a .gnu_debuglink: gdb and
# addr2line find it with `set debug-file-directory` or beside a copy).  A
# sanitizer build keeps its symbols (its reports name functions).
NX_CLI_DEBUG := $(BUILD)/nexus_cli.debug
$(NX_CLI): $(RT_OBJ) $(PROD_AR) $(ORT_LIB)
	@mkdir -p $(@D)
	$(call msg,LD,$@)
	$(Q)$(CC) $(LDFLAGS) -Wl,-rpath,'$$ORIGIN/../lib' -Wl,--build-id=none -Wl,--trace,--trace -o $@.full $(RT_OBJ) \
		$(PROD_AR) $(ORT_LIB) $(RT_LIBS) > $(NX_CLI_TRACE)
	$(Q)if [ -n "$(SAN)" ]; then mv $@.full $@; else \
		objcopy --only-keep-debug $@.full $(NX_CLI_DEBUG) && chmod 0644 $(NX_CLI_DEBUG) && \
		objcopy --strip-all --add-gnu-debuglink=$(NX_CLI_DEBUG) $@.full $@ && rm -f $@.full; fi

# No layer uses a symbol defined only in a later one, and the runtime uses
# nothing outside PROD_LAYERS.
check-layers: $(LAYER_AR) $(RT_OBJ)
	$(Q)$(PYTHON) scripts/dev/check_layers.py --runtime $(RT_OBJ) \
		--production $(words $(PROD_LAYERS)) -- $(LAYER_AR)

# Every global symbol of the archives starts with nx_: public ones are
# nx_<verb>, a folder's cross-file internals nx_<module>__<verb>.
check-symbols: $(LAYER_AR)
	$(Q)$(PYTHON) scripts/dev/check_symbols.py $(LAYER_AR)

# Headers that compile alone as C and C++ (private ones too), no banned functions
# (scripts/dev/lint.py), bundle paths only from nexus/bundle.h
# (scripts/dev/use_bundle_paths.py), finding codes only from
# nexus/findings.def and each documented in docs/TRV.md
# (scripts/dev/use_finding_codes.py, check_findings.py), no file-level cycle in
# libnexus (scripts/dev/cycles.py: no two files call each other, directly or
# around a ring; no #include cycle), and the symbol check.
lint: check-symbols
	$(Q)$(PYTHON) scripts/dev/lint.py --cc $(CC) --cxx $(CXX) --ort-inc $(ORT_INC)
	$(Q)$(PYTHON) scripts/dev/use_bundle_paths.py --check
	$(Q)$(PYTHON) scripts/dev/use_finding_codes.py --check
	$(Q)$(PYTHON) scripts/dev/check_findings.py
	$(Q)$(PYTHON) scripts/dev/cycles.py $(BUILD) $(LIB_OBJ)

$(RT_ORT): $(ORT_LIB)
	@mkdir -p $(@D)
	install -m 0444 $< $@

$(RT_NOTICES): $(NX_CLI) scripts/notices.py $(ORT_NOTICES)/ThirdPartyNotices.txt
	$(call msg,GEN,$@)
	$(Q)$(PYTHON) scripts/notices.py --trace $(NX_CLI_TRACE) --ort-notices $(ORT_NOTICES) \
		--ort-version $(ORT_VERSION) --own $(BUILD) --own $(CURDIR) -o $@

$(ORT_NOTICES)/ThirdPartyNotices.txt:
	@echo "error: ONNX Runtime's notices not found in $(ORT_NOTICES); run scripts/setup.sh first" >&2; exit 3

$(TRUSTED): $(NX_CLI) $(RT_ORT) $(RT_NOTICES) $(TRUSTED_EARLIER)
	$(call msg,GEN,$@)
	$(Q){ echo "nexus $(VERSION)"; (cd $(RTDIR) && sha256sum bin/nexus_cli lib/* THIRD_PARTY_NOTICES); \
		grep -v '^#' $(TRUSTED_EARLIER) || true; } > $@.tmp && chmod 0644 $@.tmp && mv $@.tmp $@

# -MMD: a unit test that includes a source file (test_batching.c includes
# src/runtime/input.c) is rebuilt when that file changes
$(BUILD)/tests/test_%: tests/unit/test_%.c $(wildcard tests/unit/*.h) $(LAYER_AR)
	@mkdir -p $(@D)
	$(call msg,LD,$@)
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -MMD -MP -MT $@ -MF $@.d -o $@ $< $(LINK_AR) \
		-lcmocka $(LIBS)

# Fuzz targets are also built as plain programs that replay their corpus.
$(BUILD)/tests/fuzz_%_replay: tests/fuzz/fuzz_%.c tests/fuzz/replay.c $(LAYER_AR)
	@mkdir -p $(@D)
	$(call msg,LD,$@)
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< tests/fuzz/replay.c $(LINK_AR) $(LIBS)

# The same replays with allocation-failure injection (tests/fuzz/torture.c):
# each allocator our objects call is wrapped, and each input is replayed once
# per allocation it makes, failing that one.  Run by `make asan`, so every
# error path behind an allocation runs under ASan, UBSan and LeakSanitizer.
TORTURE_WRAP := $(foreach f,malloc calloc realloc strdup strndup posix_memalign asprintf,-Wl,--wrap=$(f))
$(BUILD)/tests/fuzz_%_torture: tests/fuzz/fuzz_%.c tests/fuzz/replay.c tests/fuzz/torture.c tests/fuzz/torture.h $(LAYER_AR)
	@mkdir -p $(@D)
	$(call msg,LD,$@)
	$(Q)$(CC) $(CPPFLAGS) -DNX_TORTURE $(CFLAGS) $(LDFLAGS) $(TORTURE_WRAP) -o $@ $< tests/fuzz/replay.c tests/fuzz/torture.c $(LINK_AR) $(LIBS)

torture: $(FZ_TORTURE)
	@set -e; for t in $(FZ_TORTURE); do n=$${t##*/fuzz_}; n=$${n%_torture}; \
		echo "== torture $$n"; $$t tests/fuzz/corpus/$$n; done

unit: $(UT_BIN)
	@set -e; for t in $(UT_BIN); do echo "== $$t"; $$t; done

fuzz-replay: $(FZ_BIN)
	@set -e; for t in $(FZ_BIN); do n=$${t##*/fuzz_}; n=$${n%_replay}; \
		echo "== replay $$n"; $$t tests/fuzz/corpus/$$n; done

E2E = NEXUS_BUILD=$(abspath $(BUILD)) $(PYTHON) -m pytest -q tests/e2e

e2e: all
	$(E2E)

# The layer check, lint (symbols, headers, banned functions), unit tests, fuzz-corpus replays, the same under ASan+UBSan, then the
# end-to-end suite last (its summary is the run's closing line).
check: all check-layers lint unit fuzz-replay asan
	$(E2E)

# `make test` is the README's name for the whole suite; `make check` is the
# GNU name.  They are the same target.
test: check

ASAN_MAKE := $(MAKE) --no-print-directory BUILD=build-asan CFLAGS='-O1 -g' \
	SAN='-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all'
asan:
	$(ASAN_MAKE) all unit fuzz-replay torture

# The end-to-end suite against the ASan+UBSan binaries (not part of `make
# check`: it is slow).  ASan reserves terabytes of shadow address space, which
# the sandbox's RLIMIT_AS forbids, so what runs inside the sandbox (the build's
# selftest, verify's functional checks, nexus run) uses the plain runtime from
# $(BUILD)/; everything else, the nexus_cli of test_runtime.py included, is
# sanitized.  Reports go to files, not stderr, and their own exit statuses:
# a test that expects a failure cannot mistake one for it, and the run fails
# on any report even where a test ignored the exit status.
# NEXUS_SANITIZED=1 lets a test skip what only a sanitizer breaks.
SAN_LOG := $(abspath build-asan/e2e-logs)
E2E_ASAN_ENV := NEXUS_SANITIZED=1 NEXUS_BUILD=$(abspath build-asan) \
	NEXUS_RUNTIME_DIR=$(abspath $(RTDIR)) \
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=86:log_path=$(SAN_LOG)/asan \
	LSAN_OPTIONS=suppressions=$(abspath tests/e2e/lsan.supp) \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:exitcode=87:log_path=$(SAN_LOG)/ubsan
e2e-asan: all
	$(ASAN_MAKE) all
	@rm -rf $(SAN_LOG) && mkdir -p $(SAN_LOG)
	$(E2E_ASAN_ENV) $(PYTHON) -m pytest -q tests/e2e
	@if grep -l -e 'ERROR: [A-Za-z]*Sanitizer' -e 'runtime error:' $(SAN_LOG)/* 2>/dev/null; then \
		echo "sanitizer reports in the files above" >&2; exit 1; fi; echo "no sanitizer reports"

fuzz:
	@mkdir -p $(BUILD)/fuzz
	@set -e; for f in $(FZ_SRC); do n=$$(basename $$f .c); \
		clang $(CPPFLAGS) -std=gnu11 -g -O1 -fsanitize=fuzzer,address,undefined -o $(BUILD)/fuzz/$$n $$f $(LIB_SRC) $(LIBS); done
	@echo "fuzzers in $(BUILD)/fuzz; run e.g. $(BUILD)/fuzz/fuzz_onnx tests/fuzz/corpus/onnx"

demo: all
	$(PYTHON) scripts/demo.py --nexus $(NEXUS) examples/spam-distill

# The decoder example: build -> verify -> generate (needs task: generation
# in the runtime) and the prompt its chat template makes.
GEN_DEMO := $(BUILD)/demo-generate/tiny_gen_v1
demo-generate: all
	rm -rf $(BUILD)/demo-generate && mkdir -p $(BUILD)/demo-generate
	$(NEXUS) build examples/tiny-gen -o $(GEN_DEMO)
	$(NEXUS) verify $(GEN_DEMO) --teacher examples/tiny-gen/artifacts/teacher.onnx \
		--teacher examples/tiny-gen/checkpoints/teacher.pt
	$(GEN_DEMO)/bin/nexus_cli chat --messages examples/tiny-gen/chat_example.json
	$(GEN_DEMO)/bin/nexus_cli generate --prompt "And God said" --max-new-tokens 24

bench: all
	$(PYTHON) bench/run.py --nexus $(NEXUS)

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/libexec/nexus/bin \
		$(DESTDIR)$(PREFIX)/libexec/nexus/lib $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 0755 $(NEXUS) $(DESTDIR)$(PREFIX)/bin/nexus
	install -m 0555 $(NX_CLI) $(DESTDIR)$(PREFIX)/libexec/nexus/bin/nexus_cli
	install -m 0444 $(RT_ORT) $(DESTDIR)$(PREFIX)/libexec/nexus/lib/libonnxruntime.so.1
	install -m 0444 $(RT_NOTICES) $(DESTDIR)$(PREFIX)/libexec/nexus/THIRD_PARTY_NOTICES
	install -m 0644 $(TRUSTED) $(DESTDIR)$(PREFIX)/libexec/nexus/trusted-runtimes
	install -m 0644 docs/man/*.1 $(DESTDIR)$(PREFIX)/share/man/man1/
	install -d $(DESTDIR)$(PREFIX)/share/man/man5
	install -m 0644 docs/man/*.5 $(DESTDIR)$(PREFIX)/share/man/man5/
	@# the documents messages and man pages point at (docs/TRV.md, ...), and the JSON Schemas
	install -d $(DESTDIR)$(PREFIX)/share/doc/nexus/schema
	install -m 0644 README.md docs/TRV.md docs/FORMAT.md docs/INTERNALS.md \
		docs/nexus_cli-serve.service $(DESTDIR)$(PREFIX)/share/doc/nexus/
	install -m 0644 docs/schema/*.json $(DESTDIR)$(PREFIX)/share/doc/nexus/schema/

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/nexus $(DESTDIR)$(PREFIX)/share/man/man1/nexus*.1 \
		$(DESTDIR)$(PREFIX)/share/man/man5/nexus.yaml.5
	rm -rf $(DESTDIR)$(PREFIX)/libexec/nexus $(DESTDIR)$(PREFIX)/share/doc/nexus

clean:
	rm -rf build build-asan

setup:
	bash scripts/setup.sh

-include $(shell find $(BUILD)/obj $(BUILD)/tests -name '*.d' 2>/dev/null)
