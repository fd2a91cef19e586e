#!/usr/bin/env bash
# apprd vs the CNCF Distribution registry on the same S3 store (Garage, one
# node, data on local disk): push and pull of big blobs, wall time and the
# server's peak RSS, side by side, with ratios (apprd / Distribution).
#   bench/s3.sh                       sizes 100 and 1024 MiB
#   SIZES_MIB="100" bench/s3.sh
# Needs `scripts/tools.sh bench` (garage, registry) and a release build.
# Pushes: "mono" = POST then one PUT with the whole body; "chunked" = PATCHes
# of CHUNK_MIB each, then PUT. Part size 8 MiB on both sides.
source "$(dirname "$0")/../scripts/lib.sh"
SIZES_MIB=${SIZES_MIB:-100 1024}
CHUNK_MIB=${CHUNK_MIB:-32}
PART=8388608
GARAGE=${APPRD_GARAGE:-$APPRD_CACHE/bin/garage}
DISTRIBUTION=${APPRD_DISTRIBUTION:-$APPRD_CACHE/bin/registry}
[ -x "$GARAGE" ] || fail "no garage at $GARAGE: run scripts/tools.sh bench"
[ -x "$DISTRIBUTION" ] || fail "no Distribution registry at $DISTRIBUTION: run scripts/tools.sh bench"
[ -x "$APPRD_BIN" ] || (cd "$ROOT_DIR" && cargo build --release --locked)
cd "$WORK"

log "garage $("$GARAGE" --version 2>&1 | head -1) in $WORK/garage"
s3_port=$(free_port)
export AWS_ACCESS_KEY_ID=GK0123456789abcdef01234567
export AWS_SECRET_ACCESS_KEY=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
export AWS_REGION=us-east-1 AWS_ENDPOINT_URL=http://127.0.0.1:$s3_port
cat > garage.toml <<TOML
metadata_dir = "$WORK/garage/meta"
data_dir = "$WORK/garage/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$(free_port)"
rpc_secret = "1799bccfd7411eddcf9ebd316bc1f5287ad12a68094e1c6ac6abde7e6feae1ec"
[s3_api]
s3_region = "us-east-1"
api_bind_addr = "127.0.0.1:$s3_port"
root_domain = ".s3.garage.localhost"
TOML
GARAGE_DEFAULT_ACCESS_KEY=$AWS_ACCESS_KEY_ID GARAGE_DEFAULT_SECRET_KEY=$AWS_SECRET_ACCESS_KEY GARAGE_DEFAULT_BUCKET=bench \
  "$GARAGE" -c garage.toml server --single-node --default-access-key --default-bucket > garage.log 2>&1 &
_pids+=($!)
wait_http "$AWS_ENDPOINT_URL" 30
for _ in $(seq 1 50); do # the bucket exists once a signed HEAD answers 200
  [ "$(curl -s -o /dev/null -w '%{http_code}' -I --aws-sigv4 aws:amz:us-east-1:s3 \
    --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" "$AWS_ENDPOINT_URL/bench")" = 200 ] && break
  sleep 0.2
done

start_distribution() { # sets D_URL, D_PID
  local port; port=$(free_port)
  cat > distribution.yml <<YAML
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  s3:
    accesskey: $AWS_ACCESS_KEY_ID
    secretkey: $AWS_SECRET_ACCESS_KEY
    region: us-east-1
    regionendpoint: $AWS_ENDPOINT_URL
    forcepathstyle: true
    secure: false
    bucket: bench
    rootdirectory: /distribution
    chunksize: $PART
  delete:
    enabled: true
  redirect:
    disable: true
http:
  addr: 127.0.0.1:$port
YAML
  "$DISTRIBUTION" serve distribution.yml > distribution.log 2>&1 &
  D_PID=$!
  _pids+=("$D_PID")
  D_URL=http://127.0.0.1:$port
  wait_http "$D_URL/v2/" 30
}

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
sample() { # PID FILE: the peak RSS seen, until killed
  local peak=0 r
  while true; do
    r=$(rss_kib "$1"); [ "$r" -gt "$peak" ] && peak=$r && echo "$peak" > "$2"
    sleep 0.05
  done
}
declare -A secs rss
measure() { # KEY PID cmd...
  local key=$1 pid=$2; shift 2
  echo 0 > peak; sample "$pid" peak & local s=$!
  local t0 t1; t0=$(date +%s.%N)
  "$@" || fail "$key failed"
  t1=$(date +%s.%N)
  kill "$s"; wait "$s" 2>/dev/null || true
  secs[$key]=$(echo "$t1 - $t0" | bc -l)
  rss[$key]=$(echo "$(cat peak) / 1024" | bc -l)
  printf '%-34s %7.2f s  %7.1f MiB/s  peak RSS %6.1f MiB\n' "$key" "${secs[$key]}" \
    "$(echo "$size / ${secs[$key]}" | bc -l)" "${rss[$key]}" >&2
}

# Push and pull helpers against $URL, repository bench/<name>.
push_mono() {
  local loc; loc=$(curl -sf -o /dev/null -w '%header{location}' -X POST "$URL/v2/bench/mono/blobs/uploads/")
  case $loc in http*) ;; *) loc=$URL$loc ;; esac
  case $loc in *\?*) sep='&' ;; *) sep='?' ;; esac
  curl -sf -o /dev/null -X PUT -H 'Content-Type: application/octet-stream' -T blob "$loc${sep}digest=$digest"
}
push_chunked() {
  local loc off=0 total n; total=$(stat -c %s blob)
  loc=$(curl -sf -o /dev/null -w '%header{location}' -X POST "$URL/v2/bench/chunked/blobs/uploads/")
  while [ "$off" -lt "$total" ]; do
    case $loc in http*) ;; *) loc=$URL$loc ;; esac
    n=$((CHUNK_MIB * 1048576)); [ $((off + n)) -gt "$total" ] && n=$((total - off))
    loc=$(dd if=blob bs=1M iflag=skip_bytes,count_bytes skip="$off" count="$n" status=none |
      curl -sf -o /dev/null -w '%header{location}' -X PATCH -H 'Content-Type: application/octet-stream' \
        -H "Content-Range: $off-$((off + n - 1))" -T - "$loc")
    off=$((off + n))
  done
  case $loc in http*) ;; *) loc=$URL$loc ;; esac
  case $loc in *\?*) sep='&' ;; *) sep='?' ;; esac
  curl -sf -o /dev/null -X PUT "$loc${sep}digest=$digest"
}
pull() {
  [ "$(curl -sf "$URL/v2/bench/mono/blobs/$digest" | sha256sum | cut -d' ' -f1)" = "${digest#sha256:}" ]
}

run_one() { # NAME PID
  local name=$1 pid=$2
  measure "$name push ${size} MiB (mono)" "$pid" push_mono
  measure "$name push ${size} MiB (chunked)" "$pid" push_chunked
  measure "$name pull ${size} MiB" "$pid" pull
}

export APPRD_TEST_STORAGE=s3 APPRD_S3_BUCKET=bench
start_apprd R --s3-prefix apprd --s3-part-size "$PART"
start_distribution
log "apprd $(git -C "$ROOT_DIR" rev-parse --short HEAD) at $R_URL, Distribution $("$DISTRIBUTION" --version | awk '{print $3}') at $D_URL"
for size in $SIZES_MIB; do
  head -c $((size * 1048576)) /dev/urandom > blob
  digest=sha256:$(sha256sum blob | cut -d' ' -f1)
  URL=$R_URL run_one apprd "$R_PID"
  URL=$D_URL run_one distribution "$D_PID"
  rm -f blob
done

{
  echo "| operation | apprd s | apprd MiB/s | apprd peak RSS MiB | Distribution s | Distribution MiB/s | Distribution peak RSS MiB | time ratio | RSS ratio |"
  echo "|---|---|---|---|---|---|---|---|---|"
  for size in $SIZES_MIB; do
    for op in "push ${size} MiB (mono)" "push ${size} MiB (chunked)" "pull ${size} MiB"; do
      a="apprd $op" d="distribution $op"
      printf '| %s | %.2f | %.0f | %.1f | %.2f | %.0f | %.1f | %.2f | %.2f |\n' "$op" \
        "${secs[$a]}" "$(echo "$size / ${secs[$a]}" | bc -l)" "${rss[$a]}" \
        "${secs[$d]}" "$(echo "$size / ${secs[$d]}" | bc -l)" "${rss[$d]}" \
        "$(echo "${secs[$a]} / ${secs[$d]}" | bc -l)" "$(echo "${rss[$a]} / ${rss[$d]}" | bc -l)"
    done
  done
  echo
  echo "Ratios are apprd / Distribution (below 1: apprd is faster or smaller)."
  echo "Peak RSS over the run (VmHWM): apprd $(awk '/^VmHWM/ {print $2, $3}' "/proc/$R_PID/status"), Distribution $(awk '/^VmHWM/ {print $2, $3}' "/proc/$D_PID/status")."
  echo "Machine: $(nproc) cores shared by client, registries and Garage; chunk $CHUNK_MIB MiB, part $PART bytes."
}
