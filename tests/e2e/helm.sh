#!/usr/bin/env bash
# helm round trip over OCI: package a chart, push, pull (bytes compared), show chart.
source "$(dirname "$0")/../../scripts/lib.sh"
setup_storage
start_apprd A
cd "$WORK"
export HELM_CONFIG_HOME=$WORK/helm-config HELM_CACHE_HOME=$WORK/helm-cache HELM_DATA_HOME=$WORK/helm-data
helm create e2echart >/dev/null
sed -i 's/^version: .*/version: 1.2.3/' e2echart/Chart.yaml
helm package e2echart >/dev/null
[ -f e2echart-1.2.3.tgz ] || fail "helm package produced nothing"
helm push e2echart-1.2.3.tgz "oci://$A_HOSTPORT/e2e/charts" --plain-http 2>&1 | tee push.txt
grep -q 'Digest: sha256:' push.txt || fail "helm push printed no digest"
mkdir pulled
helm pull "oci://$A_HOSTPORT/e2e/charts/e2echart" --version 1.2.3 --plain-http -d pulled 2>&1 | tee pull.txt
cmp e2echart-1.2.3.tgz pulled/e2echart-1.2.3.tgz || fail "pulled chart differs from the pushed one"
helm show chart "oci://$A_HOSTPORT/e2e/charts/e2echart" --version 1.2.3 --plain-http >show.txt
grep -q '^name: e2echart' show.txt && grep -q '^version: 1.2.3' show.txt || fail "helm show chart: $(cat show.txt)"
# the chart manifest is a Helm OCI chart
curl -sf -H 'Accept: application/vnd.oci.image.manifest.v1+json' "$A_URL/v2/e2e/charts/e2echart/manifests/1.2.3" >m.json
python3 -c '
import json; m=json.load(open("m.json"))
assert m["config"]["mediaType"]=="application/vnd.cncf.helm.config.v1+json", m
assert m["layers"][0]["mediaType"]=="application/vnd.cncf.helm.chart.content.v1.tar+gzip", m'
rendered=$(helm template r "oci://$A_HOSTPORT/e2e/charts/e2echart" --version 1.2.3 --plain-http)
grep -q 'kind: Deployment' <<<"$rendered" || fail "helm template of the pulled chart"
log "helm round trip ok ($APPRD_TEST_STORAGE)"
