#!/usr/bin/env bash
# Crash test: SIGKILL apprd in the middle of 20 concurrent uploads, restart it
# over the same store, and check that every blob committed before the kill
# reads back with its digest, that nothing partial is visible, and that new
# pushes work.
source "$(dirname "$0")/../../scripts/lib.sh"
setup_storage
export APPRD_TEST_ROOT=$WORK/crash-root
root=$APPRD_TEST_ROOT
start_apprd A
cd "$WORK"
mkdir -p blobs codes

# 10 small blobs that finish at once, 10 large ones throttled so the kill lands mid-stream;
# half of each group monolithic (POST ?digest=), half POST + PATCH + PUT.
for i in $(seq 1 20); do
  if [ "$i" -le 10 ]; then size=50000; else size=4000000; fi
  head -c "$size" /dev/urandom > "blobs/$i"
  sha256sum "blobs/$i" | cut -d' ' -f1 > "blobs/$i.sha"
done

upload() { # i
  local i=$1 d; d=sha256:$(cat "blobs/$i.sha")
  local rate=(); [ "$i" -gt 10 ] && rate=(--limit-rate 400k)
  if [ $((i % 2)) = 0 ]; then
    curl -s -o /dev/null -w '%{http_code}' "${rate[@]}" -X POST -H 'Content-Type: application/octet-stream' \
      -T "blobs/$i" "$A_URL/v2/crash/repo/blobs/uploads?digest=$d" > "codes/$i" || true
  else
    local loc
    loc=$(curl -s -o /dev/null -w '%header{location}' -X POST "$A_URL/v2/crash/repo/blobs/uploads/")
    curl -s -o /dev/null "${rate[@]}" -X PATCH -H 'Content-Type: application/octet-stream' -T "blobs/$i" "$A_URL$loc" || true
    curl -s -o /dev/null -w '%{http_code}' -X PUT "$A_URL$loc?digest=$d" > "codes/$i" || true
  fi
}
uploads=()
for i in $(seq 1 20); do upload "$i" & uploads+=($!); done
sleep 3
kill -9 "$A_PID"
# Only the uploads: a bare `wait` would also wait for the S3 server (moto).
wait "${uploads[@]}" 2>/dev/null || true
committed=$(grep -l '^201$' codes/* 2>/dev/null | wc -l)
log "killed with $committed of 20 uploads committed"
[ "$committed" -ge 10 ] || fail "expected the 10 small uploads to be committed before the kill"
[ "$committed" -lt 20 ] || fail "the kill came too late: every upload had finished"

start_apprd B
for i in $(seq 1 20); do
  d=sha256:$(cat "blobs/$i.sha")
  code=$(curl -s -o "got.$i" -w '%{http_code}' "$B_URL/v2/crash/repo/blobs/$d")
  if [ "$(cat "codes/$i" 2>/dev/null)" = 201 ]; then
    [ "$code" = 200 ] || fail "committed blob $i answers $code after restart"
  fi
  case "$code" in
    200) [ "$(sha256sum < "got.$i" | cut -d' ' -f1)" = "$(cat "blobs/$i.sha")" ] || fail "blob $i reads back corrupt" ;;
    404) ;;
    *) fail "blob $i answers $code after restart" ;;
  esac
done
# no partial object is visible as a blob: every stored blob hashes to its name
if [ "$APPRD_TEST_STORAGE" = filesystem ]; then
  find "$root/blobs" -type f | while read -r f; do
    [ "$(sha256sum < "$f" | cut -d' ' -f1)" = "$(basename "$f")" ] || fail "torn blob $f"
  done
  [ -z "$(ls -A "$root/_tmp")" ] || fail "temporary files survive the restart"
fi
# the store still takes pushes, including a retry of an interrupted one
A_URL=$B_URL upload 20
[ "$(cat codes/20)" = 201 ] || fail "retry of an interrupted upload answers $(cat codes/20)"
[ "$(curl -s -o /dev/null -w '%{http_code}' "$B_URL/v2/crash/repo/blobs/sha256:$(cat blobs/20.sha)")" = 200 ] || fail "re-pushed blob missing"
log "crash test ok ($APPRD_TEST_STORAGE)"
