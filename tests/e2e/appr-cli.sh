#!/usr/bin/env bash
# The real appr 0.7.4 CLI end to end against apprd: version, push (releases,
# media types, --force, channels), list, show, pull (release, channel,
# digest), inspect, channel add/remove/list/delete, delete-package. Outputs,
# exit codes and pulled bytes are checked.
source "$(dirname "$0")/../../scripts/lib.sh"
setup_storage
start_apprd A
command -v appr >/dev/null || fail "appr CLI not installed (scripts/tools.sh)"
cd "$WORK"
export HOME=$WORK/home PYTHONWARNINGS=ignore
mkdir -p "$HOME"
# The CLI speaks plain HTTP only to registries starting with "localhost".
R=localhost:${A_HOSTPORT##*:}

run() { # expected-rc command...: run, keep output in $WORK/out, check the exit code
  local want=$1; shift
  set +e
  "$@" >"$WORK/out" 2>&1
  local rc=$?
  set -e
  [ "$rc" = "$want" ] || fail "$* -> rc $rc (want $want): $(cat "$WORK/out")"
}
has() { grep -qF -- "$1" "$WORK/out" || fail "output lacks '$1': $(cat "$WORK/out")"; }
lacks() { ! grep -qF -- "$1" "$WORK/out" || fail "output has '$1': $(cat "$WORK/out")"; }

mkdir -p mychart/templates
cat >mychart/Chart.yaml <<'YAML'
apiVersion: v1
name: mychart
version: 1.0.0
description: e2e chart
maintainers:
- name: Tester
  email: tester@example.com
sources:
- https://example.com/mychart
YAML
echo 'replicas: 1' >mychart/values.yaml
printf 'kind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\n' >mychart/templates/configmap.yaml

run 0 appr version "$R"
has "Api-version: {u'appr-api': u'0.7.4'}"
has "Client-version: 0.7.4"

cd mychart
run 0 appr push "$R/myns/mychart"
has "package: myns/mychart (1.0.0 | helm) pushed"
run 2 appr push "$R/myns/mychart"
has "code: package-exists"
run 0 appr push "$R/myns/mychart" -f
run 0 appr push "$R/myns" --version 1.1.0-rc.1
has "package: myns/mychart (1.1.0-rc.1 | helm) pushed"
run 0 appr push "$R/myns/mychart@1.2.0" --channel stable
has ">>> Release '1.2.0' added to 'stable'"
run 0 appr push "$R/myns/mychart@2.0.0"
run 0 appr push "$R/myns/mychart@2.0.0" -t docker-compose
has "package: myns/mychart (2.0.0 | docker-compose) pushed"
run 2 appr push "$R/myns/mychart@abc"
has "code: invalid-release"
cd ..

run 0 appr list "$R"
has "$R/myns/mychart  2.0.0"
run 0 appr list "$R" --output json
python3 - "$WORK/out" <<'PY'
import json, sys
pk = json.load(open(sys.argv[1]))
assert len(pk) == 1 and pk[0]["name"] == "myns/mychart", pk
assert pk[0]["releases"] == ["2.0.0", "1.2.0", "1.1.0-rc.1", "1.0.0"], pk
assert pk[0]["default"] == "2.0.0" and sorted(pk[0]["manifests"]) == ["docker-compose", "helm"], pk
PY
run 0 appr list "$R" -o myns -s chart -t helm
has "myns/mychart"
run 0 appr list "$R" -o otherns
lacks "myns/mychart"

run 0 appr show "$R/myns/mychart"
for r in 2.0.0 1.2.0 1.1.0-rc.1 1.0.0; do has "$r"; done
run 0 appr show "$R/myns/mychart@1.0.0" -w
has "1.0.0"
run 0 appr show "$R/myns/mychart" -v 1.2.0 --output json
DIGEST=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[0]["content"]["digest"])' "$WORK/out")
[ ${#DIGEST} = 64 ] || fail "no digest in show output"

# Pulls: default, release + media type, channel, digest; bytes compared.
mkdir pulls && cd pulls
run 2 appr pull "$R/myns/mychart"
has "media-type non specified"
run 0 appr pull "$R/myns/mychart@1.0.0" -t helm --tarball
[ -f myns_mychart_1.0.0.tar.gz ] || fail "no tarball"
tar xzf myns_mychart_1.0.0.tar.gz
diff -r mychart ../mychart || fail "pulled chart differs from the pushed one"
python3 - "$DIGEST" <<'PY'
import gzip, hashlib, sys
d = hashlib.sha256(gzip.open("myns_mychart_1.0.0.tar.gz").read()).hexdigest()
assert d == sys.argv[1], (d, sys.argv[1])
PY
run 0 appr pull "$R/myns/mychart:stable" --dest ch
[ -f ch/myns_mychart_1.2.0/mychart/Chart.yaml ] || fail "channel pull: $(find ch)"
run 0 appr pull "$R/myns/mychart@sha256:$DIGEST" --dest dg
[ -f "dg/myns_mychart_${DIGEST:0:8}/mychart/values.yaml" ] || fail "digest pull: $(find dg)"
run 2 appr pull "$R/myns/mychart@9.9.9"
has "code: package-release-not-found"
run 0 appr helm list "$R"
has "$R/myns/mychart"
run 0 appr helm pull "$R/myns/mychart@1.2.0" --dest hp
[ -d hp/myns_mychart_1.2.0/mychart ] || fail "appr helm pull: $(find hp)"
cd ..

run 0 appr inspect "$R/myns/mychart@1.0.0" -t helm
has "mychart/Chart.yaml"
has "mychart/templates/configmap.yaml"
run 0 appr inspect "$R/myns/mychart@1.0.0" -t helm -f mychart/values.yaml
has "replicas: 1"

# Channels.
run 0 appr channel "$R/myns/mychart"
has "stable"
run 0 appr channel "$R/myns/mychart" -c stable
has "1.2.0"
run 0 appr channel "$R/myns/mychart" -c beta --set-release -v 1.1.0-rc.1
has ">>> Release '1.1.0-rc.1' added on 'beta'"
run 0 appr channel "$R/myns/mychart@1.0.0" -c beta --set-release
run 0 appr channel "$R/myns/mychart" -c beta --output json
python3 -c 'import json,sys; c=json.load(open(sys.argv[1]))[0]; assert c["current"]=="1.0.0" and c["releases"]==["1.1.0-rc.1","1.0.0"], c' "$WORK/out"
run 0 appr channel "$R/myns/mychart" -c beta --remove-release -v 1.0.0
has ">>> Release '1.0.0' removed from 'beta'"
run 0 appr channel "$R/myns/mychart" -c beta --output json
python3 -c 'import json,sys; c=json.load(open(sys.argv[1]))[0]; assert c["current"]=="1.1.0-rc.1" and c["releases"]==["1.1.0-rc.1"], c' "$WORK/out"
run 2 appr channel "$R/myns/mychart" -c beta --set-release -v 7.7.7
has "code: package-release-not-found"
run 0 appr channel "$R/myns/mychart" -c beta --delete
has ">>> Channel 'beta' on 'myns/mychart' deleted"
run 2 appr channel "$R/myns/mychart" -c beta
has "code: channel-not-found"

# Deletes; a deleted release leaves its channels.
run 0 appr delete-package "$R/myns/mychart@1.0.0" -t helm
has "Deleted package: myns/mychart - 1.0.0"
run 2 appr delete-package "$R/myns/mychart@1.0.0" -t helm
has "code: package-not-found"
run 0 appr delete-package "$R/myns/mychart" -v 1.2.0 -t helm --output json
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d=={"status":"deleted","package":"myns/mychart","release":"1.2.0"}, d' "$WORK/out"
run 0 appr channel "$R/myns/mychart" --output json
python3 -c 'import json,sys; assert json.load(open(sys.argv[1]))==[], "stable should be gone"' "$WORK/out"
run 0 appr show "$R/myns/mychart"
lacks "1.2.0"
has "1.1.0-rc.1"
log "appr CLI end to end ok ($APPRD_TEST_STORAGE)"
