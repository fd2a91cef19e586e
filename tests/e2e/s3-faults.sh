#!/usr/bin/env bash
# backends: s3
# Fault test: the S3 store goes away in the middle of uploads (a TCP proxy in
# front of moto is killed: connections reset, new ones refused; moto keeps
# the data), then throttles (503 SlowDown). apprd must answer with errors in
# the OCI format within seconds, never hang; once the store is back the
# registry is consistent (no half-written blob visible, committed data
# intact, an interrupted chunked upload continues) and new pushes work.
# First, apprd over a missing bucket must exit with a message naming it.
source "$(dirname "$0")/../../scripts/lib.sh"
here=$(cd "$(dirname "$0")" && pwd)
start_moto # always our own: this test cuts it off

log "a missing bucket: apprd starts listening, then exits naming it"
rc=0
timeout 60 "$APPRD_BIN" serve --listen "127.0.0.1:$(free_port)" --storage s3 \
  --s3-bucket apprd-no-such-bucket --s3-path-style true >"$WORK/no-bucket.log" 2>&1 || rc=$?
[ "$rc" != 0 ] && [ "$rc" != 124 ] || fail "apprd over a missing bucket exited $rc: $(cat "$WORK/no-bucket.log")"
grep -q 'apprd listening' "$WORK/no-bucket.log" || fail "no listen line: $(cat "$WORK/no-bucket.log")"
grep -q 'S3 bucket "apprd-no-such-bucket" does not exist' "$WORK/no-bucket.log" ||
  fail "the missing bucket is not named: $(cat "$WORK/no-bucket.log")"
moto_port=${MOTO_URL##*:}
proxy_port=$(free_port)
start_proxy() { # [slowdown]
  python3 "$here/tcp_proxy.py" "$proxy_port" "$moto_port" "$@" >>"$WORK/proxy.log" 2>&1 &
  PROXY_PID=$!
  _pids+=("$PROXY_PID")
  for _ in $(seq 1 50); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $proxy_port), 1)" 2>/dev/null && return 0
    sleep 0.1
  done
  fail "proxy did not start"
}
stop_proxy() { kill "$PROXY_PID"; wait "$PROXY_PID" 2>/dev/null || true; }
start_proxy
bucket=apprd-faults-$(date +%s%N | tail -c 9)
new_bucket "$bucket"
export AWS_ENDPOINT_URL=http://127.0.0.1:$proxy_port
start_apprd A --s3-part-size 5242880
cd "$WORK"
repo=faults/app
sha() { sha256sum "$1" | cut -d' ' -f1; }

# Answers with an OCI UNAVAILABLE error, and quickly.
expect_unavailable() { # what curl-args...
  local what=$1; shift
  local out t0 t
  t0=$(date +%s)
  out=$(curl -s -m 120 -o body -w '%{http_code}' "$@")
  t=$(( $(date +%s) - t0 ))
  [ "$out" = 503 ] || fail "$what during the outage answered $out: $(head -c 300 body)"
  [ "$1" = -I ] || grep -q '"code":"UNAVAILABLE"' body || fail "$what: no OCI UNAVAILABLE error: $(head -c 300 body)"
  [ "$t" -le 15 ] || fail "$what took ${t}s to fail"
}

log "baseline image"
head -c 2000000 /dev/urandom > layer
echo '{"architecture":"amd64","os":"linux"}' > config
for f in layer config; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -X POST --data-binary @"$f" \
    "$A_URL/v2/$repo/blobs/uploads/?digest=sha256:$(sha "$f")")
  [ "$code" = 201 ] || fail "baseline push of $f: $code"
done
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' \
  "$(sha config)" "$(stat -c %s config)" "$(sha layer)" "$(stat -c %s layer)" > manifest
code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
  --data-binary @manifest "$A_URL/v2/$repo/manifests/v1")
[ "$code" = 201 ] || fail "baseline manifest: $code"

log "8 uploads in flight, then the store goes away"
n=8
for i in $(seq 1 $n); do
  head -c $((12 * 1024 * 1024)) /dev/urandom > "blob.$i"
done
half=$((6 * 1024 * 1024))
upload() { # i: odd = monolithic POST ?digest=, even = POST, PATCH 6 MiB at once, PATCH the rest slowly
  local i=$1 d; d=sha256:$(sha "blob.$i")
  if [ $((i % 2)) = 1 ]; then
    curl -s -m 120 -o /dev/null -w '%{http_code} %{time_total}' --limit-rate 500k -X POST \
      -H "Content-Type: application/octet-stream" --data-binary @"blob.$i" "$A_URL/v2/$repo/blobs/uploads/?digest=$d" > "code.$i" || true
  else
    head -c "$half" "blob.$i" > "first.$i"
    tail -c +$((half + 1)) "blob.$i" > "rest.$i"
    curl -s -o /dev/null -w '%header{location}' -X POST "$A_URL/v2/$repo/blobs/uploads/" > "loc.$i"
    curl -s -o /dev/null -w '%{http_code}' -X PATCH -H "Content-Type: application/octet-stream" \
      --data-binary @"first.$i" "$A_URL$(cat "loc.$i")" > "first_code.$i.tmp" || true
    mv "first_code.$i.tmp" "first_code.$i"
    curl -s -m 120 -o /dev/null -w '%{http_code} %{time_total}' --limit-rate 300k -X PATCH \
      -H "Content-Type: application/octet-stream" --data-binary @"rest.$i" "$A_URL$(cat "loc.$i")" > "code.$i" || true
  fi
}
pids=()
for i in $(seq 1 $n); do upload "$i" & pids+=($!); done
# Cut the store once every chunked upload has its first 6 MiB in.
for _ in $(seq 1 300); do
  [ "$(find . -name 'first_code.*' ! -name '*.tmp' | wc -l)" = $((n / 2)) ] && break
  sleep 0.2
done
sleep 1
stop_proxy
expect_unavailable "manifest GET" "$A_URL/v2/$repo/manifests/v1"
expect_unavailable "blob HEAD" -I "$A_URL/v2/$repo/blobs/sha256:$(sha layer)"
expect_unavailable "upload start" -X POST "$A_URL/v2/$repo/blobs/uploads/"
wait "${pids[@]}"
for i in $(seq 1 $n); do
  read -r code secs < "code.$i" || true
  log "upload $i: $code after ${secs}s"
  case "$code" in 201 | 202 | 503) ;; *) fail "upload $i ended with $code" ;; esac
  [ "${secs%.*}" -lt 60 ] || fail "upload $i hung for ${secs}s"
done
grep -q ' 503 ' <(cat code.* | sed 's/^/ /') || fail "no upload was cut by the outage (too late?)"

log "the store throttles (503 SlowDown): bounded retries, then UNAVAILABLE"
start_proxy slowdown
expect_unavailable "manifest GET (throttled)" "$A_URL/v2/$repo/manifests/v1"
stop_proxy

log "the store is back"
start_proxy
for _ in $(seq 1 100); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "$A_URL/readyz")" = 200 ] && break
  sleep 0.2
done
[ "$(curl -s -o /dev/null -w '%{http_code}' "$A_URL/readyz")" = 200 ] || fail "not ready after the store came back"
curl -sf "$A_URL/v2/$repo/manifests/v1" -o manifest.back || fail "baseline manifest lost"
cmp -s manifest manifest.back || fail "baseline manifest changed"
curl -sf "$A_URL/v2/$repo/blobs/sha256:$(sha layer)" -o layer.back || fail "baseline layer lost"
cmp -s layer layer.back || fail "baseline layer changed"
for i in $(seq 1 $n); do
  read -r code _ < "code.$i" || true
  got=$(curl -s -o "back.$i" -w '%{http_code}' "$A_URL/v2/$repo/blobs/sha256:$(sha "blob.$i")")
  if [ "$code" = 201 ]; then
    [ "$got" = 200 ] && cmp -s "blob.$i" "back.$i" || fail "committed blob $i answers $got or differs"
  else
    [ "$got" = 404 ] || fail "blob $i of a failed upload answers $got (half-written?)"
  fi
done
# Straight from the bucket (signed requests; moto keeps objects private):
# every blob object hashes to its name.
s3curl() { curl -sf --aws-sigv4 aws:amz:us-east-1:s3 --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" "$@"; }
keys=$(s3curl "$MOTO_URL/$bucket?list-type=2&prefix=blobs/" | grep -o '<Key>[^<]*</Key>' | sed 's/<[^>]*>//g')
[ -n "$keys" ] || fail "cannot list the bucket"
for key in $keys; do
  [ "$(s3curl "$MOTO_URL/$bucket/$key" | sha256sum | cut -d' ' -f1)" = "${key##*/}" ] || fail "torn object $key"
done

log "interrupted chunked uploads continue where the store left them"
for i in $(seq 2 2 $n); do
  [ "$(cat "first_code.$i")" = 202 ] || fail "first PATCH of upload $i answered $(cat "first_code.$i")"
  loc=$(cat "loc.$i")
  range=$(curl -s -o /dev/null -w '%header{range}' "$A_URL$loc")
  read -r code _ < "code.$i" || true
  if [ "$code" = 202 ]; then # the slow PATCH finished before the outage
    [ "$range" = "0-$(($(stat -c %s "blob.$i") - 1))" ] || fail "upload $i stands at $range"
  else
    [ "$range" = "0-$((half - 1))" ] || fail "upload $i stands at $range after the outage, not 0-$((half - 1))"
    code=$(curl -s -o /dev/null -w '%{http_code}' -X PATCH -H 'Content-Type: application/octet-stream' \
      --data-binary @"rest.$i" "$A_URL$loc")
    [ "$code" = 202 ] || fail "continuing upload $i answered $code"
  fi
  case $loc in *\?*) sep='&' ;; *) sep='?' ;; esac
  code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT "$A_URL$loc${sep}digest=sha256:$(sha "blob.$i")")
  [ "$code" = 201 ] || fail "closing upload $i answered $code"
done

log "new pushes work"
for i in $(seq 1 $n); do
  code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/octet-stream' \
    --data-binary @"blob.$i" "$A_URL/v2/$repo/blobs/uploads/?digest=sha256:$(sha "blob.$i")")
  [ "$code" = 201 ] || fail "re-push of blob $i answered $code"
  curl -sf "$A_URL/v2/$repo/blobs/sha256:$(sha "blob.$i")" -o "back.$i" && cmp -s "blob.$i" "back.$i" ||
    fail "re-pushed blob $i does not read back"
done
log "s3 fault test ok"
