#!/usr/bin/env bash
# crane round trip: push a layout, copy between repositories, ls, digest, delete.
source "$(dirname "$0")/../../scripts/lib.sh"
setup_storage
start_apprd A
layout=$WORK/layout
read -r single multi < <(python3 "$(dirname "$0")/make_oci_layout.py" "$layout")
H=$A_HOSTPORT

crane push --insecure --index "$layout" "$H/e2e/crane-src:multi" >/dev/null 2>&1 \
  || crane push --insecure "$layout" "$H/e2e/crane-src:multi"
d=$(crane digest --insecure "$H/e2e/crane-src:multi")
crane copy --insecure "$H/e2e/crane-src:multi" "$H/e2e/crane-dst:v1"
[ "$(crane digest --insecure "$H/e2e/crane-dst:v1")" = "$d" ] || fail "copy changed the digest"
crane tag --insecure "$H/e2e/crane-dst:v1" v2
[ "$(crane ls --insecure "$H/e2e/crane-dst" | sort | tr '\n' ' ')" = "v1 v2 " ] || fail "crane ls: $(crane ls --insecure "$H/e2e/crane-dst")"
crane manifest --insecure "$H/e2e/crane-dst@$d" | sha256sum | grep -q "${d#sha256:}" || fail "manifest bytes differ"
# every image of the (nested) index and its blobs came along
check_tree() { # digest
  local m; m=$(crane manifest --insecure "$H/e2e/crane-dst@$1") || fail "manifest $1 missing"
  printf '%s' "$m" | sha256sum | grep -q "${1#sha256:}" || fail "manifest $1 bytes differ"
  for child in $(printf '%s' "$m" | python3 -c 'import json,sys; print(" ".join(x["digest"] for x in json.load(sys.stdin).get("manifests", [])))'); do
    check_tree "$child"
  done
  for b in $(printf '%s' "$m" | python3 -c 'import json,sys; m=json.load(sys.stdin); print(" ".join(x["digest"] for x in ([m["config"]] if "config" in m else []) + m.get("layers", [])))'); do
    crane blob --insecure "$H/e2e/crane-dst@$b" | sha256sum | grep -q "${b#sha256:}" || fail "blob $b differs"
  done
}
check_tree "$d"
catalog=$(crane catalog --insecure "$H")
grep -qx "e2e/crane-dst" <<<"$catalog" || fail "catalog misses e2e/crane-dst: $catalog"
crane delete --insecure "$H/e2e/crane-dst@$d"
if crane manifest --insecure "$H/e2e/crane-dst:v1" >/dev/null 2>&1; then fail "manifest still there after delete"; fi
[ -z "$(crane ls --insecure "$H/e2e/crane-dst")" ] || fail "tags survive the manifest delete"
[ "$(crane digest --insecure "$H/e2e/crane-src:multi")" = "$d" ] || fail "delete touched another repository"
log "crane round trip ok ($APPRD_TEST_STORAGE)"
