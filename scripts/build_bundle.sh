#!/bin/sh
# build_bundle.sh - the packaging entry point (nexus build, docs/man/nexus-build.1).
#
#   scripts/build_bundle.sh [WORKSPACE] [-o PATH] [--key KEY] [--force] [--json]
#
# A thin wrapper: it finds `nexus` (in PATH, else ./build/bin/nexus beside
# this script's repository) and runs `nexus build` with the same arguments.
# Stage, export, filter and assemble (SPEC §2A.1-4) are all done by
# `nexus build`; see `nexus build --help` or nexus-build(1).  Exit status is
# nexus build's: 0 ok, 1 a check failed, 2 usage/configuration, 3 I/O.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
if command -v nexus >/dev/null 2>&1; then
	nexus=$(command -v nexus)
elif [ -x "$here/../build/bin/nexus" ]; then
	nexus="$here/../build/bin/nexus"
elif [ -x ./build/bin/nexus ]; then
	nexus=./build/bin/nexus
else
	echo "build_bundle.sh: nexus not found in PATH or ./build/bin; run 'make' or 'make install'" >&2
	exit 3
fi
exec "$nexus" build "$@"
