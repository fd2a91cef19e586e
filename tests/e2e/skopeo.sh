#!/usr/bin/env bash
# skopeo (Debian) round trip: an OCI layout with one image and a two-platform
# index copied in and out; digests and blobs compared.
source "$(dirname "$0")/../../scripts/lib.sh"
setup_storage
start_apprd A
command -v skopeo >/dev/null || fail "skopeo not installed"
layout=$WORK/layout; back=$WORK/back
read -r single multi < <(python3 "$(dirname "$0")/make_oci_layout.py" "$layout")
tls=(--src-tls-verify=false --dest-tls-verify=false)

skopeo copy "${tls[@]}" --preserve-digests "oci:$layout:single" "docker://$A_HOSTPORT/e2e/skopeo:single"
skopeo copy "${tls[@]}" --preserve-digests --all "oci:$layout:multi" "docker://$A_HOSTPORT/e2e/skopeo:multi"

got=$(skopeo inspect --tls-verify=false --raw "docker://$A_HOSTPORT/e2e/skopeo:single" | sha256sum | cut -d' ' -f1)
[ "sha256:$got" = "$single" ] || fail "single manifest digest sha256:$got != $single"
got=$(skopeo inspect --tls-verify=false --raw "docker://$A_HOSTPORT/e2e/skopeo:multi" | sha256sum | cut -d' ' -f1)
[ "sha256:$got" = "$multi" ] || fail "index digest sha256:$got != $multi"
inspect=$(skopeo inspect --tls-verify=false "docker://$A_HOSTPORT/e2e/skopeo:single")
grep -q '"Architecture": "amd64"' <<<"$inspect" || fail "skopeo inspect does not see the image config"

skopeo copy "${tls[@]}" --preserve-digests --all "docker://$A_HOSTPORT/e2e/skopeo:multi" "oci:$back:multi"
skopeo copy "${tls[@]}" --preserve-digests "docker://$A_HOSTPORT/e2e/skopeo:single" "oci:$back:single"
for f in "$layout"/blobs/sha256/*; do
  cmp -s "$f" "$back/blobs/sha256/$(basename "$f")" || fail "blob $(basename "$f") differs after the round trip"
done
tags=$(skopeo list-tags --tls-verify=false "docker://$A_HOSTPORT/e2e/skopeo")
grep -q '"multi"' <<<"$tags" && grep -q '"single"' <<<"$tags" || fail "list-tags: $tags"
log "skopeo round trip ok ($APPRD_TEST_STORAGE)"
