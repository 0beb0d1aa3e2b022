#!/bin/bash
# scripts/setup.sh - install everything Nexus needs on Debian 12 (bookworm).
#
#  1. Debian packages (compiler, libraries, bubblewrap, test tools);
#  2. ONNX Runtime 1.30: the CPU library from the npm package
#     onnxruntime-node (fetched with `npm pack`, install scripts never run)
#     and the C header from Debian 13's libonnxruntime-dev (fetched with
#     `apt-get download` through a private sources list, so the system's own
#     apt configuration is untouched).  Both are checked against pinned
#     SHA-256 digests and cached in $NEXUS_CACHE; a second run, even offline,
#     reuses the cache.
#  3. Test oracles for registries: oras and cosign, static binaries from
#     Debian 13's .debs (the same private apt download, pinned SHA-256),
#     in $NEXUS_CACHE/bin.
#
# Idempotent: re-running it does nothing that is already done.
# Usage: scripts/setup.sh [--no-apt]
set -euo pipefail

ORT_VERSION=1.30.0
ORT_TGZ_SHA256=6e3390d6b783e7be946fad629292799da28d0b42f84856e50d2c1b0383291e75
ORT_COMMON_TGZ_SHA256=7906c439e0d3e0f4048caa23b64cdfadc0f455c377f579ce1ab2a4b778f07d5f
ORT_SO_SHA256=ffb75a925ba05e47b235bb66e3e3911714a80b328a9c9425539feb204aa32a23
HDR_DEB=libonnxruntime-dev_1.21.0+dfsg-1_amd64.deb
HDR_DEB_SHA256=14f7d959d5deacbcf1504830d4189f91fc67382b399ed9ae9d3aa9c4050ced08
# ONNX Runtime's LICENSE and ThirdPartyNotices.txt for THIRD_PARTY_NOTICES
# (scripts/notices.py): the npm package ships neither, so they come from the
# Debian source tarball, the release Debian 13 has (1.21.0; see the SOURCE
# note written beside them).
NOTICES_TXZ=onnxruntime_1.21.0+dfsg.orig.tar.xz
NOTICES_TXZ_SHA256=32df1f82bd6b07b18372c0f387133214905cbde7a586b3ad83f0ed0075f80273
# Test oracle only: Hugging Face tokenizers (the Rust library, native binding)
# for the tokenizer parity test; never linked into nexus.
TOK_VERSION=0.23.2
TOK_TGZ_SHA256=d5196036d6e7ef5934659618ef8f911080bf95f6ba6a2e42c243196a0ea50bc4
# Registry interop oracles (tests and bench/ only): oras and cosign, static Go
# binaries from Debian 13's .debs, extracted into $NEXUS_CACHE/bin.
ORAS_DEB=oras_1.2.0-1+b9_amd64.deb
ORAS_DEB_SHA256=5f138419f0e4bc128ee4717b06190dc5770cf120ab7e3a991e5b3e9158f3189e
COSIGN_DEB=cosign_2.5.0-2+b5_amd64.deb
COSIGN_DEB_SHA256=3b6eadd27f3c4c00bfa7eab5c2397a6a15a763630c7a1d40d06ff60d24799eef

NEXUS_CACHE=${NEXUS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nexus}
ORT_DIR=$NEXUS_CACHE/onnxruntime-$ORT_VERSION

APT_PACKAGES=(build-essential make pkg-config ca-certificates
	libssl-dev libjansson-dev libyaml-dev libutf8proc-dev libpcre2-dev libzstd-dev libcmocka-dev libseccomp-dev
	libmicrohttpd-dev libmicrohttpd12
	bubblewrap python3 python3-pytest python3-numpy python3-onnx python3-torch
	groff-base strace attr libcap2-bin
	sentencepiece  # spm_train: the Unigram + Precompiled tokenizer of the parity matrix
	libcurl4-openssl-dev libcurl4 docker-registry skopeo apache2-utils python3-cryptography
	libarchive-dev libarchive13 zstd  # nexus pack/unpack (libarchive dlopen'ed); zstd for the tests
	python3-jsonschema  # the e2e suite validates every --json document against docs/schema/
	python3-jinja2  # the oracle of the chat template tests
	jq  # the attestation check FORMAT.md documents (openssl pkeyutl -rawin over the DSSE PAE)
	curl  # fetches ONNX Runtime's notices from the Debian source archive
	python3-prometheus-client)  # serve's /metrics read by Prometheus's own text parser

say() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 3; }

SUDO=
if [ "$(id -u)" != 0 ]; then
	command -v sudo >/dev/null || die "not root and no sudo: run as root"
	SUDO=sudo
fi

check_sha() { # file expected
	local got
	got=$(sha256sum "$1" | cut -d' ' -f1)
	[ "$got" = "$2" ] || die "checksum mismatch for $1: got $got, want $2 (delete it and re-run)"
}

install_apt() {
	local missing=() p
	for p in "${APT_PACKAGES[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
	done
	# npm only fetches the ONNX Runtime package; any working npm will do.
	# npm fetches ONNX Runtime and the tokenizer test oracle; node runs the
	# oracle.  Any working npm/node will do (Debian's npm brings nodejs).
	if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
		missing+=(npm)
	fi
	if [ ${#missing[@]} -eq 0 ]; then
		say "debian packages: all present"
		return
	fi
	say "installing: ${missing[*]}"
	$SUDO apt-get update -q
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
	# The tests start their own registry on 127.0.0.1 and need only the
	# binary; the package also enables a system service listening on
	# port 5000 of every interface.  Stop it when this run installed it
	# (a registry the administrator set up before is left alone).
	for p in "${missing[@]}"; do
		if [ "$p" = docker-registry ] && [ -d /run/systemd/system ]; then
			say "disabling the docker-registry system service (the tests run their own)"
			$SUDO systemctl disable --now docker-registry >/dev/null 2>&1 || true
		fi
	done
}

# npm pack PKG@VERSION into the cache as FILE.tgz; on failure say why (npm's
# own error lines) and what to check, instead of exiting silently.
npm_pack() { # spec tgz
	local tmp log
	tmp=$(mktemp -d "$NEXUS_CACHE/npm.XXXXXX")
	log=$tmp/npm.log
	if ! (cd "$tmp" && npm pack "$1" >"$log" 2>&1); then
		grep -i 'err' "$log" | tail -n 5 >&2 || tail -n 5 "$log" >&2
		rm -rf "$tmp"
		die "npm pack $1 failed (above); check that this machine reaches the npm registry ($(npm config get registry 2>/dev/null)), and npm's proxy and cafile settings (npm config list)"
	fi
	mv "$tmp/$(basename "$2")" "$2"
	rm -rf "$tmp"
}

fetch_ort_lib() {
	local tgz=$NEXUS_CACHE/onnxruntime-node-$ORT_VERSION.tgz tmp
	if [ -f "$ORT_DIR/lib/libonnxruntime.so.1" ]; then
		check_sha "$ORT_DIR/lib/libonnxruntime.so.1" "$ORT_SO_SHA256"
		return
	fi
	if [ ! -f "$tgz" ]; then
		say "fetching onnxruntime-node@$ORT_VERSION with npm pack (no scripts run)"
		npm_pack "onnxruntime-node@$ORT_VERSION" "$tgz"
	fi
	check_sha "$tgz" "$ORT_TGZ_SHA256"
	tmp=$(mktemp -d "$NEXUS_CACHE/ort.XXXXXX")
	tar -xzf "$tgz" -C "$tmp" package/bin/napi-v6/linux/x64/libonnxruntime.so.1
	check_sha "$tmp/package/bin/napi-v6/linux/x64/libonnxruntime.so.1" "$ORT_SO_SHA256"
	mkdir -p "$ORT_DIR/lib"
	mv "$tmp/package/bin/napi-v6/linux/x64/libonnxruntime.so.1" "$ORT_DIR/lib/"
	rm -rf "$tmp"
}

# The URI of the Debian archive that apt already uses for the main suite
# (not -security/-updates), e.g. ".../debian/".
debian_mirror() {
	local rel uri
	rel=$(. /etc/os-release && echo "$VERSION_CODENAME")
	uri=$(apt-get indextargets --format '$(REPO_URI) $(RELEASE)' 2>/dev/null |
		awk -v r="$rel" '$2 == r { print $1; exit }')
	if [ -z "$uri" ]; then
		$SUDO apt-get update -q >/dev/null
		uri=$(apt-get indextargets --format '$(REPO_URI) $(RELEASE)' 2>/dev/null |
			awk -v r="$rel" '$2 == r { print $1; exit }')
	fi
	[ -n "$uri" ] && echo "$uri"
}

# Download PKG=VERSION from Debian 13 (trixie) as $NEXUS_CACHE/DEB with
# `apt-get download` through a private sources list (the system's own apt
# configuration is untouched), then check its pinned SHA-256.
fetch_trixie_deb() { # pkg=version deb sha256
	local deb=$NEXUS_CACHE/$2 apt mirror
	if [ ! -f "$deb" ]; then
		apt=$(mktemp -d "$NEXUS_CACHE/apt.XXXXXX")
		mkdir -p "$apt/lists/partial" "$apt/parts"
		# The same Debian mirror this system already uses, trixie suite.
		mirror=$(debian_mirror) || die "cannot find this system's Debian mirror in its apt configuration"
		echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie main" \
			>"$apt/sources.list"
		local opts=(-o "Dir::Etc::sourcelist=$apt/sources.list" -o "Dir::Etc::sourceparts=$apt/parts"
			-o "Dir::State::Lists=$apt/lists" -o "APT::Sandbox::User=root")
		apt-get -q "${opts[@]}" update >/dev/null
		(cd "$apt" && apt-get -q "${opts[@]}" download "$1" >/dev/null)
		mv "$apt/$2" "$deb"
		rm -rf "$apt"
	fi
	check_sha "$deb" "$3"
}

fetch_ort_header() {
	local deb=$NEXUS_CACHE/$HDR_DEB tmp
	if [ -f "$ORT_DIR/include/onnxruntime_c_api.h" ]; then
		return
	fi
	[ -f "$deb" ] || say "fetching the ONNX Runtime C header (Debian 13 libonnxruntime-dev)"
	fetch_trixie_deb libonnxruntime-dev=1.21.0+dfsg-1 "$HDR_DEB" "$HDR_DEB_SHA256"
	tmp=$(mktemp -d "$NEXUS_CACHE/hdr.XXXXXX")
	dpkg-deb -x "$deb" "$tmp"
	mkdir -p "$ORT_DIR/include"
	cp "$tmp"/usr/include/onnxruntime/onnxruntime_c_api.h "$ORT_DIR/include/"
	rm -rf "$tmp"
}

# oras and cosign (test oracles): their static binaries into $NEXUS_CACHE/bin.
fetch_registry_tools() {
	local pkg deb sha tmp
	for pkg in "oras=1.2.0-1+b9 $ORAS_DEB $ORAS_DEB_SHA256" \
		"cosign=2.5.0-2+b5 $COSIGN_DEB $COSIGN_DEB_SHA256"; do
		set -- $pkg
		[ -x "$NEXUS_CACHE/bin/${1%%=*}" ] && continue
		say "fetching ${1%%=*} (registry interop oracle, Debian 13)"
		fetch_trixie_deb "$1" "$2" "$3"
		tmp=$(mktemp -d "$NEXUS_CACHE/go.XXXXXX")
		dpkg-deb -x "$NEXUS_CACHE/$2" "$tmp"
		mkdir -p "$NEXUS_CACHE/bin"
		mv "$tmp/usr/bin/${1%%=*}" "$NEXUS_CACHE/bin/"
		rm -rf "$tmp" "${NEXUS_CACHE:?}/$2"
	done
}

# ONNX Runtime's licence and third-party notices into $ORT_DIR/notices: the
# two files only; the 38 MB tarball is deleted once they are out.
fetch_ort_notices() {
	local dir=$ORT_DIR/notices txz=$NEXUS_CACHE/$NOTICES_TXZ tmp mirror
	[ -f "$dir/ThirdPartyNotices.txt" ] && [ -f "$dir/LICENSE" ] && return
	if [ ! -f "$txz" ]; then
		mirror=$(debian_mirror) || die "cannot find this system's Debian mirror in its apt configuration"
		say "fetching ONNX Runtime's notices (Debian source $NOTICES_TXZ)"
		curl -fsSL -o "$txz.part" "${mirror%/}/pool/main/o/onnxruntime/$NOTICES_TXZ" ||
			die "cannot fetch $NOTICES_TXZ from $mirror"
		mv "$txz.part" "$txz"
	fi
	check_sha "$txz" "$NOTICES_TXZ_SHA256"
	tmp=$(mktemp -d "$NEXUS_CACHE/notices.XXXXXX")
	tar -xJf "$txz" -C "$tmp" onnxruntime-1.21.0/LICENSE onnxruntime-1.21.0/ThirdPartyNotices.txt
	printf '%s\n' "These are ONNX Runtime 1.21.0's LICENSE and ThirdPartyNotices.txt, from Debian's" \
		"source tarball $NOTICES_TXZ (SHA-256 $NOTICES_TXZ_SHA256)." \
		"The library shipped is Microsoft's $ORT_VERSION build (npm onnxruntime-node), which" \
		"carries no notices file; 1.21.0 is the release closest to it in Debian." >"$tmp/SOURCE"
	mkdir -p "$dir"
	mv "$tmp/onnxruntime-1.21.0/LICENSE" "$tmp/onnxruntime-1.21.0/ThirdPartyNotices.txt" "$tmp/SOURCE" "$dir/"
	rm -rf "$tmp" "$txz"
}

# Test oracle only: onnxruntime-node's JavaScript package (the parity and
# greedy-loop tests run the same model through it), unpacked from the
# tarball fetch_ort_lib already checked, with onnxruntime-common beside it;
# no install script runs (the tarball carries its linux-x64 binding).
fetch_ort_node_oracle() {
	local mods=$NEXUS_CACHE/node_modules tgz=$NEXUS_CACHE/onnxruntime-common-$ORT_VERSION.tgz tmp
	[ -f "$mods/onnxruntime-node/package.json" ] && [ -f "$mods/onnxruntime-common/package.json" ] && return
	if [ ! -f "$tgz" ]; then
		say "fetching onnxruntime-common@$ORT_VERSION (test oracle) with npm pack"
		npm_pack "onnxruntime-common@$ORT_VERSION" "$tgz"
	fi
	check_sha "$tgz" "$ORT_COMMON_TGZ_SHA256"
	[ -f "$NEXUS_CACHE/onnxruntime-node-$ORT_VERSION.tgz" ] ||
		npm_pack "onnxruntime-node@$ORT_VERSION" "$NEXUS_CACHE/onnxruntime-node-$ORT_VERSION.tgz"
	check_sha "$NEXUS_CACHE/onnxruntime-node-$ORT_VERSION.tgz" "$ORT_TGZ_SHA256"
	tmp=$(mktemp -d "$NEXUS_CACHE/ortnode.XXXXXX")
	mkdir -p "$tmp/node" "$tmp/common" "$mods"
	tar -xzf "$NEXUS_CACHE/onnxruntime-node-$ORT_VERSION.tgz" -C "$tmp/node"
	tar -xzf "$tgz" -C "$tmp/common"
	rm -rf "$mods/onnxruntime-node" "$mods/onnxruntime-common"
	mv "$tmp/node/package" "$mods/onnxruntime-node"
	mv "$tmp/common/package" "$mods/onnxruntime-common"
	rm -rf "$tmp"
}

fetch_tokenizers_oracle() {
	local tgz=$NEXUS_CACHE/tokenizers-$TOK_VERSION.tgz dir=$NEXUS_CACHE/node_modules/tokenizers tmp
	[ -f "$dir/package.json" ] && return
	if [ ! -f "$tgz" ]; then
		say "fetching tokenizers@$TOK_VERSION (test oracle) with npm pack"
		npm_pack "tokenizers@$TOK_VERSION" "$tgz"
	fi
	check_sha "$tgz" "$TOK_TGZ_SHA256"
	tmp=$(mktemp -d "$NEXUS_CACHE/tok.XXXXXX")
	tar -xzf "$tgz" -C "$tmp"
	mkdir -p "$NEXUS_CACHE/node_modules"
	rm -rf "$dir"
	mv "$tmp/package" "$dir"
	rm -rf "$tmp"
}

main() {
	[ "${1:-}" = "--no-apt" ] || install_apt
	mkdir -p "$NEXUS_CACHE"
	fetch_ort_lib
	fetch_ort_header
	fetch_ort_notices
	fetch_tokenizers_oracle
	fetch_ort_node_oracle
	fetch_registry_tools
	say "ok: onnx runtime in $ORT_DIR"
}
main "$@"
