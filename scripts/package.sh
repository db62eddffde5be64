#!/usr/bin/env bash
# Builds dist/tus-server_<version>_<arch>.deb from this checkout with Debian's own tools (dpkg-deb, dpkg-shlibdeps,
# help2man for the man pages), then checks it: lintian must report no error and systemd-analyze must accept the
# unit. Reuses the release build when it is there (scripts/test.sh builds it for the interop tests).
#
# The package: /usr/bin/tus-server, tus-cli, tus-bench (Swift runtime linked in, so no toolchain is needed where it
# is installed), their man pages, /etc/default/tus-server (the flags) and a hardened tus-server.service
# (packaging/). Prints the .deb's path on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh

build_release >&2
bin=.build/release
version="$("$bin/tus-server" --version)"
if git rev-parse --git-dir >/dev/null 2>&1; then
    # A snapshot sorts after the release it builds on and before the next one.
    version+="+git$(git log -1 --format=%cd --date=format:%Y%m%d).$(git rev-parse --short=8 HEAD)"
fi
version+="-1"  # Debian revision: the packaging is ours, not the upstream source's
arch="$(dpkg --print-architecture)"
deb="dist/tus-server_${version}_${arch}.deb"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
root="$work/debian/tus-server"  # the layout dpkg-shlibdeps expects of a package's build tree
doc="$root/usr/share/doc/tus-server"

for program in tus-server tus-cli tus-bench; do
    install -D -m 0755 "$bin/$program" "$root/usr/bin/$program"
    # As dh_strip: symbols out (Swift keeps the metadata sections it needs at run time).
    strip --strip-unneeded --remove-section=.comment --remove-section=.note "$root/usr/bin/$program"
done
mkdir -p "$root/usr/share/man/man1"
declare -A summaries=(
    [tus-server]="a tus 1.0.0 resumable-upload server"
    [tus-cli]="a tus 1.0.0 resumable-upload client"
    [tus-bench]="a load generator for tus servers")
for program in tus-server tus-cli tus-bench; do
    include=()
    [[ -f "packaging/$program.h2m" ]] && include=(--include="packaging/$program.h2m")
    help2man --no-info --no-discard-stderr --version-string="$version" --name="${summaries[$program]}" \
        "${include[@]}" --section=1 "$root/usr/bin/$program" | gzip -9n > "$root/usr/share/man/man1/$program.1.gz"
done
install -D -m 0644 packaging/tus-server.default "$root/etc/default/tus-server"
install -D -m 0644 packaging/tus-server.service "$root/usr/lib/systemd/system/tus-server.service"
install -d -m 0755 "$doc"
install -m 0644 README.md "$doc/README.md"
gzip -9n "$doc/README.md"
cat > "$doc/copyright" <<COPYRIGHT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: tus-server
Comment: Built from the tus-server source repository by scripts/package.sh. The repository states no licence;
 ask its maintainers before redistributing.

Files: *
Copyright: $(git log -1 --format=%cd --date=format:%Y 2>/dev/null || date +%Y) the tus-server maintainers
License: unspecified
 The repository this package was built from does not state a licence.
COPYRIGHT
{
    echo "tus-server ($version) unstable; urgency=medium"
    echo
    echo "  * Snapshot of $(git rev-parse HEAD 2>/dev/null || echo 'an unversioned tree'); see README.md."
    echo
    committed="$(git log -1 --format=%ct 2>/dev/null || date +%s)"
    echo " -- tus-server maintainers <maintainers@tus-server.invalid>  $(date -R -d "@$committed")"
} | gzip -9n > "$doc/changelog.Debian.gz"

# Dependencies: the shared libraries the binaries really link (libuv, OpenSSL, nghttp2, libc...), as Debian's
# shlibs files name them.
mkdir -p "$root/DEBIAN"
echo "Source: tus-server" > "$work/debian/control"
depends="$(cd "$work" && dpkg-shlibdeps -O -e"debian/tus-server/usr/bin/tus-server" \
    -e"debian/tus-server/usr/bin/tus-cli" -e"debian/tus-server/usr/bin/tus-bench" | sed -n 's/^shlibs:Depends=//p')"
[[ -n "$depends" ]] || { echo "package: dpkg-shlibdeps found no dependencies" >&2; exit 1; }

install -m 0755 packaging/postinst packaging/prerm packaging/postrm "$root/DEBIAN/"
echo /etc/default/tus-server > "$root/DEBIAN/conffiles"
cat > "$root/DEBIAN/control" <<CONTROL
Package: tus-server
Version: $version
Architecture: $arch
Maintainer: tus-server maintainers <maintainers@tus-server.invalid>
Installed-Size: $(du -sk --exclude=DEBIAN "$root" | cut -f1)
Depends: $depends
Section: web
Priority: optional
Description: tus 1.0.0 resumable-upload server, client and load generator
 tus-server receives resumable uploads (tus 1.0.0 with creation, checksum,
 termination, concatenation and expiration) over HTTP/1.1 and HTTP/2, with
 TLS, and stores them on the local file system or in S3-compatible object
 storage; several instances can share state through Redis.
 .
 The package runs it as a hardened systemd service (tus-server.service,
 flags in /etc/default/tus-server) and ships tus-cli, a client, and
 tus-bench, a load generator.
CONTROL
(cd "$root" && find . -type f ! -path './DEBIAN/*' ! -path './etc/*' -printf '%P\0' | sort -z | xargs -0 md5sum) \
    > "$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/conffiles" "$root/DEBIAN/md5sums"
mkdir -p dist
rm -f dist/tus-server_*.deb  # dist/ holds the package this run made, and only that
# xz (dpkg's default) is 30% smaller and costs six times the CPU of gzip (30 s against 5 s here): CI, which only
# checks the package, asks for gzip (TUS_DEB_COMPRESSION=gzip in scripts/test.sh).
dpkg-deb --root-owner-group -Z"${TUS_DEB_COMPRESSION:-xz}" --build "$root" "$deb" >&2

# The checks CI relies on: no lintian error (warnings are printed), and a unit file systemd accepts.
lintian --fail-on error --tag-display-limit 0 "$deb" >&2
# verify checks the host's view (units it depends on, the executables it names, the man page in Documentation=),
# so the copy it reads runs the staged binary and finds the staged man page; anything it reports is a failure.
unit="$work/tus-server.service"
sed "s#^ExecStart=/usr/bin/tus-server #ExecStart=$root/usr/bin/tus-server #" packaging/tus-server.service > "$unit"
if ! report="$(MANPATH="$root/usr/share/man" systemd-analyze verify "$unit" 2>&1)" || [[ -n "$report" ]]; then
    echo "package: systemd-analyze verify rejects the unit:" >&2
    echo "$report" >&2
    exit 1
fi
# And it must stay hardened: systemd's own exposure score (0 = locked down, 10 = none of it) is 1.6 for this unit;
# above 2.0 (a hardening line lost) fails.
if ! report="$(systemd-analyze security --offline=yes --threshold=20 "$unit" 2>&1)"; then
    echo "package: the unit's exposure rose above 2.0:" >&2
    echo "$report" | grep -E '✗|Overall' >&2
    exit 1
fi
echo "$deb"
