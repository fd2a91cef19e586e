#!/usr/bin/env bash
# Memory of apprd while it moves big blobs: push (monolithic and chunked) and
# pull blobs of each size in $SIZES_MIB; prints the peak RSS of each phase
# (bench/rss.sh). Flat = the peak does not grow with size.
#   bench/memory.sh                 sizes 64 and 1024 MiB, filesystem store
#   APPRD_TEST_STORAGE=s3 bench/memory.sh
source "$(dirname "$0")/../scripts/lib.sh"
SIZES_MIB=${SIZES_MIB:-64 1024}
CHUNK_MIB=${CHUNK_MIB:-64}
[ -x "$APPRD_BIN" ] || cargo build --release
setup_storage
start_apprd M
cd "$WORK"

source "$ROOT_DIR/bench/rss.sh"
measure() { # label cmd...
  local label=$1; shift
  peak_reset "$M_PID"
  local t0; t0=$(date +%s.%N)
  "$@"
  local t1; t1=$(date +%s.%N)
  printf '%-28s %8.1f s %8.1f MiB/s  peak RSS %6.1f MiB\n' "$label" "$(echo "$t1 - $t0" | bc)" \
    "$(echo "$size / ($t1 - $t0)" | bc -l)" "$(rss_mib "$M_PID" VmHWM)"
}

push_mono() { curl -sf -o /dev/null -X POST -H 'Content-Type: application/octet-stream' -T blob "$M_URL/v2/bench/mem/blobs/uploads?digest=$digest"; }
push_chunked() {
  local loc off=0 total; total=$(stat -c %s blob)
  loc=$(curl -sf -o /dev/null -w '%header{location}' -X POST "$M_URL/v2/bench/mem2/blobs/uploads/")
  while [ "$off" -lt "$total" ]; do
    local n=$(( CHUNK_MIB * 1048576 )); [ $((off + n)) -gt "$total" ] && n=$((total - off))
    # From a file, so that the PATCH carries Content-Length as docker's do.
    dd if=blob of=chunk bs=1M iflag=skip_bytes,count_bytes skip="$off" count="$n" status=none
    loc=$(curl -sf -o /dev/null -w '%header{location}' -X PATCH \
      -H 'Content-Type: application/octet-stream' -H "Content-Range: $off-$((off + n - 1))" -T chunk "$M_URL$loc")
    off=$((off + n))
  done
  rm -f chunk
  curl -sf -o /dev/null -X PUT "$M_URL$loc?digest=$digest"
}
pull() { curl -sf -o /dev/null "$M_URL/v2/bench/mem/blobs/$digest"; }

printf 'apprd %s, storage %s, baseline RSS %.1f MiB\n' "$(git -C "$ROOT_DIR" rev-parse --short HEAD)" "$APPRD_TEST_STORAGE" "$(rss_mib "$M_PID" VmRSS)"
for size in $SIZES_MIB; do
  head -c $((size * 1048576)) /dev/urandom >blob
  digest=sha256:$(sha256sum blob | cut -d' ' -f1)
  measure "push ${size} MiB monolithic" push_mono
  measure "push ${size} MiB chunked" push_chunked
  measure "pull ${size} MiB" pull
  curl -sf -o /dev/null -X DELETE "$M_URL/v2/bench/mem/blobs/$digest" || true
  rm -f blob
done
