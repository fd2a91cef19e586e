#!/usr/bin/env bash
# The benchmark's load driver and report against a real apprd, so that the
# figures bench/run.sh prints come from requests that did what they claim:
# every seeded tag and repository is listed back through paginated walks, the
# small images are pullable with their bytes, pushed blobs read back, the load
# loop saw only 200s, and the report turns the raw lines into ratio tables.
source "$(dirname "$0")/../../scripts/lib.sh"
DRIVER=${APPRD_BENCH_BIN:-$ROOT_DIR/target/release/apprd-bench}
[ -x "$DRIVER" ] || (cd "$ROOT_DIR" && cargo build --release --locked -p apprd-bench)
setup_storage
start_apprd A
U=$A_URL
field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

# tags: 250 seeded, walked back 100 at a time through Link headers
"$DRIVER" seed-tags --url "$U" --repo bench/tags --tags 250 >/dev/null
out=$("$DRIVER" list --url "$U" --path /v2/bench/tags/tags/list --page 100 --expect 250)
[ "$(field "$out" entries)" = 250 ] && [ "$(field "$out" pages)" = 3 ] || fail "tag walk: $out"
[ "$(curl -sf "$U/v2/bench/tags/tags/list" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["tags"]))')" = 250 ] ||
  fail "tags/list does not hold the 250 seeded tags"
if "$DRIVER" list --url "$U" --path /v2/bench/tags/tags/list --page 100 --expect 251 2>/dev/null; then
  fail "the driver's --expect does not catch a short listing"
fi

# repositories: 120 created by cross-repo mounts, all in the catalog
"$DRIVER" seed-repos --url "$U" --prefix catalog --repos 120 >/dev/null
out=$("$DRIVER" list --url "$U" --path /v2/_catalog --page 50 --expect 120)
[ "$(field "$out" entries)" -ge 120 ] || fail "catalog walk: $out"
curl -sf -o /dev/null "$U/v2/catalog/r00119/manifests/latest" || fail "seeded repository r00119 has no manifest"

# small images: each tag's manifest and blobs are there with their digests
out=$("$DRIVER" small-images --url "$U" --repo bench/small --images 40 --concurrency 8)
[ "$(field "$out" images)" = 40 ] || fail "small images: $out"
tags=$(curl -sf "$U/v2/bench/small/tags/list" | python3 -c 'import json,sys; print(" ".join(json.load(sys.stdin)["tags"]))')
[ "$(wc -w <<<"$tags")" = 40 ] || fail "expected 40 small-image tags, got: $tags"
t=${tags%% *}
m=$(curl -sf -H 'Accept: application/vnd.oci.image.manifest.v1+json' "$U/v2/bench/small/manifests/$t")
for d in $(python3 -c 'import json,sys; m=json.loads(sys.argv[1]); print(" ".join(x["digest"] for x in [m["config"]] + m["layers"]))' "$m"); do
  [ "sha256:$(curl -sf "$U/v2/bench/small/blobs/$d" | sha256sum | cut -d' ' -f1)" = "$d" ] || fail "blob $d of $t differs"
done

# big-blob pushes, monolithic and in chunks, read back intact
head -c $((3 * 1048576 + 12345)) /dev/urandom >"$WORK/blob"
d=sha256:$(sha256sum "$WORK/blob" | cut -d' ' -f1)
"$DRIVER" push --url "$U" --repo bench/mono --file "$WORK/blob" --digest "$d" >/dev/null
"$DRIVER" push --url "$U" --repo bench/chunked --file "$WORK/blob" --digest "$d" --chunk-mib 1 >/dev/null
for r in mono chunked; do
  [ "sha256:$(curl -sf "$U/v2/bench/$r/blobs/$d" | sha256sum | cut -d' ' -f1)" = "$d" ] || fail "$r push read back differs"
done
if "$DRIVER" push --url "$U" --repo bench/bad --file "$WORK/blob" --digest "sha256:$(printf '0%.0s' {1..64})" 2>/dev/null; then
  fail "a push under the wrong digest was reported as a success"
fi

# manifest load: only 200s count, and a missing manifest fails the run
for method in GET HEAD; do
  out=$("$DRIVER" load --url "$U/v2/bench/tags/manifests/t00007" --method "$method" --concurrency 4 --seconds 0.3)
  [ "$(field "$out" requests)" -gt 0 ] || fail "load $method: $out"
done
if "$DRIVER" load --url "$U/v2/bench/tags/manifests/nope" --seconds 0.2 2>/dev/null; then
  fail "load counted a 404 as a success"
fi

# the report: medians, ratios and goals from raw lines
cat >"$WORK/raw.jsonl" <<'EOF'
{"storage":"filesystem","system":"apprd","row":"manifest GET by tag, c=1 (req/s)","value":900}
{"storage":"filesystem","system":"apprd","row":"manifest GET by tag, c=1 (req/s)","value":1000}
{"storage":"filesystem","system":"apprd","row":"manifest GET by tag, c=1 (req/s)","value":1100}
{"storage":"filesystem","system":"distribution","row":"manifest GET by tag, c=1 (req/s)","value":400}
{"storage":"filesystem","system":"apprd","row":"idle RSS (MiB)","value":30}
{"storage":"filesystem","system":"distribution","row":"idle RSS (MiB)","value":40}
{"storage":"filesystem","system":"apprd","row":"pull 100 MiB (MiB/s)","value":1500}
{"storage":"machine","system":"limit","row":"SHA-256, one core (MiB/s)","value":1000}
{"storage":"machine","system":"limit","row":"read, page cache (MiB/s)","value":8000}
{"storage":"machine","system":"limit","row":"loopback HTTP GET by sendfile (MiB/s)","value":2000}
{"storage":"filesystem","system":"apprd","row":"push 100 MiB monolithic (MiB/s)","value":300}
{"storage":"machine","system":"limit","row":"disk write + fdatasync (MiB/s)","value":400}
{"storage":"machine","system":"limit","row":"disk write, O_DIRECT + fdatasync (MiB/s)","value":600}
{"storage":"machine","system":"limit","row":"disk write + fdatasync, 100 MiB in the monolithic push's place (MiB/s)","value":500}
EOF
python3 "$ROOT_DIR/bench/report.py" "$WORK/raw.jsonl" --out "$WORK/results" >/dev/null
grep -q '| manifest GET by tag, c=1 (req/s) | 1,000 (900–1,100) | 400 | 2.50 | short |' "$WORK/results/filesystem.md" ||
  fail "report row wrong: $(grep 'manifest GET' "$WORK/results/filesystem.md")"
grep -q '| idle RSS (MiB) | 30.0 | 40.0 | 0.75 | short |' "$WORK/results/filesystem.md" ||
  fail "report RSS row wrong: $(grep 'idle RSS' "$WORK/results/filesystem.md")"
# a pull is set against the slower of the disk read and loopback TCP
grep -q '| min(page-cache read, loopback sendfile) | 2,000 MiB/s | pull 100 MiB (MiB/s) | 1,500 | 0.75 |' "$WORK/results/filesystem.md" ||
  fail "report pull limit wrong: $(grep 'pull 100' "$WORK/results/filesystem.md")"
# a push is set against the faster of the two disk writes (and SHA-256)
grep -q '| min(SHA-256, disk write) | 600 MiB/s | push 100 MiB monolithic (MiB/s) | 300 | 0.50 |' "$WORK/results/filesystem.md" ||
  fail "report push limit wrong: $(grep 'push 100' "$WORK/results/filesystem.md")"
# and, on one core, against SHA-256 then the plain write made in its own place
grep -q "| SHA-256 then disk write in the push's place, one core | 333 MiB/s | push 100 MiB monolithic (MiB/s) | 300 | 0.90 |" "$WORK/results/filesystem.md" ||
  fail "report in-place push limit wrong: $(grep 'push 100' "$WORK/results/filesystem.md")"
# a partial run completed from an earlier one: its own rows win, the rest are marked
cat >"$WORK/partial.jsonl" <<'EOF'
{"storage":"filesystem","system":"apprd","row":"idle RSS (MiB)","value":10}
{"storage":"filesystem","system":"distribution","row":"idle RSS (MiB)","value":40}
EOF
python3 "$ROOT_DIR/bench/report.py" "$WORK/partial.jsonl" --out "$WORK/merged" \
  --earlier "$WORK/raw.jsonl" --earlier-apprd "abc1234" >/dev/null
grep -q '| idle RSS (MiB) | 10.0 | 40.0 | 0.25 | met |' "$WORK/merged/filesystem.md" ||
  fail "merged RSS row wrong: $(grep 'idle RSS' "$WORK/merged/filesystem.md")"
grep -q '| manifest GET by tag, c=1 (req/s) † | 1,000 (900–1,100) | 400 | 2.50 | short |' "$WORK/merged/filesystem.md" ||
  fail "earlier row not kept and marked: $(grep 'manifest GET' "$WORK/merged/filesystem.md")"
grep -q 'Rows marked † .*(abc1234)' "$WORK/merged/filesystem.md" || fail "merged report does not name the earlier run"
log "bench driver and report ok ($APPRD_TEST_STORAGE)"
