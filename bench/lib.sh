# Shared by the bench/ scripts (source it): the machine's own limits and the VM memory warm-up, so every script
# measures them the same way and a run's ratios compare against limits taken in that run.

# This machine is a VM: the first time the guest touches a page, the host has to back it, and writing into
# never-touched memory ran at 288 MB/s here against 861 MB/s for the same dd into memory touched before. Page
# cache and tmpfs writes land in whatever pages the kernel hands out, so without this the first server measured
# pays for the host's faults and the order of the suite decides the ratios. Touch most of the free memory once
# (a tmpfs file, deleted at once; pages touched stay backed) before anything is measured.
#   bench_warm_guest_memory MAX_MIB
# BENCH_WARMED=1 in the environment skips it (a parent script warmed already).
bench_warm_guest_memory() {
  [ "${BENCH_WARMED:-0}" = 1 ] && return 0
  local avail_mib warm_mib warm
  avail_mib=$(awk '/MemAvailable/{print int($2/1024)}' /proc/meminfo)
  warm_mib=$(( avail_mib * 7 / 10 )); [ "$warm_mib" -gt "$1" ] && warm_mib=$1
  warm=$(mktemp -d /dev/shm/tus-bench-warm.XXXXXX)
  echo "== warming $warm_mib MiB of guest memory (first-touch cost out of the measurements)"
  dd if=/dev/zero of="$warm/fill" bs=1M count="$warm_mib" status=none || true
  rm -rf "$warm"
}

# A digest's or cipher's own speed on one core, in MB/s (10^6 bytes/s) at 256 KiB blocks: openssl speed reports
# 1000s of bytes per second for each block size.
#   bench_openssl_speed ALGORITHM SECONDS   (ALGORITHM as `openssl speed -evp` names it: sha1, sha256, md5, aes-128-gcm)
bench_openssl_speed() {
  local k
  k=$(openssl speed -evp "$1" -bytes 262144 -seconds "$2" 2>/dev/null \
        | awk -v a="$1" 'tolower($1) == a { v = $NF } END { sub(/k$/, "", v); print v }')
  python3 -c "print(round(float('${k:-0}') / 1000, 1))"
}

# dd's write rate into DIR, in MB/s: MIB MiB of zeros in 1 MiB blocks with FLAGS (conv=fdatasync: the disk's own
# durable rate; oflag=direct: bypassing the page cache). The file is deleted afterwards.
#   bench_dd DIR MIB FLAGS...
bench_dd() {
  local dir=$1 mib=$2; shift 2
  local start end
  sync
  start=$(date +%s.%N)
  dd if=/dev/zero of="$dir/dd.out" bs=1M count="$mib" "$@" status=none
  end=$(date +%s.%N)
  rm -f "$dir/dd.out"
  python3 -c "print(round($mib * 1048576 / ($end - $start) / 1e6, 1))"
}
