#!/usr/bin/env bash
# oras round trip: push and pull a file artifact, attach a referrer and discover it.
source "$(dirname "$0")/../../scripts/lib.sh"
setup_storage
start_apprd A
H=$A_HOSTPORT
cd "$WORK"
head -c 3000000 /dev/urandom > payload.bin
echo "signed" > sig.txt

oras push --plain-http --artifact-type application/vnd.apprd.test "$H/e2e/oras:v1" payload.bin:application/octet-stream >push.txt
digest=$(oras resolve --plain-http "$H/e2e/oras:v1")
[ -n "$digest" ] || fail "oras resolve gave nothing"
mkdir out && (cd out && oras pull --plain-http "$H/e2e/oras:v1" >/dev/null)
cmp payload.bin out/payload.bin || fail "pulled file differs"
oras manifest fetch --plain-http "$H/e2e/oras@$digest" | sha256sum | grep -q "${digest#sha256:}" || fail "manifest bytes differ"

oras attach --plain-http --artifact-type application/vnd.apprd.signature "$H/e2e/oras:v1" sig.txt:text/plain >/dev/null
oras discover --plain-http --format json "$H/e2e/oras:v1" >discover.json
python3 - discover.json <<'PY' || fail "oras discover does not list the signature: $(cat discover.json)"
import json, sys
d = json.load(open(sys.argv[1]))
refs = d.get("referrers") or d.get("manifests") or []
assert any(r.get("artifactType") == "application/vnd.apprd.signature" for r in refs), refs
PY
# the referrer is also reachable by the filtered referrers API
curl -sf -D hdr.txt "$A_URL/v2/e2e/oras/referrers/$digest?artifactType=application/vnd.apprd.signature" >ref.json
grep -qi '^oci-filters-applied: artifactType' hdr.txt || fail "no OCI-Filters-Applied"
python3 -c 'import json,sys; m=json.load(open("ref.json"))["manifests"]; assert len(m)==1 and m[0]["artifactType"]=="application/vnd.apprd.signature", m'
[ "$(oras repo tags --plain-http "$H/e2e/oras")" = "v1" ] || fail "tags: $(oras repo tags --plain-http "$H/e2e/oras")"
log "oras round trip ok ($APPRD_TEST_STORAGE)"
