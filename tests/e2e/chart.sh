#!/usr/bin/env bash
# backends: filesystem
# The Helm chart and the deploy/ files, without a cluster or a Docker engine:
# helm lint --strict, helm template per storage mode with the key fields
# checked, values the schema must reject, and the Dockerfile, compose file
# and plain manifests parsed and compared with what apprd reads.
source "$(dirname "$0")/../../scripts/lib.sh"
cd "$ROOT_DIR"
CHART=charts/apprd
export HELM_CONFIG_HOME=$WORK/helm-config HELM_CACHE_HOME=$WORK/helm-cache HELM_DATA_HOME=$WORK/helm-data

# A Python with PyYAML: the system one, the moto venv (scripts/tools.sh), or a
# small venv of our own in the cache.
yaml_python() {
  local p
  for p in python3 "${APPRD_MOTO_VENV:-$APPRD_CACHE/moto-venv}/bin/python"; do
    if command -v "$p" >/dev/null && "$p" -c 'import yaml' 2>/dev/null; then
      echo "$p"
      return
    fi
  done
  p=$APPRD_CACHE/yaml-venv
  if ! "$p/bin/python" -c 'import yaml' 2>/dev/null; then
    rm -rf "$p"
    python3 -m venv "$p" >&2
    "$p/bin/pip" install -q PyYAML==6.0.4 >&2
  fi
  echo "$p/bin/python"
}
PY=$(yaml_python)

# deploycheck (tests/e2e/deploycheck): the Kubernetes API types, BuildKit's
# Dockerfile parser and linter, compose-go's spec validation; built once per
# source version into the cache.
deploycheck_bin() {
  local src=tests/e2e/deploycheck hash out
  hash=$(cat "$src/go.mod" "$src/go.sum" "$src/main.go" | sha256sum | cut -c1-12)
  out=$APPRD_CACHE/bin/apprd-deploycheck-$hash
  if [ ! -x "$out" ]; then
    mkdir -p "$APPRD_CACHE/bin"
    (cd "$src" && GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -o "$out.tmp" .) >&2
    mv -f "$out.tmp" "$out"
  fi
  echo "$out"
}
CHECK=$(deploycheck_bin)

log "helm lint --strict"
helm lint --strict "$CHART"
for f in "$CHART"/ci/*-values.yaml; do
  helm lint --strict "$CHART" -f "$f"
done

log "helm template per storage mode"
helm template r "$CHART" >"$WORK/filesystem-defaults.yaml"
$PY tests/e2e/deploy_check.py chart filesystem-defaults "$WORK/filesystem-defaults.yaml"
for case in filesystem s3 s3-pod-identity; do
  helm template r "$CHART" -f "$CHART/ci/$case-values.yaml" >"$WORK/$case.yaml"
  $PY tests/e2e/deploy_check.py chart "$case" "$WORK/$case.yaml"
done
$PY tests/e2e/deploy_check.py coverage "$WORK/filesystem.yaml" "$WORK/s3.yaml"
"$CHECK" k8s "$WORK"/filesystem-defaults.yaml "$WORK"/filesystem.yaml "$WORK"/s3.yaml "$WORK"/s3-pod-identity.yaml

log "values the schema rejects"
s3=(--set storage.type=s3 --set storage.s3.bucket=my-bucket --set storage.s3.credentials.existingSecret=s)
helm template r "$CHART" "${s3[@]}" >/dev/null || fail "valid s3 values rejected"
reject() { # description, then helm flags
  local what=$1
  shift
  if helm template r "$CHART" "$@" >"$WORK/reject.out" 2>&1; then
    fail "schema accepted $what: $*"
  fi
  grep -qi 'schema\|values don' "$WORK/reject.out" || fail "$what failed for another reason: $(cat "$WORK/reject.out")"
}
reject "negative replicas" --set replicas=-1
reject "zero replicas" "${s3[@]}" --set replicas=0
reject "two replicas on the filesystem store" --set replicas=2
reject "an unknown storage type" --set storage.type=nfs
reject "s3 without a bucket" --set storage.type=s3 --set storage.s3.credentials.existingSecret=s
reject "s3 credentials from no Secret" --set storage.type=s3 --set storage.s3.bucket=bucket
reject "an unknown credentials source" "${s3[@]}" --set storage.s3.credentials.source=magic
reject "a part size under 5 MiB" "${s3[@]}" --set storage.s3.partSize=1000
reject "an unknown top-level key" --set replica=1
reject "a misspelt nested key" --set storage.filesystem.sise=1Gi
reject "a bad log format" --set config.logFormat=xml
reject "a port out of range" --set service.port=70000
reject "a bad volume size" --set storage.filesystem.size=lots
reject "a manifest limit under 4 MiB" --set config.maxManifestSize=1024
reject "a bad pull policy" --set image.pullPolicy=Sometimes

log "Dockerfile, compose file, plain manifests"
$PY tests/e2e/deploy_check.py deploy
"$CHECK" k8s deploy/kubernetes/apprd.yaml
"$CHECK" dockerfile deploy/Dockerfile
"$CHECK" compose deploy/compose.yaml

log "the checkers catch broken files"
# must_fail CHECK FILE SED-EDIT: the edited copy of FILE must fail CHECK.
must_fail() {
  local check=$1 file=$2 edit=$3 copy
  copy=$(dirname "$file")/.broken-$(basename "$file") # beside it: relative paths still resolve
  sed "$edit" "$file" >"$copy"
  if cmp -s "$file" "$copy"; then rm -f "$copy"; fail "sed '$edit' changed nothing in $file"; fi
  if "$CHECK" "$check" "$copy" >/dev/null 2>&1; then rm -f "$copy"; fail "$check accepted $file after: $edit"; fi
  rm -f "$copy"
}
must_fail k8s deploy/kubernetes/apprd.yaml 's/readOnlyRootFilesystem:/readOnlyRootFs:/'
must_fail k8s deploy/kubernetes/apprd.yaml 's/readOnlyRootFilesystem:/readOnlyRootFileSystem:/'
must_fail k8s deploy/kubernetes/apprd.yaml 's/containerPort: 5000/containerPort: "5000"/'
must_fail k8s deploy/kubernetes/apprd.yaml 's/storage: 20Gi/storage: lots/'
must_fail dockerfile deploy/Dockerfile 's/^EXPOSE/EXPOSED/'
must_fail dockerfile deploy/Dockerfile 's/ AS build/ as build/'
must_fail compose deploy/compose.yaml 's/^    environment:/    enviroment:/'
must_fail compose deploy/compose.yaml 's/read_only: true/read_only: maybe/'

log "chart and deploy files ok"
