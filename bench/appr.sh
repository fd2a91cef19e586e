#!/usr/bin/env bash
# APPR push and JSON pull (what `appr push` / `appr pull` send) of packages of
# $SIZES_MIB, timed, with the server's peak RSS (bench/rss.sh; process
# tree: gunicorn's worker counts), apprd side by side with the reference appr
# 0.7.4 server (Python 2.7, gunicorn, filesystem) in the same run. Then the
# RSS growth of apprd during a $BIG_MIB push, which must stay flat.
#   bench/appr.sh                   sizes 1 10 100, big push 200 MiB
#   SIZES_MIB="1 10" BIG_MIB=0 bench/appr.sh
source "$(dirname "$0")/../scripts/lib.sh"
SIZES_MIB=${SIZES_MIB:-1 10 100}
BIG_MIB=${BIG_MIB:-200}
REFERENCE=${APPR_REFERENCE_SERVER:-appr-reference-server}
[ -x "$APPRD_BIN" ] || (cd "$ROOT_DIR" && cargo build --release)
setup_storage
start_apprd A
cd "$WORK"

REF_PID=
if command -v "$REFERENCE" >/dev/null; then
  REF_PORT=$(free_port)
  mkdir -p refdata
  "$REFERENCE" "$REF_PORT" "$WORK/refdata" >ref.log 2>&1 &
  REF_PID=$!
  _pids+=("$REF_PID")
  REF_URL=http://127.0.0.1:$REF_PORT
  wait_http "$REF_URL/cnr/version" 60
else
  log "$REFERENCE not found: reference columns left empty"
fi

source "$ROOT_DIR/bench/rss.sh"
measure() { # PID cmd... -> "<seconds> <peak MiB>"
  local pid=$1; shift
  peak_reset "$pid"
  local t0 t1; t0=$(date +%s.%N)
  "$@" || fail "$* failed"
  t1=$(date +%s.%N)
  printf '%.2f %s\n' "$(echo "$t1 - $t0" | bc)" "$(rss_mib "$pid" VmHWM)"
}

make_package() { # MiB: pkgN.tar.gz (incompressible) and pushN.json (the CLI's body)
  mkdir -p "src$1/bench"
  printf 'apiVersion: v1\nname: bench\nversion: 1.0.0\n' >"src$1/bench/Chart.yaml"
  head -c $(($1 * 1048576)) /dev/urandom >"src$1/bench/data.bin"
  tar czf "pkg$1.tar.gz" -C "src$1" bench
  rm -rf "src$1"
  {
    printf '{"name": "bench", "package": "bench/p%s", "release": "1.0.0", "media_type": "helm", "blob": "' "$1"
    base64 -w0 "pkg$1.tar.gz"
    printf '", "metadata": null}'
  } >"push$1.json"
}
push() { # URL MiB
  curl -sf -o /dev/null -X POST -H 'Content-Type: application/json' \
    --data-binary "@push$2.json" "$1/cnr/api/v1/packages/bench/p$2?force=true"
}
pull() { # URL MiB
  curl -sf -o "pulled$2.json" "$1/cnr/api/v1/packages/bench/p$2/1.0.0/helm/pull?format=json"
}
check_pull() { # MiB: the pulled JSON holds the pushed package
  python3 -c 'import base64,json,sys; b=base64.b64decode(json.load(open(sys.argv[1]))["blob"]); assert b==open(sys.argv[2],"rb").read()' \
    "pulled$1.json" "pkg$1.tar.gz" || fail "pulled package differs"
  rm -f "pulled$1.json"
}
ratio() { [ -n "$2" ] && [ "$2" != - ] && printf '%.1fx' "$(echo "$2 / $1" | bc -l)" || printf -- -; }

rows=()
for mib in $SIZES_MIB; do
  make_package "$mib"
  for op in push pull; do
    read -r a_t a_m < <(measure "$A_PID" "$op" "$A_URL" "$mib")
    [ "$op" = pull ] && check_pull "$mib"
    r_t=- r_m=-
    if [ -n "$REF_PID" ]; then
      read -r r_t r_m < <(measure "$REF_PID" "$op" "$REF_URL" "$mib")
      [ "$op" = pull ] && check_pull "$mib"
    fi
    rows+=("$(printf '| %4s MiB | %-4s | %8s s | %8s s | %7s | %8s MiB | %8s MiB | %7s |' \
      "$mib" "$op" "$a_t" "$r_t" "$(ratio "$a_t" "$r_t")" "$a_m" "$r_m" "$(ratio "$a_m" "$r_m")")")
  done
  rm -f "push$mib.json"
done

echo
echo "APPR push/pull, apprd $(git -C "$ROOT_DIR" rev-parse --short HEAD) ($APPRD_TEST_STORAGE) vs reference appr 0.7.4 (filesystem)"
echo "time = client wall time; RSS = peak resident set of the server (process tree) during the call"
echo '|  package | op   |  apprd time | reference |  ref/apprd | apprd peak RSS | ref peak RSS | ref/apprd |'
echo '|---------:|------|-----------:|----------:|--------:|-------------:|-------------:|--------:|'
printf '%s\n' "${rows[@]}"

if [ "$BIG_MIB" -gt 0 ]; then
  make_package "$BIG_MIB"
  base=$(rss_mib "$A_PID" VmRSS)
  read -r t m < <(measure "$A_PID" push "$A_URL" "$BIG_MIB")
  growth=$(echo "$m - $base" | bc -l)
  printf '\napprd %s MiB APPR push: %s s, RSS %.1f MiB before, peak %s MiB, growth %.1f MiB\n' \
    "$BIG_MIB" "$t" "$base" "$m" "$growth"
  [ "$(echo "$growth < 64" | bc)" = 1 ] || fail "RSS grew by ${growth} MiB during a ${BIG_MIB} MiB push"
fi
