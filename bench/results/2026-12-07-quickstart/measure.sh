#!/usr/bin/env bash
# Time from `git clone` to a finished upload: fresh clone, scripts/serve.sh (bootstrap + clean release build +
# start), then tus-cli uploads 1 MiB. Packages of the serve list are already installed on this machine.
set -euo pipefail
cd /tmp/ttfu
head -c 1048576 /dev/urandom > file.bin
t0=$(date +%s.%N)
git clone -q /work/wt-ops clone
cd clone
mkfifo ../startline
bash scripts/serve.sh --port 0 --loops 1 --upload-dir /tmp/ttfu/data > ../startline 2> ../serve.log &
pid=$!
read -r line < ../startline
t1=$(date +%s.%N)
url="http://127.0.0.1:$(echo "$line" | sed -E 's#.*:([0-9]+)/files/#\1#')/files/"
.build/release/tus-cli upload ../file.bin "$url" -q
t2=$(date +%s.%N)
kill "$pid"; wait "$pid" || true
echo "start-up line: $line"
echo "clone+serve.sh until listening: $(echo "$t1 - $t0" | bc) s; first upload done at: $(echo "$t2 - $t0" | bc) s"
grep -E "bootstrap|Compiling|Build of product|Fetching|Computing|Resolv" ../serve.log | grep -v Compiling | head -20
