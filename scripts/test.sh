#!/usr/bin/env bash
# The whole test suite: installs the tools it needs (cached in ~/.cache/apprd),
# builds apprd, then runs unit and integration tests, both OCI conformance
# suites, the real-client round trips and the APPR tests, on the filesystem
# backend and on S3 (moto, started here; s3s-fs for signature checks).
#
#   scripts/test.sh                 everything
#   scripts/test.sh e2e/oras        only tests/e2e/oras.sh (both backends)
#   APPRD_TEST_STORAGE=s3 ...       one backend only
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
only=${1:-}
start=$(date +%s)

scripts/tools.sh
# shellcheck disable=SC1091
source "${APPRD_CACHE:-$HOME/.cache/apprd}/env.sh"

echo "== build"
cargo build --release --locked --workspace
export APPRD_BIN=$ROOT/target/release/apprd

if [ -z "$only" ]; then
  echo "== format and lints"
  cargo fmt --all -- --check
  cargo clippy --release --locked --workspace --all-targets -- -D warnings
  echo "== unit and integration tests (S3 ones on a moto and an s3s-fs started here)"
  (
    # shellcheck disable=SC1091
    source scripts/lib.sh
    start_moto
    start_s3s_fs
    APPRD_TEST_S3_ENDPOINT=$MOTO_URL APPRD_TEST_S3_SIGNED_ENDPOINT=$S3S_FS_URL \
      APPRD_TEST_S3_SIGNED_KEY=$S3S_FS_KEY APPRD_TEST_S3_SIGNED_SECRET=$S3S_FS_SECRET \
      APPRD_REQUIRE_S3=1 cargo test --release --locked
  )
fi

backends=${APPRD_TEST_STORAGE:-filesystem s3}
results=()
for storage in $backends; do
  for t in tests/e2e/*.sh; do
    name=e2e/$(basename "$t" .sh)
    [ -n "$only" ] && [ "$only" != "$name" ] && continue
    # A script may declare `# backends: filesystem` to run on one backend only.
    if grep -q '^# backends:' "$t" && ! grep '^# backends:' "$t" | grep -qw "$storage"; then
      continue
    fi
    echo "== $name ($storage)"
    t0=$(date +%s)
    APPRD_TEST_STORAGE=$storage bash "$t"
    results+=("$name ($storage): ok in $(( $(date +%s) - t0 ))s")
  done
done

echo "== summary"
printf '  %s\n' "${results[@]}"
echo "all tests passed in $(( $(date +%s) - start ))s"
