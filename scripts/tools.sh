#!/usr/bin/env bash
# Installs the external tools that apprd's test suite and benchmarks need, pinned by
# exact version, into a cache folder OUTSIDE the clone: ${APPRD_CACHE:-$HOME/.cache/apprd}.
#
#   scripts/tools.sh            # test tools (the default; same as `scripts/tools.sh test`)
#   scripts/tools.sh bench      # test tools + benchmark tools (CNCF Distribution, docker-registry, Garage, wrk, hey)
#   scripts/tools.sh verify     # re-run the smoke checks of everything already installed
#   scripts/tools.sh env        # only (re)write $APPRD_CACHE/env.sh and print its path
#
# Then: source "${APPRD_CACHE:-$HOME/.cache/apprd}/env.sh"
#
# Idempotent: a tool whose version-named binary (or stamp file) exists is skipped, so a rerun
# takes about a second. Everything comes from the registries this machine reaches: the Go module
# proxy, PyPI, crates.io and Debian's apt. See scripts/README.md for why each version is pinned.
set -euo pipefail

MODE=${1:-test}
case "$MODE" in
  test | bench | verify | env) ;;
  -h | --help | help)
    sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
  *)
    echo "usage: $0 [test|bench|verify|env]" >&2
    exit 2
    ;;
esac

# ---------------------------------------------------------------------------------------------
# Pinned versions. Changing one makes the next run build the new version beside the old one.
# ---------------------------------------------------------------------------------------------
# OCI conformance, Ginkgo suite. The v1.1.1 tag (a139cc423184, 2025-01-23) is NOT served by the
# Go module proxy (403 for the commit and for every pseudo-version of it); the newest served
# pre-redesign version is this one (2023-11-01). It has the same 79 specs and env vars as v1.1.1.
OCI_CONF_LEGACY_VERSION=v0.0.0-20231101194043-f2182352d4cc
OCI_CONF_LEGACY_LABEL=v1.1.1 # the name the test scripts use: bin/oci-conformance-v1.1.1.test
# OCI conformance, redesigned suite (plain Go program, `go build`).
OCI_CONF_REDESIGN_VERSION=v0.0.0-20260831232431-97274622c111
ORAS_VERSION=v1.3.6
HELM_VERSION=v3.22.0
CRANE_VERSION=v0.22.1
DISTRIBUTION_VERSION=v3.1.2
APPR_VERSION=0.7.4
MOTO_VERSION=5.2.5
GARAGE_VERSION=2.5.0
S3S_FS_VERSION=0.14.1
# Bump when the pip lock lists below change, so that existing venvs are rebuilt.
APPR_VENV_REV=1
MOTO_VENV_REV=1

CONF_MODULE=github.com/opencontainers/distribution-spec/conformance

CACHE=${APPRD_CACHE:-$HOME/.cache/apprd}
mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd -P)
BIN=$CACHE/bin
LOGS=$CACHE/logs
mkdir -p "$BIN" "$LOGS"

PYTHON311=${PYTHON311:-$(command -v python3.11 || true)}
PYENV_ROOT_DIR=${PYENV_ROOT:-$HOME/.pyenv}
PYTHON27=${PYTHON27:-$PYENV_ROOT_DIR/versions/2.7.18/bin/python2.7}

# Go: no toolchain switching, no VCS stamping, static binaries.
export GOTOOLCHAIN=local
export GOFLAGS=-buildvcs=false
export CGO_ENABLED=0

START=$(date +%s)
log() { printf '[tools] %s\n' "$*"; }
die() {
  printf '[tools] ERROR: %s\n' "$*" >&2
  exit 1
}
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# A free TCP port on 127.0.0.1 (there is a tiny race between picking and binding; fine here).
free_port() {
  "$PYTHON311" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_http URL SECONDS [PID]: poll until URL answers any HTTP status; fail if PID exits first.
wait_http() {
  local url=$1 secs=$2 pid=${3:-} i
  for ((i = 0; i < secs * 10; i++)); do
    if curl -s -o /dev/null --max-time 2 "$url"; then return 0; fi
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then return 1; fi
    sleep 0.1
  done
  return 1
}

stop_pid() {
  local pid=$1
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# link NAME TARGET: $BIN/NAME -> TARGET (relative when TARGET is in $BIN).
link() { ln -sfn "$2" "$BIN/$1"; }

# ---------------------------------------------------------------------------------------------
# Go tools
# ---------------------------------------------------------------------------------------------

# go_install NAME PKG VERSION [LDFLAGS]: go install PKG@VERSION into $CACHE/gobin-NAME-VERSION,
# copy to $BIN/NAME-VERSION (the stamp) and point $BIN/NAME at it.
go_install() {
  local name=$1 pkg=$2 ver=$3 ldflags=${4:-} gobin exe
  gobin=$CACHE/gobin-$name-$ver
  exe=$(basename "$pkg")
  rm -rf "$gobin"
  GOBIN=$gobin go install -trimpath -ldflags "-s -w $ldflags" "$pkg@$ver"
  verify_"$name" "$gobin/$exe"
  cp "$gobin/$exe" "$BIN/.$name-$ver.tmp"
  mv -f "$BIN/.$name-$ver.tmp" "$BIN/$name-$ver"
  link "$name" "$name-$ver"
  rm -rf "$gobin"
}

# conformance_copy VERSION DIR: the module's files copied out of the read-only module cache.
conformance_copy() {
  local ver=$1 dir=$2 src
  src=$(go mod download -json "$CONF_MODULE@$ver" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -n "$src" ] && [ -d "$src" ] || die "go mod download $CONF_MODULE@$ver gave no Dir"
  rm -rf "$dir"
  cp -r "$src" "$dir"
  chmod -R u+w "$dir"
}

install_oci_conformance_legacy() {
  local work=$CACHE/build/conformance-$OCI_CONF_LEGACY_VERSION out=$BIN/oci-conformance-$OCI_CONF_LEGACY_VERSION.test
  conformance_copy "$OCI_CONF_LEGACY_VERSION" "$work"
  (cd "$work" && go test -c -mod=mod -trimpath \
    -ldflags "-s -w -X $CONF_MODULE.Version=$OCI_CONF_LEGACY_VERSION" -o "$out.tmp" .)
  verify_oci_conformance_legacy "$out.tmp"
  mv -f "$out.tmp" "$out"
  link "oci-conformance-$OCI_CONF_LEGACY_LABEL.test" "oci-conformance-$OCI_CONF_LEGACY_VERSION.test"
  rm -rf "$work"
}

install_oci_conformance_redesign() {
  local work=$CACHE/build/conformance-$OCI_CONF_REDESIGN_VERSION out=$BIN/oci-conformance-redesign-$OCI_CONF_REDESIGN_VERSION
  conformance_copy "$OCI_CONF_REDESIGN_VERSION" "$work"
  (cd "$work" && go build -mod=mod -trimpath \
    -ldflags "-s -w -X main.Version=$OCI_CONF_REDESIGN_VERSION" -o "$out.tmp" .)
  verify_oci_conformance_redesign "$out.tmp"
  mv -f "$out.tmp" "$out"
  link oci-conformance-redesign "oci-conformance-redesign-$OCI_CONF_REDESIGN_VERSION"
  rm -rf "$work"
}

install_oras() { go_install oras oras.land/oras/cmd/oras "$ORAS_VERSION"; } # its version is in the source
install_helm() { go_install helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION" \
  "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"; }
install_crane() { go_install crane github.com/google/go-containerregistry/cmd/crane "$CRANE_VERSION" \
  "-X github.com/google/go-containerregistry/cmd/crane/cmd.Version=$CRANE_VERSION"; }
install_registry() { go_install registry github.com/distribution/distribution/v3/cmd/registry "$DISTRIBUTION_VERSION" \
  "-X github.com/distribution/distribution/v3/version.version=$DISTRIBUTION_VERSION"; }

# --- smoke checks (each gets the binary to check as $1) ---

# The Ginkgo suite has no --help (it panics without OCI_ROOT_URL); run the Pull workflow against
# a closed port: it must start, report connection errors and exit non-zero.
verify_oci_conformance_legacy() {
  local out rc=0
  out=$(cd /tmp && OCI_ROOT_URL=http://127.0.0.1:1 OCI_NAMESPACE=apprd/check OCI_TEST_PULL=1 \
    OCI_REPORT_DIR=none timeout 120 "$1" 2>&1) || rc=$?
  [ "$rc" != 0 ] || die "conformance suite passed against a closed port?"
  grep -q 'connection refused' <<<"$out" || die "conformance suite did not run: $(tail -5 <<<"$out")"
  grep -q 'Ran 24 of 79 Specs' <<<"$out" || die "unexpected spec count: $(grep 'Ran ' <<<"$out")"
}

verify_oci_conformance_redesign() {
  local out rc=0 res
  res=$(mktemp -d)
  out=$(cd "$res" && OCI_REGISTRY=127.0.0.1:1 OCI_TLS=disabled OCI_RESULTS_DIR="$res" \
    timeout 120 "$1" 2>&1) || rc=$?
  [ "$rc" != 0 ] || die "redesigned conformance suite passed against a closed port?"
  [ -s "$res/results.yaml" ] && [ -s "$res/junit.xml" ] ||
    die "redesigned conformance suite wrote no results: $(tail -5 <<<"$out")"
  grep -q 'connection refused' - "$res/results.yaml" "$res/junit.xml" <<<"$out" ||
    die "redesigned conformance suite did not try to connect: $(tail -5 <<<"$out")"
  rm -rf "$res"
}

# has_output PATTERN CMD...: CMD succeeds and its output matches PATTERN. (The output is captured
# first: `cmd | grep -q` fails under pipefail when grep exits before cmd has written everything.)
has_output() {
  local pat=$1 out
  shift
  out=$("$@" 2>&1) && grep -q -- "$pat" <<<"$out"
}

verify_oras() { has_output "Version: *${ORAS_VERSION#v}" "$1" version || die "oras version: $("$1" version)"; }
verify_helm() { has_output "^$HELM_VERSION" "$1" version --short || die "helm version: $("$1" version --short)"; }
verify_crane() { [ "$("$1" version)" = "$CRANE_VERSION" ] || die "crane version: $("$1" version)"; }

# Distribution: start it on a free port with the config written below and expect 200 on /v2/.
verify_registry() {
  local port data pid rc=0
  has_output "$DISTRIBUTION_VERSION" "$1" --version || die "registry --version: $("$1" --version)"
  write_registry_config
  port=$(free_port)
  data=$(mktemp -d)
  REGISTRY_HTTP_ADDR=127.0.0.1:$port REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY=$data \
    "$1" serve "$CACHE/etc/distribution-config.yml" >"$data.log" 2>&1 9>&- &
  pid=$!
  wait_http "http://127.0.0.1:$port/v2/" 20 "$pid" || rc=1
  [ "$rc" = 0 ] && [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v2/")" = 200 ] || rc=1
  stop_pid "$pid"
  [ "$rc" = 0 ] || die "distribution registry did not answer 200 on /v2/: $(tail -5 "$data.log")"
  rm -rf "$data" "$data.log"
}

# A loopback-only, auth-less Distribution config for benchmarks. Override with env, e.g.
# REGISTRY_HTTP_ADDR=127.0.0.1:5001 REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY=/tmp/reg
write_registry_config() {
  mkdir -p "$CACHE/etc"
  cat >"$CACHE/etc/distribution-config.yml.tmp" <<'EOF'
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: /tmp/apprd-distribution-data
  delete:
    enabled: true
  redirect:
    disable: true
http:
  addr: 127.0.0.1:5000
EOF
  mv -f "$CACHE/etc/distribution-config.yml.tmp" "$CACHE/etc/distribution-config.yml"
}

# ---------------------------------------------------------------------------------------------
# Python tools
# ---------------------------------------------------------------------------------------------

# appr 0.7.4 (Python 2 only) with the pins of shared/reference/appr-exchanges.md section 1a.
# The recipe there is: pip install appr==0.7.4 gunicorn, then the 2017-era pins (gevent<1.3 is
# required: the CLI imports gevent.wsgi). This list is the exact `pip freeze` that recipe
# produced here; installing it with --no-deps gives the same environment in one step.
APPR_LOCK='appr==0.7.4
certifi==2021.10.8
cffi==1.15.1
chardet==3.0.4
click==6.7
cryptography==3.3.2
dnspython==1.16.0
ecdsa==0.19.2
enum34==1.1.10
Flask==0.12.2
Flask-Cors==3.0.3
future==1.0.0
futures==3.4.0
gevent==1.2.2
greenlet==0.4.17
gunicorn==19.7.1
idna==2.6
ipaddress==1.0.23
itsdangerous==0.24
Jinja2==2.9.6
jsonpatch==1.33
jsonpointer==2.4
MarkupSafe==1.0
pathspec==0.5.5
pycparser==2.21
pyOpenSSL==21.0.0
python-etcd==0.4.5
PyYAML==3.12
redis==3.5.3
requests==2.18.4
semantic-version==2.6.0
six==1.17.0
tabulate==0.8.10
termcolor==1.1.0
urllib3==1.21.1
Werkzeug==0.12.2
zope.event==4.6
zope.interface==5.5.2'

# virtualenv < 20.22 is the last that can create Python 2.7 environments.
VIRTUALENV_LOCK='virtualenv==20.21.1
distlib==0.4.4
filelock==3.32.7
platformdirs==3.11.0'

# moto's standalone S3 server. shared/reference/s3-test-servers.md: `moto[s3]` + flask +
# flask-cors is all `moto_server` needs for S3 (16 s install) where `moto[server]` pulls every
# AWS service's deps (33 s, 317 MB). This is the exact freeze of `moto[s3]==5.2.5 flask flask-cors`.
MOTO_LOCK='moto[s3]==5.2.5
blinker==1.9.0
boto3==1.44.8
botocore==1.44.8
certifi==2026.10.19.post1
cffi==2.1.1
charset-normalizer==3.5.3
click==8.5.1
cryptography==50.0.2
Flask==3.1.3
flask-cors==6.0.5
idna==3.20
itsdangerous==2.2.0
Jinja2==3.1.6
jmespath==1.1.0
MarkupSafe==3.0.4
py-partiql-parser==0.6.3
pycparser==3.12
python-dateutil==2.9.0.post0
PyYAML==6.0.4
requests==2.34.2
responses==0.26.3
s3transfer==0.19.3
six==1.17.0
urllib3==2.8.0
Werkzeug==3.1.9
xmltodict==1.0.4'

APPR_VENV=$CACHE/appr-venv
APPR_STAMP=$APPR_VENV/.apprd-appr-$APPR_VERSION-r$APPR_VENV_REV
MOTO_VENV=$CACHE/moto-venv
MOTO_STAMP=$MOTO_VENV/.apprd-moto-$MOTO_VERSION-r$MOTO_VENV_REV

install_appr() {
  local tools=$CACHE/virtualenv-venv
  [ -x "$PYTHON27" ] || die "Python 2.7.18 not found at $PYTHON27 (pyenv install 2.7.18, or set PYTHON27)"
  if [ ! -x "$tools/bin/virtualenv" ]; then
    rm -rf "$tools"
    "$PYTHON311" -m venv "$tools"
    printf '%s\n' "$VIRTUALENV_LOCK" >"$tools/requirements.lock"
    "$tools/bin/pip" install -q --no-deps -r "$tools/requirements.lock"
  fi
  rm -rf "$APPR_VENV"
  VIRTUALENV_OVERRIDE_APP_DATA=$tools/app-data \
    "$tools/bin/virtualenv" -q -p "$PYTHON27" "$APPR_VENV"
  # PYTHONWARNINGS hides pip 20's Python 2 deprecation banner.
  printf '%s\n' "$APPR_LOCK" >"$APPR_VENV/requirements.lock"
  PYTHONWARNINGS=ignore "$APPR_VENV/bin/pip" install -q --no-deps -r "$APPR_VENV/requirements.lock"
  PYTHONWARNINGS=ignore "$APPR_VENV/bin/pip" check

  cat >"$BIN/appr" <<EOF
#!/bin/sh
# appr $APPR_VERSION CLI (Python 2.7 venv made by scripts/tools.sh)
PYTHONWARNINGS=\${PYTHONWARNINGS:-ignore} exec "$APPR_VENV/bin/appr" "\$@"
EOF
  cat >"$BIN/appr-reference-server" <<EOF
#!/bin/sh
# The reference appr $APPR_VERSION server (gunicorn, filesystem storage), as in
# shared/reference/appr-exchanges.md:
#   appr-reference-server PORT DATADIR [extra gunicorn options]
# Listens on \${APPR_REF_BIND:-127.0.0.1}:PORT with \${APPR_REF_WORKERS:-1} sync worker(s).
# Stops on SIGTERM/SIGINT. Packages are stored under DATADIR/appr/packages.
set -eu
[ \$# -ge 2 ] || { echo "usage: appr-reference-server PORT DATADIR [gunicorn options]" >&2; exit 2; }
port=\$1 data=\$2
shift 2
mkdir -p "\$data"
data=\$(cd "\$data" && pwd -P)
PYTHONWARNINGS=\${PYTHONWARNINGS:-ignore} DATABASE_URL="\$data" APPR_DB_CLASS=filesystem \\
  exec "$APPR_VENV/bin/gunicorn" appr.api.wsgi:app -b "\${APPR_REF_BIND:-127.0.0.1}:\$port" \\
  -w "\${APPR_REF_WORKERS:-1}" --timeout 120 "\$@"
EOF
  chmod +x "$BIN/appr" "$BIN/appr-reference-server"
  verify_appr
  touch "$APPR_STAMP"
}

verify_appr() {
  local out port data pid rc=0
  has_output delete-package "$BIN/appr" --help || die "appr --help failed"
  out=$("$BIN/appr" version http://127.0.0.1:1 2>&1) || die "appr version exited non-zero: $out"
  grep -q "Client-version: $APPR_VERSION" <<<"$out" || die "appr version: $out"
  port=$(free_port)
  data=$(mktemp -d)
  "$BIN/appr-reference-server" "$port" "$data" >"$data.log" 2>&1 9>&- &
  pid=$!
  wait_http "http://127.0.0.1:$port/cnr/version" 30 "$pid" || rc=1
  out=$(curl -s "http://127.0.0.1:$port/cnr/version") || rc=1
  grep -q "\"appr-api\": \"$APPR_VERSION\"" <<<"$out" || rc=1
  # the real CLI against the real server
  [ "$rc" = 0 ] && { has_output "appr-api': u'$APPR_VERSION" "$BIN/appr" version "http://127.0.0.1:$port" || rc=1; }
  stop_pid "$pid"
  [ "$rc" = 0 ] || die "appr reference server did not answer /cnr/version: $out $(tail -5 "$data.log")"
  rm -rf "$data" "$data.log"
}

install_moto() {
  rm -rf "$MOTO_VENV"
  "$PYTHON311" -m venv "$MOTO_VENV"
  printf '%s\n' "$MOTO_LOCK" >"$MOTO_VENV/requirements.lock"
  "$MOTO_VENV/bin/pip" install -q --no-deps -r "$MOTO_VENV/requirements.lock"
  "$MOTO_VENV/bin/pip" check
  cat >"$BIN/moto_server" <<EOF
#!/bin/sh
# moto $MOTO_VERSION standalone server (S3 only). Start: moto_server -H 127.0.0.1 -p PORT
# Reset all state: curl -X POST http://127.0.0.1:PORT/moto-api/reset
exec "$MOTO_VENV/bin/moto_server" "\$@"
EOF
  chmod +x "$BIN/moto_server"
  verify_moto
  touch "$MOTO_STAMP"
}

# Start it; create a bucket, put, get and list an object with boto3 (a moto dependency, so it is
# in the venv; moto accepts any credentials); reset; stop.
verify_moto() {
  local port pid rc=0 base
  port=$(free_port)
  base=http://127.0.0.1:$port
  "$BIN/moto_server" -H 127.0.0.1 -p "$port" >"$LOGS/moto-verify.log" 2>&1 9>&- &
  pid=$!
  wait_http "$base/" 30 "$pid" || rc=1
  if [ "$rc" = 0 ]; then
    AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION=us-east-1 \
      "$MOTO_VENV/bin/python" - "$base" >>"$LOGS/moto-verify.log" 2>&1 <<'PY' || rc=1
import sys, boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1])
s3.create_bucket(Bucket="apprd-check")
s3.put_object(Bucket="apprd-check", Key="k", Body=b"hello", IfNoneMatch="*")
assert s3.get_object(Bucket="apprd-check", Key="k")["Body"].read() == b"hello"
assert [o["Key"] for o in s3.list_objects_v2(Bucket="apprd-check")["Contents"]] == ["k"]
PY
    curl -sf -X POST "$base/moto-api/reset" -o /dev/null || rc=1
  fi
  stop_pid "$pid"
  [ "$rc" = 0 ] || die "moto_server check failed: $(tail -5 "$LOGS/moto-verify.log")"
}

# ---------------------------------------------------------------------------------------------
# Debian packages
# ---------------------------------------------------------------------------------------------
APT_UPDATED=
apt_install() {
  if [ -z "$APT_UPDATED" ]; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    APT_UPDATED=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

install_skopeo() {
  apt_install skopeo
  verify_skopeo
}
verify_skopeo() { skopeo --version >/dev/null || die "skopeo --version failed"; }

# ---------------------------------------------------------------------------------------------
# Garage (bench only; ~15 min of compiling on 2 cores)
# ---------------------------------------------------------------------------------------------
GARAGE_ROOT=$CACHE/garage-$GARAGE_VERSION
install_garage() {
  command -v cargo >/dev/null || die "cargo not found"
  rm -rf "$GARAGE_ROOT"
  CARGO_TARGET_DIR=$CACHE/build/garage-target cargo install "garage@$GARAGE_VERSION" --locked \
    --no-default-features --features bundled-libs,lmdb,sqlite --root "$GARAGE_ROOT.tmp"
  verify_garage "$GARAGE_ROOT.tmp/bin/garage"
  mv "$GARAGE_ROOT.tmp" "$GARAGE_ROOT"
  link "garage-$GARAGE_VERSION" "$GARAGE_ROOT/bin/garage"
  link garage "garage-$GARAGE_VERSION"
  rm -rf "$CACHE/build/garage-target"
}

# Start a single node with a default key (as in shared/reference/s3-test-servers.md) and expect
# the S3 port to answer.
verify_garage() {
  local exe=$1 dir port pid rc=0
  has_output "$GARAGE_VERSION" "$exe" --version || die "garage --version: $("$exe" --version 2>&1)"
  dir=$(mktemp -d)
  port=$(free_port)
  cat >"$dir/garage.toml" <<EOF
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$(free_port)"
rpc_public_addr = "127.0.0.1:$(free_port)"
rpc_secret = "1799bccfd7411eddcf9ebd316bc1f5287ad12a68094e1c6ac6abde7e6feae1ec"
[s3_api]
s3_region = "us-east-1"
api_bind_addr = "127.0.0.1:$port"
root_domain = ".s3.garage.localhost"
EOF
  GARAGE_DEFAULT_ACCESS_KEY=GK0123456789abcdef01234567 \
    GARAGE_DEFAULT_SECRET_KEY=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef \
    "$exe" -c "$dir/garage.toml" server --single-node --default-access-key >"$dir/log" 2>&1 9>&- &
  pid=$!
  wait_http "http://127.0.0.1:$port/" 30 "$pid" || rc=1
  stop_pid "$pid"
  [ "$rc" = 0 ] || die "garage did not answer on its S3 port: $(tail -5 "$dir/log")"
  rm -rf "$dir"
}

# ---------------------------------------------------------------------------------------------
# s3s-fs (tests: the S3 server that checks SigV4 signatures, which moto does not; ~1.5 min)
# ---------------------------------------------------------------------------------------------
S3S_FS_ROOT=$CACHE/s3s-fs-$S3S_FS_VERSION
install_s3s_fs() {
  command -v cargo >/dev/null || die "cargo not found"
  rm -rf "$S3S_FS_ROOT.tmp"
  CARGO_TARGET_DIR=$CACHE/build/s3s-fs-target cargo install "s3s-fs@$S3S_FS_VERSION" --locked \
    --features binary --root "$S3S_FS_ROOT.tmp"
  verify_s3s_fs "$S3S_FS_ROOT.tmp/bin/s3s-fs"
  rm -rf "$S3S_FS_ROOT"
  mv "$S3S_FS_ROOT.tmp" "$S3S_FS_ROOT"
  link "s3s-fs-$S3S_FS_VERSION" "$S3S_FS_ROOT/bin/s3s-fs"
  link s3s-fs "s3s-fs-$S3S_FS_VERSION"
  rm -rf "$CACHE/build/s3s-fs-target"
}

# Start it with a key pair: unsigned and wrongly signed requests are refused (403), a signed
# one is not.
verify_s3s_fs() {
  local exe=$1 dir port pid code rc=0
  has_output "$S3S_FS_VERSION" "$exe" --version || die "s3s-fs --version: $("$exe" --version 2>&1)"
  dir=$(mktemp -d)
  port=$(free_port)
  "$exe" --host 127.0.0.1 --port "$port" --access-key AKVERIFY --secret-key verify-secret "$dir" \
    >"$LOGS/s3s-fs-verify.log" 2>&1 9>&- &
  pid=$!
  wait_http "http://127.0.0.1:$port/" 30 "$pid" || rc=1
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/" || true)
  [ "$code" = 403 ] || rc=1
  code=$(curl -s -o /dev/null -w '%{http_code}' --aws-sigv4 aws:amz:us-east-1:s3 \
    --user AKVERIFY:wrong-secret -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' "http://127.0.0.1:$port/" || true)
  [ "$code" = 403 ] || rc=1
  code=$(curl -s -o /dev/null -w '%{http_code}' --aws-sigv4 aws:amz:us-east-1:s3 \
    --user AKVERIFY:verify-secret -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' "http://127.0.0.1:$port/" || true)
  [ "$code" = 200 ] || rc=1
  stop_pid "$pid"
  rm -rf "$dir"
  [ "$rc" = 0 ] || die "s3s-fs did not check signatures as expected (got $code): $(tail -5 "$LOGS/s3s-fs-verify.log")"
}

# ---------------------------------------------------------------------------------------------
# env.sh
# ---------------------------------------------------------------------------------------------
write_env() {
  local f=$CACHE/env.sh
  {
    echo "# Generated by scripts/tools.sh ($(date -u +%Y-%m-%dT%H:%M:%SZ)). Source it: . \"$f\""
    echo "export APPRD_CACHE=\"$CACHE\""
    echo 'case ":$PATH:" in *":$APPRD_CACHE/bin:"*) ;; *) export PATH="$APPRD_CACHE/bin:$PATH" ;; esac'
    echo "export APPRD_OCI_CONFORMANCE_V111=\"$BIN/oci-conformance-$OCI_CONF_LEGACY_LABEL.test\""
    echo "export APPRD_OCI_CONFORMANCE_V111_MODULE_VERSION=$OCI_CONF_LEGACY_VERSION"
    echo "export APPRD_OCI_CONFORMANCE_REDESIGN=\"$BIN/oci-conformance-redesign\""
    echo "export APPRD_OCI_CONFORMANCE_REDESIGN_MODULE_VERSION=$OCI_CONF_REDESIGN_VERSION"
    echo "export APPRD_ORAS=\"$BIN/oras\" APPRD_ORAS_VERSION=$ORAS_VERSION"
    echo "export APPRD_HELM=\"$BIN/helm\" APPRD_HELM_VERSION=$HELM_VERSION"
    echo "export APPRD_CRANE=\"$BIN/crane\" APPRD_CRANE_VERSION=$CRANE_VERSION"
    if [ -e "$BIN/registry-$DISTRIBUTION_VERSION" ]; then
      echo "export APPRD_DISTRIBUTION=\"$BIN/registry\" APPRD_DISTRIBUTION_VERSION=$DISTRIBUTION_VERSION"
      echo "export APPRD_DISTRIBUTION_CONFIG=\"$CACHE/etc/distribution-config.yml\""
    fi
    echo "export APPRD_SKOPEO=\"$(command -v skopeo || echo skopeo)\""
    echo "export APPRD_APPR=\"$BIN/appr\" APPRD_APPR_VERSION=$APPR_VERSION APPRD_APPR_VENV=\"$APPR_VENV\""
    echo "export APPRD_APPR_REFERENCE_SERVER=\"$BIN/appr-reference-server\""
    echo "export APPRD_MOTO_SERVER=\"$BIN/moto_server\" APPRD_MOTO_VERSION=$MOTO_VERSION APPRD_MOTO_VENV=\"$MOTO_VENV\""
    echo "export APPRD_S3S_FS=\"$BIN/s3s-fs\" APPRD_S3S_FS_VERSION=$S3S_FS_VERSION"
    if [ -x "$GARAGE_ROOT/bin/garage" ]; then
      echo "export APPRD_GARAGE=\"$BIN/garage\" APPRD_GARAGE_VERSION=$GARAGE_VERSION"
    fi
    if command -v wrk >/dev/null; then echo "export APPRD_WRK=\"$(command -v wrk)\""; fi
    if command -v hey >/dev/null; then echo "export APPRD_HEY=\"$(command -v hey)\""; fi
  } >"$f.tmp"
  mv -f "$f.tmp" "$f"
}

# ---------------------------------------------------------------------------------------------
# Driver: each missing tool is a background job with its own log; one line per tool.
# ---------------------------------------------------------------------------------------------
NAMES=()
PIDS=()
T0=()
# want NAME DONE_PATHS INSTALL_FN VERSION: skip if every path of DONE_PATHS ('|'-separated)
# exists, else start INSTALL_FN in the background.
want() {
  local name=$1 done=$2 fn=$3 ver=$4 p have=1 paths
  IFS='|' read -r -a paths <<<"$done"
  for p in "${paths[@]}"; do [ -e "$p" ] || have=0; done
  if [ "$have" = 1 ]; then
    log "$name $ver: already installed (${paths[0]})"
    return 0
  fi
  log "$name $ver: installing (log: $LOGS/$name.log)"
  rm -f "$LOGS/$name.end"
  ( set -euo pipefail; "$fn"; date +%s >"$LOGS/$name.end" ) >"$LOGS/$name.log" 2>&1 &
  NAMES+=("$name $ver")
  PIDS+=($!)
  T0+=("$(date +%s)")
}

wait_all() {
  local i failed=0 rc name
  for i in "${!PIDS[@]}"; do
    rc=0
    wait "${PIDS[$i]}" || rc=$?
    name=${NAMES[$i]}
    if [ "$rc" = 0 ]; then
      log "$name: installed and checked in $(($(cat "$LOGS/${name%% *}.end") - T0[i]))s"
    else
      log "$name: FAILED (exit $rc); last lines of $LOGS/${name%% *}.log:"
      tail -n 20 "$LOGS/${name%% *}.log" | sed 's/^/    /' >&2
      failed=1
    fi
  done
  NAMES=() PIDS=() T0=()
  [ "$failed" = 0 ] || die "some tools could not be installed (see above)"
}

preflight() {
  local t
  for t in go curl; do command -v "$t" >/dev/null || die "$t not found"; done
  [ -n "$PYTHON311" ] || die "python3.11 not found (set PYTHON311)"
}

run_verify() {
  verify_oci_conformance_legacy "$BIN/oci-conformance-$OCI_CONF_LEGACY_LABEL.test"
  log "oci-conformance-$OCI_CONF_LEGACY_LABEL ($OCI_CONF_LEGACY_VERSION): ok"
  verify_oci_conformance_redesign "$BIN/oci-conformance-redesign"
  log "oci-conformance-redesign ($OCI_CONF_REDESIGN_VERSION): ok"
  verify_oras "$BIN/oras"
  log "oras $ORAS_VERSION: ok"
  verify_helm "$BIN/helm"
  log "helm $HELM_VERSION: ok"
  verify_crane "$BIN/crane"
  log "crane $CRANE_VERSION: ok"
  if [ -e "$BIN/registry-$DISTRIBUTION_VERSION" ]; then
    verify_registry "$BIN/registry"
    log "registry (distribution) $DISTRIBUTION_VERSION: ok"
  fi
  verify_skopeo
  log "skopeo: ok ($(skopeo --version))"
  verify_appr
  log "appr $APPR_VERSION CLI + reference server: ok"
  verify_moto
  log "moto_server $MOTO_VERSION: ok"
  verify_s3s_fs "$BIN/s3s-fs"
  log "s3s-fs $S3S_FS_VERSION: ok"
  if [ -x "$GARAGE_ROOT/bin/garage" ]; then
    verify_garage "$BIN/garage"
    log "garage $GARAGE_VERSION: ok"
  fi
}

# The driver is a function, called on the last line, so that bash has read the whole file before
# running it (a `git pull` during a long `bench` build must not change what runs).
main() {
  local t missing
  case "$MODE" in
    env)
      write_env
      echo "$CACHE/env.sh"
      exit 0
      ;;
    verify)
      preflight
      run_verify
      exit 0
      ;;
  esac

  preflight
  # One install at a time per cache (test.sh and a developer may both call this).
  exec 9>"$CACHE/.lock"
  if ! flock -n 9; then
    log "another tools.sh run holds $CACHE/.lock; waiting for it"
    flock 9
  fi
  log "cache: $CACHE (mode: $MODE)"
  mkdir -p "$CACHE/build"

  want oci-conformance-$OCI_CONF_LEGACY_LABEL "$BIN/oci-conformance-$OCI_CONF_LEGACY_VERSION.test" install_oci_conformance_legacy "$OCI_CONF_LEGACY_VERSION"
  want oci-conformance-redesign "$BIN/oci-conformance-redesign-$OCI_CONF_REDESIGN_VERSION" install_oci_conformance_redesign "$OCI_CONF_REDESIGN_VERSION"
  want oras "$BIN/oras-$ORAS_VERSION" install_oras "$ORAS_VERSION"
  want helm "$BIN/helm-$HELM_VERSION" install_helm "$HELM_VERSION"
  want crane "$BIN/crane-$CRANE_VERSION" install_crane "$CRANE_VERSION"
  # Distribution is only a benchmark peer: building it costs ~1.5 min of CPU, so only for bench.
  if [ "$MODE" = bench ]; then
    want registry "$BIN/registry-$DISTRIBUTION_VERSION" install_registry "$DISTRIBUTION_VERSION"
  fi
  want appr "$APPR_STAMP|$BIN/appr|$BIN/appr-reference-server" install_appr "$APPR_VERSION"
  want moto "$MOTO_STAMP|$BIN/moto_server" install_moto "$MOTO_VERSION"
  want s3s-fs "$S3S_FS_ROOT/bin/s3s-fs" install_s3s_fs "$S3S_FS_VERSION"
  if command -v skopeo >/dev/null; then
    log "skopeo: already installed ($(skopeo --version))"
  else
    want skopeo /nonexistent install_skopeo debian
  fi
  # The plain names must point at the pinned versions even if an older run linked others.
  for t in oras:$ORAS_VERSION helm:$HELM_VERSION crane:$CRANE_VERSION registry:$DISTRIBUTION_VERSION; do
    [ ! -e "$BIN/${t%%:*}-${t#*:}" ] || link "${t%%:*}" "${t%%:*}-${t#*:}"
  done
  [ ! -e "$BIN/oci-conformance-$OCI_CONF_LEGACY_VERSION.test" ] ||
    link "oci-conformance-$OCI_CONF_LEGACY_LABEL.test" "oci-conformance-$OCI_CONF_LEGACY_VERSION.test"
  [ ! -e "$BIN/oci-conformance-redesign-$OCI_CONF_REDESIGN_VERSION" ] ||
    link oci-conformance-redesign "oci-conformance-redesign-$OCI_CONF_REDESIGN_VERSION"
  [ ! -e "$BIN/registry-$DISTRIBUTION_VERSION" ] || [ -e "$CACHE/etc/distribution-config.yml" ] ||
    write_registry_config
  wait_all

  if [ "$MODE" = bench ]; then
    # Debian's docker-registry (Distribution 2.8) is a benchmark peer; wrk and hey are nice to
    # have. Never fatal: bench/run.sh says what is missing.
    missing=()
    for t in docker-registry wrk hey; do command -v "$t" >/dev/null || missing+=("$t"); done
    if [ ${#missing[@]} -gt 0 ]; then
      log "bench: installing ${missing[*]} from Debian"
      apt_install "${missing[@]}" >"$LOGS/bench-apt.log" 2>&1 || log "bench: could not install ${missing[*]} (ignored; see $LOGS/bench-apt.log)"
    fi
    for t in docker-registry wrk hey; do
      if command -v "$t" >/dev/null; then log "$t: $(command -v "$t")"; else log "$t: absent (ignored)"; fi
    done
    if [ -x "$GARAGE_ROOT/bin/garage" ]; then
      log "garage $GARAGE_VERSION: already installed ($GARAGE_ROOT/bin/garage)"
      link "garage-$GARAGE_VERSION" "$GARAGE_ROOT/bin/garage"
      link garage "garage-$GARAGE_VERSION"
    else
      log "garage $GARAGE_VERSION: building with cargo install (15 min on an idle 2-core machine, 30 min on a busy one)"
      want garage "$GARAGE_ROOT/bin/garage" install_garage "$GARAGE_VERSION"
      wait_all
    fi
  fi

  rmdir "$CACHE/build" 2>/dev/null || true
  write_env
  log "env: source $CACHE/env.sh"
  log "done in $(($(date +%s) - START))s"
}

main "$@"
