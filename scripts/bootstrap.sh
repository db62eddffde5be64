#!/usr/bin/env bash
# Installs what building and testing need on Debian 12, only what is missing, so it is cheap to re-run.
# Sourced by serve.sh and test.sh. Needs root (or sudo) for apt on a fresh machine.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="/opt/swift/usr/bin:$PATH"

# redis-server and nginx-light: the cluster tests start their own Redis and a round-robin proxy.
# prometheus: `promtool check metrics` lints /metrics in the interop suite.
# radosgw, ceph-mon, ceph-osd, ceph-common: a single-node Ceph RADOS Gateway for the S3 store tests (scripts/ceph-rgw.sh).
# libnghttp2-dev: HTTP/2 framing for the server (CNghttp2).
# chromium, chromium-driver: a headless browser uploads through the page in Tests/interop/browser (test_browser.py).
apt_packages=(libuv1-dev libssl-dev libnghttp2-dev pkg-config curl python3-venv redis-server redis-sentinel nginx-light prometheus radosgw ceph-mon ceph-osd ceph-common chromium chromium-driver)
if [[ "${TUS_WITH_BENCH_TOOLS:-0}" == 1 ]]; then apt_packages+=(iperf3 nghttp2-client); fi
missing=()
for package in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
    sudo_cmd=""
    [[ $(id -u) -ne 0 ]] && sudo_cmd="sudo"
    echo "bootstrap: installing ${missing[*]}" >&2
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi

command -v swift >/dev/null || { echo "bootstrap: Swift 6 toolchain not found (expected /opt/swift)" >&2; exit 1; }
