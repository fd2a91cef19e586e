# Shared shell helpers for the end-to-end tests and benchmarks. Source it.
#   start_apprd NAME [extra serve flags...]   -> sets NAME_URL (http://127.0.0.1:PORT), NAME_PID, NAME_HOSTPORT
#   start_moto                                 -> sets S3 env (AWS_*), MOTO_PID, MOTO_URL
#   start_s3s_fs                               -> S3S_FS_URL/_KEY/_SECRET (checks signatures)
#   new_bucket NAME                            -> creates a bucket on the S3 server
# Storage for start_apprd follows APPRD_TEST_STORAGE (filesystem|s3); APPRD_TEST_ROOT
# pins the filesystem root (to restart over the same store).
set -euo pipefail
# With pipefail, `cmd | grep -q` fails at random: grep exits at its first
# match and cmd, still writing, dies of SIGPIPE. Capture cmd's output first
# and grep that (`out=$(cmd); grep -q x <<<"$out"`), as scripts/tools.sh's
# has_output does for the tool checks.

ROOT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export APPRD_CACHE=${APPRD_CACHE:-$HOME/.cache/apprd}
export APPRD_BIN=${APPRD_BIN:-$ROOT_DIR/target/release/apprd}
export APPRD_TEST_STORAGE=${APPRD_TEST_STORAGE:-filesystem}
WORK=${WORK:-$(mktemp -d /tmp/apprd-test.XXXXXX)}
export WORK
_pids=()

if [ -f "$APPRD_CACHE/env.sh" ]; then
  # shellcheck disable=SC1091
  source "$APPRD_CACHE/env.sh"
fi

cleanup() {
  for p in "${_pids[@]:-}"; do
    [ -n "$p" ] && kill "$p" 2>/dev/null || true
  done
  wait 2>/dev/null || true
}
trap cleanup EXIT

log() { printf '== %s\n' "$*" >&2; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_http() { # url [seconds]
  local url=$1 n=${2:-30}
  for _ in $(seq 1 $((n * 10))); do
    if curl -s -o /dev/null "$url"; then return 0; fi
    sleep 0.1
  done
  fail "nothing answers at $url"
}

start_apprd() { # NAME [flags...]
  local name=$1; shift
  local port; port=$(free_port)
  local dir="$WORK/$name"
  mkdir -p "$dir"
  local storage_flags=(--storage filesystem --root "${APPRD_TEST_ROOT:-$dir/data}")
  if [ "$APPRD_TEST_STORAGE" = s3 ]; then
    storage_flags=(--storage s3 --s3-bucket "${APPRD_S3_BUCKET:?set by new_bucket}" --s3-path-style true)
  fi
  "$APPRD_BIN" serve --listen "127.0.0.1:$port" "${storage_flags[@]}" "$@" >"$dir/apprd.log" 2>&1 &
  local pid=$!
  _pids+=("$pid")
  printf -v "${name}_PID" '%s' "$pid"
  printf -v "${name}_URL" '%s' "http://127.0.0.1:$port"
  printf -v "${name}_HOSTPORT" '%s' "127.0.0.1:$port"
  printf -v "${name}_LOG" '%s' "$dir/apprd.log"
  export "${name}_PID" "${name}_URL" "${name}_HOSTPORT" "${name}_LOG"
  wait_http "http://127.0.0.1:$port/v2/" 30
}

start_moto() {
  local port; port=$(free_port)
  moto_server -H 127.0.0.1 -p "$port" >"$WORK/moto.log" 2>&1 &
  MOTO_PID=$!
  _pids+=("$MOTO_PID")
  export MOTO_PID MOTO_URL="http://127.0.0.1:$port"
  export AWS_ENDPOINT_URL="$MOTO_URL" AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
  wait_http "$MOTO_URL" 30
}

# s3s-fs: an S3 server that checks SigV4 signatures (moto checks none).
start_s3s_fs() {
  local port; port=$(free_port)
  mkdir -p "$WORK/s3s-fs"
  export S3S_FS_KEY=apprd-test S3S_FS_SECRET=apprd-test-secret
  s3s-fs --host 127.0.0.1 --port "$port" --access-key "$S3S_FS_KEY" --secret-key "$S3S_FS_SECRET" \
    "$WORK/s3s-fs" >"$WORK/s3s-fs.log" 2>&1 &
  _pids+=("$!")
  export S3S_FS_URL="http://127.0.0.1:$port"
  wait_http "$S3S_FS_URL" 30
}

new_bucket() { # NAME
  curl -sf -X PUT "$AWS_ENDPOINT_URL/$1" >/dev/null || fail "cannot create bucket $1"
  export APPRD_S3_BUCKET=$1
}

# Start the S3 server and a fresh bucket when the tests run on S3.
setup_storage() {
  if [ "$APPRD_TEST_STORAGE" = s3 ]; then
    [ -n "${AWS_ENDPOINT_URL:-}" ] || start_moto
    new_bucket "apprd-$(date +%s%N | tail -c 9)"
  fi
}
