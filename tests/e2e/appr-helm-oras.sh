#!/usr/bin/env bash
# APPR and OCI are two views of the same packages, checked with the real
# clients in both directions, comparing bytes and digests:
#  1. `appr push` (helm) -> `helm pull oci://` and `oras pull` give the same bytes;
#  2. `helm push oci://` -> `appr list/show/pull` see a helm release;
#  3. `oras push` of an APPR-shaped artifact -> `appr pull` of its media type.
source "$(dirname "$0")/../../scripts/lib.sh"
setup_storage
start_apprd A
for tool in appr helm oras; do command -v "$tool" >/dev/null || fail "$tool not installed (scripts/tools.sh)"; done
cd "$WORK"
export HOME=$WORK/home PYTHONWARNINGS=ignore
export HELM_CONFIG_HOME=$WORK/helm-config HELM_CACHE_HOME=$WORK/helm-cache HELM_DATA_HOME=$WORK/helm-data
mkdir -p "$HOME"
R=localhost:${A_HOSTPORT##*:}
H=$A_HOSTPORT
sha() { sha256sum "$1" | cut -d' ' -f1; }
gunzip_sha() { gzip -dc "$1" | sha256sum | cut -d' ' -f1; }
manifest() { curl -sf -H "Accept: $2" "$A_URL/v2/$1"; }

log "1. appr push -> helm pull, oras pull"
helm create apprchart >/dev/null
sed -i 's/^version: .*/version: 1.4.0/' apprchart/Chart.yaml
(cd apprchart && appr push "$R/appns/apprchart") | tee push.txt
grep -q 'pushed' push.txt || fail "appr push"
(cd apprchart && appr push "$R/appns/apprchart@1.4.0" -t docker-compose) >/dev/null
mkdir -p viaappr viahelm viaoras
(cd viaappr && appr pull "$R/appns/apprchart@1.4.0" -t helm --tarball >/dev/null)
APPR_TGZ=viaappr/appns_apprchart_1.4.0.tar.gz
[ -s "$APPR_TGZ" ] || fail "appr pull wrote nothing"
helm pull "oci://$H/appns/apprchart" --version 1.4.0 --plain-http -d viahelm
cmp "$APPR_TGZ" viahelm/apprchart-1.4.0.tgz || fail "helm pull bytes differ from appr pull bytes"
chart=$(helm show chart "oci://$H/appns/apprchart" --version 1.4.0 --plain-http)
grep -q '^name: apprchart' <<<"$chart" || fail "helm show chart"
rendered=$(helm template r "oci://$H/appns/apprchart" --version 1.4.0 --plain-http)
grep -q 'kind: Deployment' <<<"$rendered" || fail "helm template"
# The index for clients that take one, the helm manifest for those that do not.
manifest appns/apprchart/manifests/1.4.0 application/vnd.oci.image.index.v1+json >index.json
manifest appns/apprchart/manifests/1.4.0 application/vnd.oci.image.manifest.v1+json >helm-manifest.json
LAYER=$(python3 - <<'PY'
import json
i = json.load(open("index.json")); m = json.load(open("helm-manifest.json"))
assert i["mediaType"] == "application/vnd.oci.image.index.v1+json", i
assert [d["annotations"]["io.appr.media-type"] for d in i["manifests"]] == ["helm", "docker-compose"], i
assert m["config"]["mediaType"] == "application/vnd.cncf.helm.config.v1+json", m
assert m["layers"][0]["mediaType"] == "application/vnd.cncf.helm.chart.content.v1.tar+gzip", m
print(m["layers"][0]["digest"])
PY
)
[ "$LAYER" = "sha256:$(sha "$APPR_TGZ")" ] || fail "OCI layer digest $LAYER is not the package's"
curl -sf "$A_URL/v2/appns/apprchart/blobs/$LAYER" | cmp - "$APPR_TGZ" || fail "/v2 blob differs"
(cd viaoras && oras pull --plain-http "$H/appns/apprchart:1.4.0" >/dev/null)
cmp "$APPR_TGZ" viaoras/apprchart-1.4.0.tgz || fail "oras pull bytes differ"
mkdir -p viaappr/dc && (cd viaappr && appr pull "$R/appns/apprchart@1.4.0" -t docker-compose --tarball --dest dc >/dev/null)
cmp viaappr/dc/appns_apprchart_1.4.0.tar.gz viaoras/appns_apprchart_1.4.0_docker-compose.tar.gz ||
  fail "oras pull of the second format differs"
# The APPR digest is the SHA-256 of the uncompressed tar.
D=$(appr show "$R/appns/apprchart" -v 1.4.0 --output json | python3 -c 'import json,sys; print([m for m in json.load(sys.stdin) if "helm" in m["mediaType"]][0]["content"]["digest"])')
[ "$D" = "$(gunzip_sha "$APPR_TGZ")" ] || fail "APPR digest $D"

log "2. helm push -> appr list, show, pull"
helm create helmchart >/dev/null
sed -i 's/^version: .*/version: 2.3.0+build.7/' helmchart/Chart.yaml
helm package helmchart >/dev/null
HELM_TGZ=helmchart-2.3.0+build.7.tgz
helm push "$HELM_TGZ" "oci://$H/helmns" --plain-http >/dev/null
appr list "$R" >list.txt
grep -q "$R/helmns/helmchart *2.3.0+build.7 .*helm" list.txt || fail "appr list: $(cat list.txt)"
appr show "$R/helmns/helmchart" --output json >show.json
python3 - "$(gunzip_sha "$HELM_TGZ")" <<'PY'
import json, sys
s = json.load(open("show.json"))
assert len(s) == 1 and s[0]["release"] == "2.3.0+build.7", s
assert s[0]["mediaType"] == "application/vnd.appr.package-manifest.helm.v0.json", s
assert s[0]["content"]["digest"] == sys.argv[1], s
PY
mkdir -p back && (cd back && appr pull "$R/helmns/helmchart@2.3.0+build.7" -t helm --tarball >/dev/null)
cmp "$HELM_TGZ" back/helmns_helmchart_2.3.0+build.7.tar.gz || fail "appr pull of a helm-pushed chart differs"
(cd back && appr pull "$R/helmns/helmchart" >/dev/null)
[ -f back/helmns_helmchart_2.3.0+build.7/helmchart/Chart.yaml ] || fail "appr pull (default, media type -)"
# A channel on it, and a second APPR media type turns the tag into an index
# that helm still pulls byte-identical.
appr channel "$R/helmns/helmchart" -c stable --set-release -v 2.3.0+build.7 >/dev/null
(cd helmchart && appr push "$R/helmns/helmchart@2.3.0+build.7" -t docker-compose >/dev/null)
mkdir -p again && helm pull "oci://$H/helmns/helmchart" --version 2.3.0+build.7 --plain-http -d again >/dev/null
cmp "$HELM_TGZ" again/helmchart-2.3.0+build.7.tgz || fail "helm pull after the index conversion"

log "3. oras push of an APPR-shaped artifact -> appr pull"
tar czf orasfile.tar.gz -C apprchart .
oras push --plain-http "$H/orasns/orasp:3.0.0" \
  --artifact-type application/vnd.appr.package-manifest.kpm.v0.json \
  --annotation io.appr.media-type=kpm \
  orasfile.tar.gz:application/vnd.appr.package.kpm.v0.tar+gzip >/dev/null
mkdir -p orasback && (cd orasback && appr pull "$R/orasns/orasp@3.0.0" -t kpm --tarball >/dev/null)
cmp orasfile.tar.gz orasback/orasns_orasp_3.0.0.tar.gz || fail "appr pull of an oras-pushed package differs"
curl -sf "$A_URL/cnr/api/v1/packages/orasns/orasp/3.0.0/kpm" | python3 -c '
import json, sys; m = json.load(sys.stdin)
assert m["content"]["digest"] == sys.argv[1], m' "$(gunzip_sha orasfile.tar.gz)"
log "APPR <-> helm/oras round trips ok ($APPRD_TEST_STORAGE)"
