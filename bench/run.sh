#!/usr/bin/env bash
# apprd side by side with the registries people would pick instead, in one run,
# on the same machine and the same kind of storage:
#   - CNCF Distribution v3 (built pinned by scripts/tools.sh bench)
#   - Debian's docker-registry (Distribution 2.8)
#   - for APPR, the reference appr 0.7.4 server (Python 2.7, filesystem only)
# over the filesystem (same disk) and S3 (one fresh Garage per system), plus
# the machine's own limits (single-core SHA-256, sequential disk write/read,
# a file sent over loopback HTTP by sendfile).
# Each figure is the median of $RUNS runs with its min-max spread; the tables
# (one per storage, with ratios apprd/peer) land in bench/results/.
#
#   bench/run.sh                     everything (90-150 min on 2 cores)
#   QUICK=1 bench/run.sh             one short run of each row (a smoke test)
#   STORAGES=filesystem SYSTEMS="apprd distribution" bench/run.sh
#   WORKLOADS="lists" bench/run.sh   only some rows (startup and idle RSS always)
# Workloads: blobs (push, pull), manifests, small (images), lists, appr,
# pulls and pushes (every system at once, taken in turn), limits (the machine's).
#
# The server runs on CPU $SERVER_CPU, the client (and Garage) on $CLIENT_CPU.
# Needs `scripts/tools.sh bench`.
source "$(dirname "$0")/../scripts/lib.sh"

QUICK=${QUICK:-}
RUNS=${RUNS:-$([ -n "$QUICK" ] && echo 1 || echo 5)}
SIZES_MIB=${SIZES_MIB:-$([ -n "$QUICK" ] && echo 100 || echo "100 1024")}
CHUNK_MIB=${CHUNK_MIB:-10}
PULLS=${PULLS:-$([ -n "$QUICK" ] && echo 1 || echo 3)} # timed pulls of each pushed blob
LOAD_SECONDS=${LOAD_SECONDS:-$([ -n "$QUICK" ] && echo 1 || echo 2)}
CONCURRENCY=${CONCURRENCY:-1 16 128}
TAGS=${TAGS:-$([ -n "$QUICK" ] && echo 1000 || echo 10000)}
REPOS=${REPOS:-$([ -n "$QUICK" ] && echo 1000 || echo 10000)}
PAGE=${PAGE:-1000}
SMALL_IMAGES=${SMALL_IMAGES:-200}
APPR_MIB=${APPR_MIB:-1 10 100}
STORAGES=${STORAGES:-filesystem s3}
SYSTEMS=${SYSTEMS:-apprd distribution docker-registry}
# Which workloads run (all by default): blobs manifests small lists appr pulls pushes limits
WORKLOADS=${WORKLOADS:-blobs manifests small lists appr pulls pushes limits}
# A partial run can be completed from earlier raw lines (report.py --earlier):
# EARLIER="bench/results/raw.jsonl ..." EARLIER_APPRD="what made them";
# RAW_NAME is the name this run's own raw lines get in bench/results/.
EARLIER=${EARLIER:-}
EARLIER_APPRD=${EARLIER_APPRD:-?}
RAW_NAME=${RAW_NAME:-raw.jsonl}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
PART=8388608 # S3 part size, the same on every system

DISTRIBUTION=${APPRD_DISTRIBUTION:-$APPRD_CACHE/bin/registry}
DOCKER_REGISTRY=${DOCKER_REGISTRY:-/usr/bin/docker-registry}
GARAGE=${APPRD_GARAGE:-$APPRD_CACHE/bin/garage}
REFERENCE=${APPR_REFERENCE_SERVER:-$APPRD_CACHE/bin/appr-reference-server}
DRIVER=$ROOT_DIR/target/release/apprd-bench
RESULTS=${RESULTS:-$ROOT_DIR/bench/results}

(cd "$ROOT_DIR" && cargo build --release --locked -p apprd -p apprd-bench >&2)
for t in "$DISTRIBUTION" "$DOCKER_REGISTRY" "$REFERENCE"; do
  [ -x "$t" ] || fail "missing $t: run scripts/tools.sh bench"
done
case " $STORAGES " in *" s3 "*) [ -x "$GARAGE" ] || fail "missing $GARAGE: run scripts/tools.sh bench" ;; esac
cd "$WORK"
RAW=$WORK/raw.jsonl
: >"$RAW"
client() { taskset -c "$CLIENT_CPU" "$@"; }
wants() { case " $WORKLOADS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
drive() { client "$DRIVER" "$@"; }
now_ns() { date +%s%N; }

# record STORAGE SYSTEM ROW VALUE: one measurement (the report takes medians).
record() { printf '{"storage":"%s","system":"%s","row":"%s","value":%s}\n' "$1" "$2" "$3" "$4" >>"$RAW"; }
json_field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

source "$ROOT_DIR/bench/rss.sh"

# ---------------------------------------------------------------------------
# Storage: Garage (fresh per system, so no system reads another's leftovers)
# ---------------------------------------------------------------------------
GARAGE_PID=
start_garage() {
  local port dir=$WORK/garage
  stop_garage
  rm -rf "$dir" && mkdir -p "$dir"
  port=$(free_port)
  export AWS_ACCESS_KEY_ID=GK0123456789abcdef01234567
  export AWS_SECRET_ACCESS_KEY=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
  export AWS_REGION=us-east-1 AWS_ENDPOINT_URL=http://127.0.0.1:$port
  # curl's options for a signed request to Garage (payload left unsigned)
  S3_SIGNED=(--aws-sigv4 aws:amz:us-east-1:s3 --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY"
    -H "x-amz-content-sha256: UNSIGNED-PAYLOAD")
  cat >"$dir/garage.toml" <<TOML
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$(free_port)"
rpc_secret = "1799bccfd7411eddcf9ebd316bc1f5287ad12a68094e1c6ac6abde7e6feae1ec"
[s3_api]
s3_region = "us-east-1"
api_bind_addr = "127.0.0.1:$port"
root_domain = ".s3.garage.localhost"
TOML
  GARAGE_DEFAULT_ACCESS_KEY=$AWS_ACCESS_KEY_ID GARAGE_DEFAULT_SECRET_KEY=$AWS_SECRET_ACCESS_KEY GARAGE_DEFAULT_BUCKET=bench \
    taskset -c "$CLIENT_CPU" "$GARAGE" -c "$dir/garage.toml" server --single-node --default-access-key --default-bucket \
    >"$dir/garage.log" 2>&1 &
  GARAGE_PID=$!
  _pids+=("$GARAGE_PID")
  wait_http "$AWS_ENDPOINT_URL" 30
  for _ in $(seq 1 100); do # the bucket exists once a signed HEAD answers 200
    [ "$(curl -s -o /dev/null -w '%{http_code}' -I "${S3_SIGNED[@]}" "$AWS_ENDPOINT_URL/bench")" = 200 ] && return 0
    sleep 0.1
  done
  fail "garage: bucket bench not ready"
}
stop_garage() {
  [ -n "$GARAGE_PID" ] || return 0
  kill "$GARAGE_PID" 2>/dev/null || true
  wait "$GARAGE_PID" 2>/dev/null || true
  GARAGE_PID=
}

# ---------------------------------------------------------------------------
# Systems
# ---------------------------------------------------------------------------
distribution_config() { # FILE ADDR STORAGE DATADIR
  local storage
  if [ "$3" = s3 ]; then
    storage="  s3:
    accesskey: $AWS_ACCESS_KEY_ID
    secretkey: $AWS_SECRET_ACCESS_KEY
    region: us-east-1
    regionendpoint: $AWS_ENDPOINT_URL
    forcepathstyle: true
    secure: false
    v4auth: true
    bucket: bench
    chunksize: $PART"
  else
    storage="  filesystem:
    rootdirectory: $4"
  fi
  cat >"$1" <<YAML
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
$storage
  delete:
    enabled: true
  redirect:
    disable: true
http:
  addr: $2
YAML
}

SYS_PID= SYS_URL= SYS_STARTUP_MS=
# start_system SYSTEM STORAGE: start it on $SERVER_CPU over an empty store;
# SYS_STARTUP_MS is the time from exec to its first successful answer.
start_system() {
  local system=$1 storage=$2 port dir=$WORK/$1-$2 t0 cmd out
  port=$(free_port)
  rm -rf "$dir" && mkdir -p "$dir"
  case $system in
    apprd)
      # APPRD_LOG=warn: no per-request log line, as the peers run with access logs off.
      cmd=(env APPRD_LOG=warn "$APPRD_BIN" serve --listen "127.0.0.1:$port")
      if [ "$storage" = s3 ]; then
        cmd+=(--storage s3 --s3-bucket bench --s3-prefix apprd --s3-path-style true --s3-part-size "$PART")
      else
        cmd+=(--storage filesystem --root "$dir/data")
      fi
      ;;
    distribution | docker-registry)
      distribution_config "$dir/config.yml" "127.0.0.1:$port" "$storage" "$dir/data"
      # No rootdirectory on S3: with one, v3's Walk sends the root as StartAfter
      # and Garage (rightly) lists nothing (distribution/distribution#4932).
      # OTEL_TRACES_EXPORTER=none: v3 otherwise exports traces to localhost:4318.
      # -u AWS_CA_BUNDLE: 2.8's SDK panics on it with its custom transport.
      cmd=(env -u AWS_CA_BUNDLE OTEL_TRACES_EXPORTER=none "$([ "$system" = distribution ] && echo "$DISTRIBUTION" || echo "$DOCKER_REGISTRY")" serve "$dir/config.yml")
      ;;
    appr-reference)
      cmd=("$REFERENCE" "$port" "$dir/data")
      ;;
  esac
  SYS_URL=http://127.0.0.1:$port
  t0=$(now_ns)
  taskset -c "$SERVER_CPU" "${cmd[@]}" >"$dir/server.log" 2>&1 &
  SYS_PID=$!
  _pids+=("$SYS_PID")
  local probe=$SYS_URL/v2/
  [ "$system" = appr-reference ] && probe=$SYS_URL/cnr/version
  out=$(drive ready --url "$probe" --since-ns "$t0") || fail "$system ($storage) did not start: $(tail -5 "$dir/server.log")"
  SYS_STARTUP_MS=$(json_field "$out" ms)
}
stop_system() {
  kill "$SYS_PID" 2>/dev/null || true
  wait "$SYS_PID" 2>/dev/null || true
}

# ---------------------------------------------------------------------------
# Workloads
# ---------------------------------------------------------------------------
# Start each blob run with the page cache empty: on a VM, writes into pages
# the guest has never touched cost several times more, which made the same
# push vary 2x with what earlier runs had left cached.
drop_caches() {
  sync
  { echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null || true
}

# settle: write back what the workload before left dirty (GiBs after the
# blob pushes), so the next one does not share the cores with that writeback.
settle() {
  sync
  sleep 2
}

# fresh_store STORAGE: a fresh Garage for s3, then let the disk and the page
# cache settle from what the block before left (a Garage store of many GiB
# just deleted, its writeback), so no system runs in another's wake.
fresh_store() {
  if [ "$1" = s3 ]; then start_garage; fi
  drop_caches
  sleep 3
}

# noise FILE MIB SEED: the same pseudo-random bytes on every system (AES-CTR
# of zeros: fast, incompressible, reproducible from SEED), synced: their
# writeback must not run during the timed transfers that read them.
noise() {
  { openssl enc -aes-128-ctr -nosalt -pass "pass:$3" -pbkdf2 </dev/zero 2>/dev/null || true; } | head -c $(($2 * 1048576)) >"$1"
  sync
}
# make_blob FILE MIB SEED: noise, and its digest in FILE.sha256.
make_blob() {
  noise "$@"
  sha256sum "$1" | cut -d' ' -f1 >"$1.sha256"
}
# curl_rate STORAGE SYSTEM ROW MIB curl-args...: one transfer, MiB/s from
# curl's own clock (a process spawn would weigh on the small rows).
curl_rate() {
  local storage=$1 system=$2 row=$3 mib=$4 secs
  shift 4
  secs=$(client curl -sf -o /dev/null -w '%{time_total}' "$@") || fail "$system ($storage): $row failed"
  record "$storage" "$system" "$row" "$(echo "scale=2; $mib / $secs" | bc)"
}
pull_check() { # FILE REPO: one untimed pull that checks the bytes
  [ "$(curl -sf "$SYS_URL/v2/$2/blobs/sha256:$(cat "$1.sha256")" | sha256sum | cut -d' ' -f1)" = "$(cat "$1.sha256")" ] ||
    fail "$system: pulled blob differs"
}
push_file() { # STORAGE SYSTEM ROW FILE REPO [driver flags]: one streamed push, MiB/s
  local out
  out=$(drive push --url "$SYS_URL" --repo "$5" --file "$4" --digest "sha256:$(cat "$4.sha256")" "${@:6}") ||
    fail "$2 ($1): $3 failed"
  record "$1" "$2" "$3" "$(json_field "$out" mib_per_s)"
}

# blob_inputs MIB R: drop the page cache, then make run R's two inputs,
# $BLOB_A (pushed monolithic) and $BLOB_B (pushed in chunks). bench_blobs and
# in_place_limits both start each run here, so their writes land alike.
blob_inputs() {
  BLOB_A=$WORK/blob-$1-$2-a BLOB_B=$WORK/blob-$1-$2-b
  drop_caches
  make_blob "$BLOB_A" "$1" "mono-$1-$2"
  make_blob "$BLOB_B" "$1" "chunked-$1-$2"
}
drop_blob_inputs() { rm -f "$BLOB_A" "$BLOB_B" "$BLOB_A.sha256" "$BLOB_B.sha256"; }

bench_blobs() { # STORAGE SYSTEM
  local storage=$1 system=$2 mib r a b pull
  for mib in $SIZES_MIB; do
    peak_reset "$SYS_PID"
    for r in $(seq 1 "$RUNS"); do
      blob_inputs "$mib" "$r"
      a=$BLOB_A b=$BLOB_B
      push_file "$storage" "$system" "push ${mib} MiB monolithic (MiB/s)" "$a" blobs/mono
      push_file "$storage" "$system" "push ${mib} MiB chunked ${CHUNK_MIB} MiB (MiB/s)" "$b" blobs/chunked --chunk-mib "$CHUNK_MIB"
      # A 100 MiB pull takes a tenth of a second and moves by 20% from one to
      # the next, so each run times $PULLS of them (the median is over all).
      pull=$SYS_URL/v2/blobs/mono/blobs/sha256:$(cat "$a.sha256")
      for _ in $(seq 1 "$PULLS"); do curl_rate "$storage" "$system" "pull ${mib} MiB (MiB/s)" "$mib" "$pull"; done
      if [ "$r" = 1 ]; then pull_check "$b" blobs/chunked; fi
      drop_blob_inputs
    done
    record "$storage" "$system" "peak RSS, ${mib} MiB blobs (MiB)" "$(rss_mib "$SYS_PID" VmHWM)"
  done
}

bench_manifests() { # STORAGE SYSTEM
  local storage=$1 system=$2 digest method ref c r out t0 t1 v
  local -A cpu=()
  drive seed-tags --url "$SYS_URL" --repo bench/manifests --tags 1 >/dev/null
  digest=$(curl -sf -o /dev/null -w '%header{docker-content-digest}' \
    -H 'Accept: application/vnd.oci.image.manifest.v1+json' "$SYS_URL/v2/bench/manifests/manifests/t00000")
  [ -n "$digest" ] || fail "$system: no manifest digest"
  peak_reset "$SYS_PID"
  for method in GET HEAD; do
    for ref in tag digest; do
      local target=t00000
      [ "$ref" = digest ] && target=$digest
      for c in $CONCURRENCY; do
        for r in $(seq 1 "$RUNS"); do
          t0=$(cpu_us "$SYS_PID")
          out=$(drive load --url "$SYS_URL/v2/bench/manifests/manifests/$target" --method "$method" \
            --concurrency "$c" --seconds "$LOAD_SECONDS") || fail "$system: manifest load failed"
          t1=$(cpu_us "$SYS_PID")
          cpu[$c]+=" $(echo "($t1 - $t0) / $(json_field "$out" requests)" | bc -l)"
          record "$storage" "$system" "manifest $method by $ref, c=$c (req/s)" "$(json_field "$out" rps)"
          record "$storage" "$system" "manifest $method by $ref, c=$c p50 (ms)" "$(json_field "$out" p50_ms)"
          record "$storage" "$system" "manifest $method by $ref, c=$c p99 (ms)" "$(json_field "$out" p99_ms)"
        done
      done
    done
  done
  # What a request cost the server, over every method and reference: apprd
  # polls a little before it sleeps (src/ops/idle_poll.rs), which costs CPU.
  for c in $CONCURRENCY; do
    for v in ${cpu[$c]}; do
      record "$storage" "$system" "server CPU per manifest request, c=$c (µs)" "$(printf '%.2f' "$v")"
    done
  done
  record "$storage" "$system" "peak RSS, manifest load (MiB)" "$(rss_mib "$SYS_PID" VmHWM)"
  if [ "$system" = apprd ] && [ "$storage" = s3 ]; then
    # The reads must have gone direct (src/store/s3/direct.rs): Garage checks signatures.
    local m direct sdk
    m=$(curl -sf "$SYS_URL/metrics") || fail "apprd: no /metrics"
    direct=$(awk '/^apprd_s3_reads_total\{path="direct"\}/ {print $2}' <<<"$m")
    sdk=$(awk '/^apprd_s3_reads_total\{path="sdk"\}/ {print $2}' <<<"$m")
    log "apprd S3 reads: ${direct:-0} direct, ${sdk:-0} through the SDK"
    [ "${direct:-0}" -gt 0 ] || fail "apprd: no S3 read went direct"
  fi
}

bench_lists() { # STORAGE SYSTEM
  local storage=$1 system=$2 r out
  peak_reset "$SYS_PID"
  out=$(drive seed-tags --url "$SYS_URL" --repo bench/tags --tags "$TAGS") || fail "$system: seeding tags failed"
  record "$storage" "$system" "tag $TAGS tags, 16 clients (tags/s)" "$(echo "scale=1; $TAGS / $(json_field "$out" seconds)" | bc)"
  out=$(drive seed-repos --url "$SYS_URL" --prefix catalog --repos "$REPOS") || fail "$system: seeding repositories failed"
  record "$storage" "$system" "create $REPOS repositories, 16 clients (repos/s)" "$(echo "scale=1; $REPOS / $(json_field "$out" seconds)" | bc)"
  for r in $(seq 1 "$RUNS"); do
    out=$(drive list --url "$SYS_URL" --path /v2/bench/tags/tags/list --page "$PAGE" --expect "$TAGS") ||
      fail "$system: tag listing failed"
    record "$storage" "$system" "list $TAGS tags, n=$PAGE (ms)" "$(echo "scale=2; $(json_field "$out" seconds) * 1000" | bc)"
    record "$storage" "$system" "list $TAGS tags, n=$PAGE (pages)" "$(json_field "$out" pages)"
    out=$(drive list --url "$SYS_URL" --path /v2/_catalog --page "$PAGE" --expect "$REPOS") ||
      fail "$system: catalog failed"
    record "$storage" "$system" "_catalog of $REPOS repositories, n=$PAGE (ms)" "$(echo "scale=2; $(json_field "$out" seconds) * 1000" | bc)"
    record "$storage" "$system" "_catalog of $REPOS repositories, n=$PAGE (pages)" "$(json_field "$out" pages)"
  done
  record "$storage" "$system" "peak RSS, tags and catalog (MiB)" "$(rss_mib "$SYS_PID" VmHWM)"
}

bench_small_images() { # STORAGE SYSTEM
  local storage=$1 system=$2 r out
  peak_reset "$SYS_PID"
  for r in $(seq 1 "$RUNS"); do
    out=$(drive small-images --url "$SYS_URL" --repo bench/small --images "$SMALL_IMAGES" --concurrency 16) ||
      fail "$system: small images failed"
    record "$storage" "$system" "push $SMALL_IMAGES small images, 16 clients (images/s)" "$(json_field "$out" images_per_s)"
  done
  record "$storage" "$system" "peak RSS, small images (MiB)" "$(rss_mib "$SYS_PID" VmHWM)"
}

# APPR: what `appr push` and `appr pull` send, packages of incompressible bytes.
make_package() { # MIB: pkgN.tar.gz and pushN.json (the CLI's body)
  [ -f "$WORK/push$1.json" ] && return 0
  mkdir -p "$WORK/src$1/bench"
  printf 'apiVersion: v1\nname: bench\nversion: 1.0.0\n' >"$WORK/src$1/bench/Chart.yaml"
  noise "$WORK/src$1/bench/data.bin" "$1" "appr-$1"
  tar czf "$WORK/pkg$1.tar.gz" -C "$WORK/src$1" bench
  rm -rf "$WORK/src$1"
  {
    printf '{"name": "bench", "package": "bench/p%s", "release": "1.0.0", "media_type": "helm", "blob": "' "$1"
    base64 -w0 "$WORK/pkg$1.tar.gz"
    printf '", "metadata": null}'
  } >"$WORK/push$1.json"
}
bench_appr() { # STORAGE SYSTEM
  local storage=$1 system=$2 mib r
  peak_reset "$SYS_PID"
  for mib in $APPR_MIB; do
    make_package "$mib"
    for r in $(seq 1 "$RUNS"); do
      curl_rate "$storage" "$system" "APPR push ${mib} MiB package (MiB/s)" "$mib" -X POST \
        -H 'Expect:' -H 'Content-Type: application/json' --data-binary "@$WORK/push$mib.json" \
        "$SYS_URL/cnr/api/v1/packages/bench/p$mib?force=true"
      curl_rate "$storage" "$system" "APPR pull ${mib} MiB package (MiB/s)" "$mib" \
        "$SYS_URL/cnr/api/v1/packages/bench/p$mib/1.0.0/helm/pull?format=json"
    done
    client curl -sf -o "$WORK/pulled$mib.json" "$SYS_URL/cnr/api/v1/packages/bench/p$mib/1.0.0/helm/pull?format=json"
    python3 -c 'import base64,json,sys; b=base64.b64decode(json.load(open(sys.argv[1]))["blob"]); assert b==open(sys.argv[2],"rb").read()' \
      "$WORK/pulled$mib.json" "$WORK/pkg$mib.tar.gz" || fail "$system: pulled APPR package differs"
    rm -f "$WORK/pulled$mib.json"
  done
  record "$storage" "$system" "peak RSS, APPR push and pull (MiB)" "$(rss_mib "$SYS_PID" VmHWM)"
}

# bench_pulls_interleaved STORAGE: every system at once over one store (one
# Garage), a fresh blob of each size pushed to each, then pulls taken in
# turn, system by system. Rows measured in blocks, one system after the
# other, carry whatever drifts between blocks; these do not.
# start_all STORAGE: every system at once over one fresh store; their URLs
# in ALL_URLS by system. stop_all STORAGE stops them and clears the store.
declare -A ALL_URLS=()
ALL_PIDS=()
start_all() {
  local system
  fresh_store "$1"
  ALL_URLS=() ALL_PIDS=()
  for system in $SYSTEMS; do
    start_system "$system" "$1"
    ALL_URLS[$system]=$SYS_URL
    ALL_PIDS+=("$SYS_PID")
  done
}
stop_all() {
  local system
  for SYS_PID in "${ALL_PIDS[@]}"; do stop_system; done
  for system in $SYSTEMS; do rm -rf "$WORK/$system-$1/data"; done
  if [ "$1" = s3 ]; then stop_garage; fi
}

bench_pulls_interleaved() {
  local storage=$1 mib r system blob
  local -A digests=()
  log "pulls, systems interleaved, on $storage"
  start_all "$storage"
  for mib in $SIZES_MIB; do
    drop_caches
    for system in $SYSTEMS; do
      blob=$WORK/pull-$mib-$system
      make_blob "$blob" "$mib" "pull-$mib-$system"
      digests[$system]=sha256:$(cat "$blob.sha256")
      drive push --url "${ALL_URLS[$system]}" --repo "pulls/$system" --file "$blob" --digest "${digests[$system]}" >/dev/null ||
        fail "$system: push for the pulls failed"
      rm -f "$blob" "$blob.sha256"
    done
    for r in $(seq 1 "$RUNS"); do
      for _ in $(seq 1 "$PULLS"); do
        for system in $SYSTEMS; do
          curl_rate "$storage" "$system" "pull ${mib} MiB, systems in turn (MiB/s)" "$mib" \
            "${ALL_URLS[$system]}/v2/pulls/$system/blobs/${digests[$system]}"
        done
      done
    done
  done
  stop_all "$storage"
}

# bench_pushes_interleaved STORAGE: every system at once over one store, each
# run's pushes taken in turn, system by system (the first system changes from
# run to run), so that drift in the disk or the page cache between blocks of
# bench_blobs does not land in a ratio: a 1 GiB push on a VM moves by 1.8x
# with the pages its writes land on.
bench_pushes_interleaved() {
  local storage=$1 mib r i system
  local -a systems=($SYSTEMS)
  log "pushes, systems interleaved, on $storage"
  start_all "$storage"
  for mib in $SIZES_MIB; do
    for r in $(seq 1 "$RUNS"); do
      for i in "${!systems[@]}"; do
        system=${systems[$(((i + r) % ${#systems[@]}))]}
        SYS_URL=${ALL_URLS[$system]}
        blob_inputs "$mib" "$r"
        push_file "$storage" "$system" "push ${mib} MiB monolithic, systems in turn (MiB/s)" "$BLOB_A" turn/mono
        push_file "$storage" "$system" "push ${mib} MiB chunked ${CHUNK_MIB} MiB, systems in turn (MiB/s)" "$BLOB_B" turn/chunked --chunk-mib "$CHUNK_MIB"
        drop_blob_inputs
      done
    done
  done
  stop_all "$storage"
}

# ---------------------------------------------------------------------------
# The machine's limits, on the same bytes and disk
# ---------------------------------------------------------------------------
# limit_rate ROW MIB cmd...: one timed run of cmd on the server's core, as
# MiB/s of the machine.
limit_rate() {
  local row=$1 mib=$2 t0 t1
  shift 2
  t0=$(now_ns)
  taskset -c "$SERVER_CPU" "$@" || fail "$row: $* failed"
  t1=$(now_ns)
  record machine limit "$row" "$(echo "scale=2; $mib * 1000000000 / ($t1 - $t0)" | bc)"
}

machine_limits() {
  local out f=$WORK/limit-blob mib=1024 r
  out=$(taskset -c "$SERVER_CPU" "$DRIVER" sha256 --mib 2048)
  record machine limit "SHA-256, one core (MiB/s)" "$(json_field "$out" mib_per_s)"
  for r in $(seq 1 "$RUNS"); do
    drop_caches
    noise "$f" "$mib" limit
    limit_rate "disk write + fdatasync (MiB/s)" "$mib" dd if="$f" of="$WORK/limit-copy" bs=1M conv=fdatasync status=none
    limit_rate "read, page cache (MiB/s)" "$mib" dd if="$WORK/limit-copy" of=/dev/null bs=1M status=none
    loopback_limit "$mib" "$WORK/limit-copy"
    # The same write past the page cache: what the disk alone takes in.
    rm -f "$WORK/limit-copy"
    sync
    limit_rate "disk write, O_DIRECT + fdatasync (MiB/s)" "$mib" dd if="$f" of="$WORK/limit-copy" bs=1M oflag=direct conv=fdatasync status=none
    rm -f "$WORK/limit-copy" "$f"
  done
  if wants blobs; then in_place_limits filesystem; fi
}

# in_place_limits STORAGE: each blob push row's write done by a plain tool
# (dd, or curl to Garage), at the same point of the same sequence as
# bench_blobs: after blob_inputs, first the monolithic blob's bytes, then the
# chunked one's. On this VM the page cache takes pages the hypervisor backs
# on first touch only after the first 2 GiB or so, so where in that sequence
# a write lands changes its speed several times over: a limit measured
# elsewhere does not hold for the row.
in_place_limits() {
  local storage=$1 mib r
  for mib in $SIZES_MIB; do
    for r in $(seq 1 "$RUNS"); do
      blob_inputs "$mib" "$r"
      place_write "$storage" "$mib" monolithic "$BLOB_A"
      place_write "$storage" "$mib" chunked "$BLOB_B"
      drop_blob_inputs
      rm -f "$WORK"/place-copy-*
    done
  done
}
place_write() { # STORAGE MIB MODE FILE: one timed plain write of FILE
  if [ "$1" = s3 ]; then
    limit_rate "S3 PUT object, $2 MiB in the $3 push's place (MiB/s)" "$2" \
      curl -sf -o /dev/null "${S3_SIGNED[@]}" -T "$4" "$AWS_ENDPOINT_URL/bench/place-${4##*/}"
  else
    limit_rate "disk write + fdatasync, $2 MiB in the $3 push's place (MiB/s)" "$2" \
      dd if="$4" of="$WORK/place-copy-$3" bs=1M conv=fdatasync status=none
    # apprd writes whole blocks past the page cache: the same write that way.
    rm -f "$WORK/place-copy-$3"
    sync
    limit_rate "disk write, O_DIRECT + fdatasync, $2 MiB in the $3 push's place (MiB/s)" "$2" \
      dd if="$4" of="$WORK/place-copy-$3" bs=1M oflag=direct conv=fdatasync status=none
  fi
}

# A pull also crosses loopback TCP: the same file served by sendfile(2) from
# the server's core to curl on the client's, timed as the pull rows are.
loopback_limit() { # MIB FILE
  local port pid secs
  port=$(free_port)
  taskset -c "$SERVER_CPU" python3 "$ROOT_DIR/bench/sendfile-server.py" "$port" "$2" &
  pid=$!
  wait_http "http://127.0.0.1:$port/" 10
  secs=$(client curl -sf -o /dev/null -w '%{time_total}' "http://127.0.0.1:$port/file") || fail "loopback limit failed"
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  record machine limit "loopback HTTP GET by sendfile (MiB/s)" "$(echo "scale=2; $1 / $secs" | bc)"
}

# The S3 store's own limit: one object PUT and GET with curl from the
# server's core, Garage on the client's, as the registries use them.
s3_limits() {
  local f=$WORK/limit-blob mib=1024 r
  for r in $(seq 1 "$RUNS"); do
    drop_caches
    noise "$f" "$mib" "s3-limit-$r"
    limit_rate "S3 PUT object, Garage (MiB/s)" "$mib" curl -sf -o /dev/null "${S3_SIGNED[@]}" -T "$f" "$AWS_ENDPOINT_URL/bench/limit-$r"
    limit_rate "S3 GET object, Garage (MiB/s)" "$mib" curl -sf -o /dev/null "${S3_SIGNED[@]}" "$AWS_ENDPOINT_URL/bench/limit-$r"
    rm -f "$f"
  done
  if wants blobs; then in_place_limits s3; fi
}

# ---------------------------------------------------------------------------
log "work dir $WORK; runs $RUNS; storages $STORAGES; systems $SYSTEMS"
if wants limits; then machine_limits; fi
for storage in $STORAGES; do
  if [ "$storage" = s3 ] && wants limits; then
    start_garage
    s3_limits
  fi
  systems=$SYSTEMS
  if [ "$storage" = filesystem ] && wants appr; then systems="$systems appr-reference"; fi
  for system in $systems; do
    log "$system on $storage"
    fresh_store "$storage"
    # startup: the median of $RUNS starts over an empty store
    for r in $(seq 1 "$RUNS"); do
      start_system "$system" "$storage"
      record "$storage" "$system" "startup ms" "$SYS_STARTUP_MS"
      [ "$r" = "$RUNS" ] || stop_system
    done
    sleep 1
    record "$storage" "$system" "idle RSS (MiB)" "$(rss_mib "$SYS_PID" VmRSS)"
    if [ "$system" = appr-reference ]; then
      if wants appr; then bench_appr "$storage" "$system"; fi
    else
      if wants blobs; then bench_blobs "$storage" "$system" && settle; fi
      if wants manifests; then bench_manifests "$storage" "$system" && settle; fi
      if wants small; then bench_small_images "$storage" "$system" && settle; fi
      if wants lists; then bench_lists "$storage" "$system"; fi
      if wants appr && [ "$system" = apprd ] && [ "$storage" = filesystem ]; then bench_appr "$storage" "$system"; fi
    fi
    stop_system
    rm -rf "$WORK/$system-$storage/data"
  done
  stop_garage
  if wants pulls; then bench_pulls_interleaved "$storage"; fi
  if wants pushes; then bench_pushes_interleaved "$storage"; fi
done

mkdir -p "$RESULTS"
earlier=()
for e in $EARLIER; do earlier+=(--earlier "$(cd "$ROOT_DIR" && realpath "$e")"); done
python3 "$ROOT_DIR/bench/report.py" "$RAW" --out "$RESULTS" "${earlier[@]}" --earlier-apprd "$EARLIER_APPRD" \
  --apprd "$(git -C "$ROOT_DIR" rev-parse --short HEAD)" --runs "$RUNS" --pulls "$PULLS" --load-seconds "$LOAD_SECONDS" \
  --cpus "server $SERVER_CPU, client $CLIENT_CPU" \
  --distribution "$("$DISTRIBUTION" --version | awk '{print $3}')" \
  --docker-registry "$(dpkg-query -W -f '${Version}' docker-registry 2>/dev/null || echo '?')" \
  --garage "$("$GARAGE" --version 2>/dev/null | head -1 || echo '?')"
cp "$RAW" "$RESULTS/$RAW_NAME"
log "results in $RESULTS"
