#!/usr/bin/env bash
# Installs what is missing on Debian 12, so it is cheap to re-run. Sourced by serve.sh, test.sh, package.sh and the
# bench scripts. Needs root (or sudo) for apt on a fresh machine.
#
# TUS_PACKAGES=serve (scripts/serve.sh): only what building and running the server needs. Unset: also what the tests
# and benchmarks use (the engines they start themselves, the clients, the packaging tools).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="/opt/swift/usr/bin:$PATH"

# The C libraries the server links (libuv, OpenSSL, nghttp2 for HTTP/2 framing) and pkg-config to find them.
serve_packages=(libuv1-dev libssl-dev libnghttp2-dev pkg-config)

# curl, python3-venv: the interop tests' clients (pinned PyPI clients in ./.venv, scripts/python-env.sh).
# redis-server, redis-sentinel and nginx-light: the cluster tests start their own Redis (alone and with
# Sentinel) and a round-robin proxy.
# prometheus: `promtool check metrics` lints /metrics in the interop suite.
# radosgw, ceph-mon, ceph-osd, ceph-common: a single-node Ceph RADOS Gateway for the S3 store tests (scripts/ceph-rgw.sh).
# chromium, chromium-driver: a headless browser uploads through the page in Tests/interop/browser (test_browser.py).
# lintian, help2man (and dpkg-dev, systemd for systemd-analyze): scripts/package.sh builds and checks the .deb;
# strace: test_package.py checks the server's system calls against the unit's SystemCallFilter=.
test_packages=(curl python3-venv redis-server redis-sentinel nginx-light prometheus radosgw ceph-mon ceph-osd ceph-common
    chromium chromium-driver dpkg-dev lintian help2man systemd strace)

apt_packages=("${serve_packages[@]}")
if [[ "${TUS_PACKAGES:-all}" != serve ]]; then apt_packages+=("${test_packages[@]}"); fi
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

# The release binaries, with the Swift runtime linked in (--static-swift-stdlib): they run where no toolchain is
# installed, as the .deb needs. Product by product, because the static runtime has no XCTest for the test-support
# target a plain `swift build` would also build. serve.sh, test.sh and package.sh all build this way, so none of
# them relinks the others' binaries.
build_release() {
    local product
    for product in tus-server tus-cli tus-bench; do
        swift build -c release --static-swift-stdlib --product "$product"
    done
}

command -v swift >/dev/null || { echo "bootstrap: Swift 6 toolchain not found (expected /opt/swift)" >&2; exit 1; }
