#!/usr/bin/env bash
# Run both official OCI conformance suites against a fresh apprd over an empty
# store (filesystem, or S3 when APPRD_TEST_STORAGE=s3):
#   - the v1.1.1 Ginkgo suite, all four workflows + automatic cross-mount;
#   - the redesigned suite (distribution-spec main) with OCI_VERSION=1.1 and =dev.
# Reports (junit.xml, report.html, results.yaml) are kept in
# $CONFORMANCE_RESULTS (default target/conformance/<storage>/). Fails on any failure.
source "$(dirname "$0")/../scripts/lib.sh"

out=${CONFORMANCE_RESULTS:-$ROOT_DIR/target/conformance/$APPRD_TEST_STORAGE}
rm -rf "$out"; mkdir -p "$out"
setup_storage

legacy=${OCI_CONFORMANCE_V111:-$APPRD_CACHE/bin/oci-conformance-v1.1.1.test}
redesign=${OCI_CONFORMANCE_REDESIGN:-$APPRD_CACHE/bin/oci-conformance-redesign}
[ -x "$legacy" ] || fail "missing $legacy (run scripts/tools.sh)"
[ -x "$redesign" ] || fail "missing $redesign (run scripts/tools.sh)"

status=0

run_v111() {
  start_apprd V111
  local dir="$out/v1.1.1"; mkdir -p "$dir"
  log "conformance v1.1.1 against $V111_URL ($APPRD_TEST_STORAGE)"
  ( cd "$dir" && env OCI_ROOT_URL="$V111_URL" OCI_NAMESPACE=myorg/myrepo OCI_CROSSMOUNT_NAMESPACE=myorg/other \
      OCI_TEST_PULL=1 OCI_TEST_PUSH=1 OCI_TEST_CONTENT_DISCOVERY=1 OCI_TEST_CONTENT_MANAGEMENT=1 \
      OCI_AUTOMATIC_CROSSMOUNT=1 OCI_REPORT_DIR="$dir" OCI_HIDE_SKIPPED_WORKFLOWS=0 \
      "$legacy" >"$dir/output.txt" 2>&1 ) || { status=1; log "v1.1.1 FAILED"; }
  python3 "$ROOT_DIR/conformance/junit_summary.py" "$dir/junit.xml" v1.1.1 || status=1
  kill "$V111_PID" 2>/dev/null || true
}

run_redesign() { # OCI_VERSION
  local version=$1 name="redesign-$1"
  start_apprd RD
  local dir="$out/$name"; mkdir -p "$dir"
  log "conformance redesign OCI_VERSION=$version against $RD_URL ($APPRD_TEST_STORAGE)"
  ( cd "$dir" && env OCI_VERSION="$version" OCI_REGISTRY="$RD_HOSTPORT" OCI_TLS=disabled \
      OCI_REPO1=myorg/myrepo OCI_REPO2=myorg/other OCI_RESULTS_DIR="$dir" \
      "$redesign" >"$dir/output.txt" 2>&1 ) || { status=1; log "redesign $version FAILED"; }
  python3 "$ROOT_DIR/conformance/junit_summary.py" "$dir/junit.xml" "$name" || status=1
  grep -E "^ +(Pass|Skip|Disabled|FAIL|Error)\.+:" "$dir/output.txt" | tr -s " ." " " || true
  kill "$RD_PID" 2>/dev/null || true
}

run_v111
run_redesign 1.1
run_redesign dev
[ "$status" = 0 ] || { tail -n 40 "$out"/*/output.txt >&2; fail "conformance failures (reports in $out)"; }
log "conformance passed ($APPRD_TEST_STORAGE); reports in $out"
