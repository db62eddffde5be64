#!/usr/bin/env bash
# Builds a tusd v2.10.0 peer for bench/run from its sources, without the Go module proxy, OUTSIDE the repository.
#   bench/baselines/build-tusd.sh [OUTDIR]      # default /work/peers/tusd; prints the binary's path last
# Then: bench/run --tusd-bin OUTDIR/tusd-bench
#
# Steps (each one below, in order):
#  1. Go: Debian's golang-1.23-go from bookworm-backports (the backports suite is added on the mirror host the
#     machine's apt sources already use). Nothing else from the network.
#  2. Sources: git mirrors of github.com/tus/tusd and github.com/golang/exp, given as TUSD_MIRROR and EXP_MIRROR
#     (bare git directories; in this project's sessions they come from the `fetch` tool:
#     `github:tus/tusd` -> /work/.mirror/tus+tusd/repo, `github:golang/exp` -> /work/.mirror/golang+exp/repo).
#     tusd is exported at tag v2.10.0; x/exp at the commit tusd v2.10.0's go.mod pins (7588d65b2ba8).
#  3. Only pkg/handler, pkg/filestore, pkg/memorylocker and internal/uid are copied: their only non-stdlib import
#     is golang.org/x/exp/slog. A go.mod of our own names that one module and wires it with a `replace` to the
#     local x/exp tree, whose go.mod is trimmed to its module line (its requirements serve other packages).
#  4. Go 1.23 lacks strings.SplitSeq (Go 1.24), used twice in unrouted_handler.go: rewritten as strings.Split
#     loops (same elements, same order: a behaviour-preserving change). Checked below: no SplitSeq is left.
#  5. A small main (bench/baselines/tusd-main/main.go) wires handler + filestore + memorylocker at /files/ like
#     `tusd -upload-dir DIR` does (no hooks, no metrics, error-level logging) and prints "listening on URL".
#  6. go build with GOPROXY=off GOFLAGS=-mod=mod GOSUMDB=off (about 25 s on 2 cores).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUTDIR=${1:-/work/peers/tusd}
TUSD_MIRROR=${TUSD_MIRROR:-/work/.mirror/tus+tusd/repo}
EXP_MIRROR=${EXP_MIRROR:-/work/.mirror/golang+exp/repo}
TUSD_TAG=v2.10.0
case "$OUTDIR" in "$(cd "$HERE/../.." && pwd)"*) echo "OUTDIR must be outside the repository"; exit 2 ;; esac

# 1. Go 1.23
GO=/usr/lib/go-1.23/bin/go
if [ ! -x "$GO" ]; then
  if ! apt-cache policy 2>/dev/null | grep -q bookworm-backports; then
    host=$(grep -rhoE 'https?://[^ ]*debian.org/debian/?' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null | head -1 || true)
    echo "deb ${host:-http://deb.debian.org/debian} bookworm-backports main" > /etc/apt/sources.list.d/backports.list
    apt-get update -qq
  fi
  apt-get install -y -qq -t bookworm-backports golang-1.23-go
fi
"$GO" version

# 2. sources at the pinned versions
for m in "$TUSD_MIRROR" "$EXP_MIRROR"; do
  git --git-dir "$m" rev-parse -q --verify HEAD >/dev/null || { echo "no git mirror at $m (fetch github:tus/tusd and github:golang/exp)"; exit 2; }
done
EXP_PIN=$(git --git-dir "$TUSD_MIRROR" show "$TUSD_TAG:go.mod" | awk '$1=="golang.org/x/exp"{print $2; exit}')
EXP_COMMIT=${EXP_PIN##*-}                      # v0.0.0-20250106191152-7588d65b2ba8 -> 7588d65b2ba8
echo "tusd $TUSD_TAG ($(git --git-dir "$TUSD_MIRROR" rev-parse "$TUSD_TAG^{commit}")), golang.org/x/exp $EXP_PIN"
rm -rf "$OUTDIR/src"; mkdir -p "$OUTDIR/src/tusd" "$OUTDIR/src/exp"
git --git-dir "$TUSD_MIRROR" archive "$TUSD_TAG" pkg/handler pkg/filestore pkg/memorylocker internal/uid \
  | tar -x -C "$OUTDIR/src/tusd"
git --git-dir "$EXP_MIRROR" archive "$EXP_COMMIT" | tar -x -C "$OUTDIR/src/exp"

# 3. go.mod files
find "$OUTDIR/src/tusd" -name '*_test.go' -delete
printf 'module golang.org/x/exp\n\ngo 1.22.0\n' > "$OUTDIR/src/exp/go.mod"; rm -f "$OUTDIR/src/exp/go.sum"
mkdir -p "$OUTDIR/src/tusd/cmd/tusd-bench"
cp "$HERE/tusd-main/main.go" "$OUTDIR/src/tusd/cmd/tusd-bench/main.go"
cat > "$OUTDIR/src/tusd/go.mod" <<GOMOD
module github.com/tus/tusd/v2

go 1.23

require golang.org/x/exp $EXP_PIN

replace golang.org/x/exp => ../exp
GOMOD

# 4. strings.SplitSeq -> strings.Split
U="$OUTDIR/src/tusd/pkg/handler/unrouted_handler.go"
sed -i -e 's/for element := range strings.SplitSeq(header, ",")/for _, element := range strings.Split(header, ",")/' \
       -e 's/list := strings.SplitSeq(header\[l:\], " ")/list := strings.Split(header[l:], " ")/' \
       -e 's/for value := range list {/for _, value := range list {/' "$U"
if grep -rn SplitSeq "$OUTDIR/src/tusd"; then echo "SplitSeq left: the rewrite did not match this version"; exit 1; fi

# 6. build
cd "$OUTDIR/src/tusd"
GOPROXY=off GOFLAGS=-mod=mod GOSUMDB=off GOTOOLCHAIN=local GOPATH="$OUTDIR/gopath" GOCACHE="$OUTDIR/gocache" \
  "$GO" build -trimpath -o "$OUTDIR/tusd-bench" ./cmd/tusd-bench
echo "tusd $TUSD_TAG ($EXP_PIN), built $(date -Is) with $("$GO" version)" > "$OUTDIR/VERSION"
echo "$OUTDIR/tusd-bench"
