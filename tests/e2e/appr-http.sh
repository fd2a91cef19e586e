#!/usr/bin/env bash
# backends: s3
# tests/appr_http.rs (every APPR route and error case, exact bodies) again on
# the S3 backend: each test starts apprd on a fresh bucket of the S3 server.
# On the filesystem backend it runs as part of `cargo test`.
source "$(dirname "$0")/../../scripts/lib.sh"
setup_storage
cd "$ROOT_DIR"
APPRD_TEST_STORAGE=s3 cargo test --release --locked --test appr_http -- --test-threads 2
log "APPR HTTP tests ok (s3)"
