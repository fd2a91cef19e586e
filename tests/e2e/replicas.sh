#!/usr/bin/env bash
# backends: s3
# Two apprd replicas on one bucket, no other shared state: push through A and
# pull through B; a chunked upload begun on A and finished on B (across
# multipart parts); 2 x 20 concurrent updates of one tag through A and B end
# with one consistent winner whose blobs all exist. A third replica with
# --s3-redirect answers blob GETs with presigned URLs.
source "$(dirname "$0")/../../scripts/lib.sh"
setup_storage
part=5242880
start_apprd A --s3-part-size "$part"
start_apprd B --s3-part-size "$part"
cd "$WORK"
repo=replicas/app

sha() { sha256sum "$1" | cut -d' ' -f1; }

push_blob() { # URL FILE -> prints the digest
  local d; d=sha256:$(sha "$2")
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/octet-stream' \
    --data-binary @"$2" "$1/v2/$repo/blobs/uploads/?digest=$d")
  [ "$code" = 201 ] || fail "push of $2 through $1 answered $code"
  echo "$d"
}

manifest() { # CONFIG_DIGEST CONFIG_SIZE LAYER_DIGEST LAYER_SIZE
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%s}]}' "$@"
}

put_manifest() { # URL REF FILE -> prints the HTTP code
  curl -s -o /dev/null -w '%{http_code}' -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
    --data-binary @"$3" "$1/v2/$repo/manifests/$2"
}

log "push through A, pull through B"
head -c 3000000 /dev/urandom > layer
echo '{"architecture":"amd64","os":"linux"}' > config
ld=$(push_blob "$A_URL" layer)
cd_=$(push_blob "$A_URL" config)
manifest "$cd_" "$(stat -c %s config)" "$ld" "$(stat -c %s layer)" > m0
[ "$(put_manifest "$A_URL" v1 m0)" = 201 ] || fail "manifest push through A"
curl -sf "$B_URL/v2/$repo/manifests/v1" -o m0.back || fail "B cannot read the tag pushed through A"
cmp -s m0 m0.back || fail "B serves other manifest bytes"
curl -sf "$B_URL/v2/$repo/blobs/$ld" -o layer.back || fail "B cannot read the layer"
cmp -s layer layer.back || fail "B serves other layer bytes"

log "a replica with --s3-redirect sends blob GETs to presigned URLs"
start_apprd C --s3-redirect true
r=$(curl -s -o /dev/null -w '%{http_code} %{redirect_url}' "$C_URL/v2/$repo/blobs/$ld")
case $r in "307 $AWS_ENDPOINT_URL/"*X-Amz-Signature=*) ;; *) fail "redirect: $r" ;; esac
curl -sfL "$C_URL/v2/$repo/blobs/$ld" -o layer.redirected || fail "the presigned URL does not serve the layer"
cmp -s layer layer.redirected || fail "the presigned URL serves other bytes"
r=$(curl -s -o /dev/null -w '%{http_code}' -I "$C_URL/v2/$repo/blobs/$ld")
[ "$r" = 200 ] || fail "HEAD through the redirecting replica: $r"

log "chunked upload: begun on A, continued on B and A, closed on B"
head -c $((12 * 1024 * 1024)) /dev/urandom > big
big_d=sha256:$(sha big)
split -b $((6 * 1024 * 1024)) big part.   # part.aa (6 MiB), part.ab (6 MiB)
split -b $((3 * 1024 * 1024)) part.ab sub.  # sub.aa, sub.ab (3 MiB each)
loc=$(curl -s -o /dev/null -w '%header{location}' -X POST "$A_URL/v2/$repo/blobs/uploads/")
[ -n "$loc" ] || fail "no upload location from A"
patch() { # URL FILE START
  local end=$(( $3 + $(stat -c %s "$2") - 1 ))
  curl -s -o /dev/null -w '%{http_code} %header{range}' -X PATCH -H 'Content-Type: application/octet-stream' \
    -H "Content-Range: $3-$end" --data-binary @"$2" "$1$loc"
}
r=$(patch "$A_URL" part.aa 0); [ "$r" = "202 0-6291455" ] || fail "PATCH 1 on A: $r"
r=$(patch "$B_URL" sub.aa 6291456); [ "$r" = "202 0-9437183" ] || fail "PATCH 2 on B: $r"
r=$(curl -s -o /dev/null -w '%{http_code} %header{range}' "$A_URL$loc"); [ "$r" = "204 0-9437183" ] || fail "status on A: $r"
r=$(patch "$A_URL" sub.ab 9437184); [ "$r" = "202 0-12582911" ] || fail "PATCH 3 on A: $r"
case $loc in *\?*) sep='&' ;; *) sep='?' ;; esac
code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT "$B_URL$loc${sep}digest=$big_d")
[ "$code" = 201 ] || fail "closing the upload on B answered $code"
curl -sf "$A_URL/v2/$repo/blobs/$big_d" -o big.back || fail "A cannot read the blob closed on B"
cmp -s big big.back || fail "the blob uploaded across replicas is corrupt"

log "2 x 20 concurrent updates of one tag through A and B"
declare -a digests
for i in $(seq 1 40); do
  printf '{"architecture":"amd64","os":"linux","history":[{"comment":"%s"}]}' "$i" > "config.$i"
  if [ $((i % 2)) = 0 ]; then url=$A_URL; else url=$B_URL; fi
  cdi=$(push_blob "$url" "config.$i")
  manifest "$cdi" "$(stat -c %s "config.$i")" "$ld" "$(stat -c %s layer)" > "m.$i"
  digests[$i]=sha256:$(sha "m.$i")
done
jobs_=()
for i in $(seq 1 40); do
  if [ $((i % 2)) = 0 ]; then url=$A_URL; else url=$B_URL; fi
  put_manifest "$url" latest "m.$i" > "code.$i" &
  jobs_+=($!)
done
wait "${jobs_[@]}"
for i in $(seq 1 40); do
  [ "$(cat "code.$i")" = 201 ] || fail "tag update $i answered $(cat "code.$i")"
done
winner=""
for url in "$A_URL" "$B_URL"; do
  curl -sf -D h -o latest "$url/v2/$repo/manifests/latest" || fail "tag does not resolve on $url"
  d=sha256:$(sha latest)
  grep -qi "^docker-content-digest: $d" h || fail "torn tag on $url: header and body disagree"
  [ -z "$winner" ] || [ "$winner" = "$d" ] || fail "replicas disagree on the tag: $winner vs $d"
  winner=$d
done
grep -qx "$winner" < <(printf '%s\n' "${digests[@]}") || fail "the tag points at a manifest nobody pushed"
for blob in $(grep -o 'sha256:[0-9a-f]\{64\}' latest); do
  for url in "$A_URL" "$B_URL"; do
    code=$(curl -s -o /dev/null -w '%{http_code}' -I "$url/v2/$repo/blobs/$blob")
    [ "$code" = 200 ] || fail "blob $blob of the winning manifest answers $code on $url"
  done
done
for i in $(seq 1 40); do
  code=$(curl -s -o /dev/null -w '%{http_code}' "$A_URL/v2/$repo/manifests/${digests[$i]}")
  [ "$code" = 200 ] || fail "manifest $i lost ($code)"
done
[ "$(curl -s "$B_URL/v2/$repo/tags/list" | python3 -c 'import json,sys; print(sorted(json.load(sys.stdin)["tags"]))')" = "['latest', 'v1']" ] ||
  fail "tag list is not [latest, v1]"
log "replicas test ok (winner $winner)"
