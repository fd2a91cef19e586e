//! The `/v2` API against the real binary: bad input gets the spec's error code
//! and status, and never changes what is stored.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

struct Apprd {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Apprd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn apprd(extra: &[&str]) -> Apprd {
    let dir = tempfile::tempdir().unwrap();
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_apprd"))
        .args([
            "serve",
            "--listen",
            &addr.to_string(),
            "--storage",
            "filesystem",
            "--root",
        ])
        .arg(dir.path())
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let a = Apprd {
        child,
        base: format!("http://{addr}"),
        _dir: dir,
    };
    for _ in 0..200 {
        if reqwest::get(format!("{}/v2/", a.base)).await.is_ok() {
            return a;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("apprd did not start");
}

fn sha(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

struct Reply {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn code(&self) -> String {
        let v: Value = serde_json::from_slice(&self.body).unwrap_or(Value::Null);
        v["errors"][0]["code"].as_str().unwrap_or("").to_string()
    }
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

async fn call(
    a: &Apprd,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Reply {
    let url = if path.starts_with("http") {
        path.to_string()
    } else {
        format!("{}{}", a.base, path)
    };
    let mut req = Client::new().request(method, url).body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = req.send().await.unwrap();
    Reply {
        status: res.status(),
        headers: res.headers().clone(),
        body: res.bytes().await.unwrap().to_vec(),
    }
}

/// PATCH a chunk with its `Content-Range` to an upload's location.
async fn patch(a: &Apprd, loc: &str, range: &str, body: &[u8]) -> Reply {
    call(
        a,
        Method::PATCH,
        loc,
        &[("Content-Range", range)],
        body.to_vec(),
    )
    .await
}

async fn push_blob(a: &Apprd, repo: &str, data: &[u8]) -> String {
    let d = sha(data);
    let r = call(
        a,
        Method::POST,
        &format!("/v2/{repo}/blobs/uploads/?digest={d}"),
        &[],
        data.to_vec(),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    d
}

fn image_manifest(config: &str, layer: &str, layer_size: usize) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": layer_size}],
    }))
    .unwrap()
}

/// The `/v2` scope: the base answers with and without its slash, an
/// unknown path under it gets an OCI error, and a path that only starts with
/// the letters `/v2` is not the OCI API.
#[tokio::test]
async fn the_v2_scope() {
    let a = apprd(&[]).await;
    for path in ["/v2", "/v2/"] {
        for method in [Method::GET, Method::HEAD] {
            let r = call(&a, method.clone(), path, &[], vec![]).await;
            assert_eq!(r.status, StatusCode::OK, "{method} {path}");
        }
    }
    assert_eq!(call(&a, Method::GET, "/v2/", &[], vec![]).await.body, b"{}");
    let r = call(&a, Method::GET, "/v2/a/b/nothing/here", &[], vec![]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(
        r.code() != "",
        "an OCI error body: {:?}",
        String::from_utf8_lossy(&r.body)
    );
    let r = call(&a, Method::GET, "/v2x/a/tags/list", &[], vec![]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        r.code(),
        "",
        "not an OCI error: {:?}",
        String::from_utf8_lossy(&r.body)
    );
}

#[tokio::test]
async fn bad_names_and_references() {
    let a = apprd(&[]).await;
    let long = format!("/v2/{}/tags/list", "a".repeat(256));
    for path in [
        "/v2/Upper/tags/list",
        "/v2/a/../b/tags/list",
        "/v2/a//b/tags/list",
        "/v2/-a/tags/list",
        long.as_str(),
    ] {
        let r = call(&a, Method::GET, path, &[], vec![]).await;
        assert!(
            r.status == StatusCode::BAD_REQUEST && r.code() == "NAME_INVALID"
                || r.status == StatusCode::NOT_FOUND,
            "{path}: {} {}",
            r.status,
            r.code()
        );
    }
    let r = call(&a, Method::GET, "/v2/Upper/manifests/v1", &[], vec![]).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, "NAME_INVALID")
    );
    let r = call(&a, Method::GET, "/v2/never/pushed/tags/list", &[], vec![]).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::NOT_FOUND, "NAME_UNKNOWN")
    );
    let r = call(&a, Method::HEAD, "/v2/x/manifests/.INVALID", &[], vec![]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = call(
        &a,
        Method::GET,
        "/v2/x/manifests/sha256:totallywrong",
        &[],
        vec![],
    )
    .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, "DIGEST_INVALID")
    );
    let r = call(
        &a,
        Method::PUT,
        "/v2/x/manifests/sha256:baddigeststring",
        &[],
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = call(
        &a,
        Method::GET,
        "/v2/x/blobs/md5:d41d8cd98f00b204e9800998ecf8427e",
        &[],
        vec![],
    )
    .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, "UNSUPPORTED")
    );
    let r = call(&a, Method::GET, "/v2/x/referrers/nonsense", &[], vec![]).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, "DIGEST_INVALID")
    );
}

#[tokio::test]
async fn digest_mismatch_stores_nothing() {
    let a = apprd(&[]).await;
    let wrong = sha(b"something else");
    let r = call(
        &a,
        Method::POST,
        &format!("/v2/r/blobs/uploads/?digest={wrong}"),
        &[],
        b"hello".to_vec(),
    )
    .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, "DIGEST_INVALID")
    );
    for d in [wrong, sha(b"hello")] {
        let r = call(&a, Method::HEAD, &format!("/v2/r/blobs/{d}"), &[], vec![]).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{d} must not be visible");
    }
    // A session closed with the wrong digest is gone afterwards.
    let r = call(&a, Method::POST, "/v2/r/blobs/uploads/", &[], vec![]).await;
    let loc = r.header("location").to_string();
    call(&a, Method::PATCH, &loc, &[], b"abc".to_vec()).await;
    let r = call(
        &a,
        Method::PUT,
        &format!("{loc}?digest={}", sha(b"abd")),
        &[],
        vec![],
    )
    .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, "DIGEST_INVALID")
    );
    let r = call(&a, Method::GET, &loc, &[], vec![]).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN")
    );
    let r = call(
        &a,
        Method::PUT,
        &format!("{loc}?digest=sha256:nothex"),
        &[],
        vec![],
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn chunks_out_of_order_keep_the_session() {
    let a = apprd(&[]).await;
    let r = call(&a, Method::POST, "/v2/r/blobs/uploads/", &[], vec![]).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let loc = r.header("location").to_string();
    let r = patch(&a, &loc, "3-5", b"def").await;
    assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE);
    let r = patch(&a, &loc, "0-2", b"abc").await;
    assert_eq!((r.status, r.header("range")), (StatusCode::ACCEPTED, "0-2"));
    // overlapping and malformed ranges
    let r = patch(&a, &loc, "1-3", b"bcd").await;
    assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(r.header("range"), "0-2");
    let r = patch(&a, &loc, "x-y", b"d").await;
    assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE);
    // a range that lies about its length is refused and not kept
    let r = patch(&a, &loc, "3-9", b"de").await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID")
    );
    let r = call(&a, Method::GET, &loc, &[], vec![]).await;
    assert_eq!(
        (r.status, r.header("range")),
        (StatusCode::NO_CONTENT, "0-2")
    );
    // the last chunk inside the closing PUT
    let d = sha(b"abcdef");
    let r = call(
        &a,
        Method::PUT,
        &format!("{loc}?digest={d}"),
        &[("Content-Range", "3-5")],
        b"def".to_vec(),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = call(&a, Method::GET, &format!("/v2/r/blobs/{d}"), &[], vec![]).await;
    assert_eq!(r.body, b"abcdef");
    let r = call(
        &a,
        Method::GET,
        "/v2/r/blobs/uploads/00000000-0000-0000-0000-000000000000",
        &[],
        vec![],
    )
    .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN")
    );
    let r = call(
        &a,
        Method::PATCH,
        "/v2/r/blobs/uploads/not-a-uuid",
        &[],
        b"x".to_vec(),
    )
    .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN")
    );
}

#[tokio::test]
async fn ranges_and_sha512() {
    let a = apprd(&[]).await;
    let data: Vec<u8> = (0..2048u32).map(|i| (i % 256) as u8).collect();
    let d = push_blob(&a, "r", &data).await;
    let r = call(
        &a,
        Method::GET,
        &format!("/v2/r/blobs/{d}"),
        &[("Range", "bytes=2000-5000")],
        vec![],
    )
    .await;
    assert_eq!(
        (r.status, r.header("content-range")),
        (StatusCode::PARTIAL_CONTENT, "bytes 2000-2047/2048")
    );
    assert_eq!(r.body, &data[2000..]);
    let r = call(
        &a,
        Method::GET,
        &format!("/v2/r/blobs/{d}"),
        &[("Range", "bytes=5000-10000")],
        vec![],
    )
    .await;
    assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE);
    // sha512 named only at the end
    let d512 = format!("sha512:{}", hex::encode(sha2::Sha512::digest(&data)));
    let loc = call(&a, Method::POST, "/v2/r/blobs/uploads/", &[], vec![])
        .await
        .header("location")
        .to_string();
    call(&a, Method::PATCH, &loc, &[], data.clone()).await;
    let r = call(
        &a,
        Method::PUT,
        &format!("{loc}?digest={d512}"),
        &[],
        vec![],
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = call(
        &a,
        Method::HEAD,
        &format!("/v2/r/blobs/{d512}"),
        &[],
        vec![],
    )
    .await;
    assert_eq!(
        (r.status, r.header("content-length")),
        (StatusCode::OK, "2048")
    );
}

#[tokio::test]
async fn bad_manifests_change_nothing() {
    let a = apprd(&[]).await;
    let cfg = push_blob(&a, "m", b"{}").await;
    let layer = push_blob(&a, "m", b"layer").await;
    let good = image_manifest(&cfg, &layer, 5);
    let ct = [("Content-Type", "application/vnd.oci.image.manifest.v1+json")];
    let r = call(&a, Method::PUT, "/v2/m/manifests/v1", &ct, good.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let good_digest = sha(&good);

    let missing = image_manifest(&cfg, &sha(b"never pushed"), 12);
    let cases: Vec<(Vec<u8>, StatusCode, &str)> = vec![
        (
            b"not json".to_vec(),
            StatusCode::BAD_REQUEST,
            "MANIFEST_INVALID",
        ),
        (
            b"[1,2]".to_vec(),
            StatusCode::BAD_REQUEST,
            "MANIFEST_INVALID",
        ),
        (
            br#"{"schemaVersion":1}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "MANIFEST_INVALID",
        ),
        (
            br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#
                .to_vec(),
            StatusCode::BAD_REQUEST,
            "MANIFEST_INVALID",
        ),
        (missing, StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN"),
    ];
    for (body, status, code) in cases {
        let r = call(&a, Method::PUT, "/v2/m/manifests/v1", &ct, body.clone()).await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (status, code),
            "{}",
            String::from_utf8_lossy(&body)
        );
    }
    // mediaType that contradicts Content-Type
    let r = call(
        &a,
        Method::PUT,
        "/v2/m/manifests/v1",
        &[("Content-Type", "application/vnd.oci.image.index.v1+json")],
        good.clone(),
    )
    .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, "MANIFEST_INVALID")
    );
    // pushed by a digest it does not have
    let r = call(
        &a,
        Method::PUT,
        &format!("/v2/m/manifests/{}", sha(b"x")),
        &ct,
        good.clone(),
    )
    .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, "DIGEST_INVALID")
    );
    // the tag still names the good manifest, byte for byte
    let r = call(&a, Method::GET, "/v2/m/manifests/v1", &[], vec![]).await;
    assert_eq!(
        (r.status, r.header("docker-content-digest")),
        (StatusCode::OK, good_digest.as_str())
    );
    assert_eq!(r.body, good);
}

#[tokio::test]
async fn manifest_size_limit_applies_to_chunked_bodies() {
    let a = apprd(&[]).await;
    let cfg = push_blob(&a, "big", b"{}").await;
    let pad = "x".repeat(5 * 1024 * 1024);
    let body = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg, "size": 2},
        "layers": [], "annotations": {"pad": pad},
    }))
    .unwrap();
    // a stream has no Content-Length: the limit must hold while reading
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        body.chunks(65536).map(|c| Ok(c.to_vec())).collect();
    let res = Client::new()
        .put(format!("{}/v2/big/manifests/v1", a.base))
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await;
    if let Ok(res) = res {
        assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }
    let r = call(&a, Method::GET, "/v2/big/manifests/v1", &[], vec![]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn tags_catalog_referrers_and_deletes() {
    let a = apprd(&[]).await;
    let cfg = push_blob(&a, "t/repo", b"{}").await;
    let layer = push_blob(&a, "t/repo", b"layer").await;
    let m = image_manifest(&cfg, &layer, 5);
    let ct = [("Content-Type", "application/vnd.oci.image.manifest.v1+json")];
    for t in ["b", "a", "c", "d"] {
        assert_eq!(
            call(
                &a,
                Method::PUT,
                &format!("/v2/t/repo/manifests/{t}"),
                &ct,
                m.clone()
            )
            .await
            .status,
            StatusCode::CREATED
        );
    }
    let r = call(&a, Method::GET, "/v2/t/repo/tags/list?n=2", &[], vec![]).await;
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["tags"], json!(["a", "b"]));
    assert_eq!(
        r.header("link"),
        "</v2/t/repo/tags/list?n=2&last=b>; rel=\"next\""
    );
    let r = call(
        &a,
        Method::GET,
        "/v2/t/repo/tags/list?n=2&last=b",
        &[],
        vec![],
    )
    .await;
    assert_eq!(
        serde_json::from_slice::<Value>(&r.body).unwrap()["tags"],
        json!(["c", "d"])
    );
    let r = call(&a, Method::GET, "/v2/t/repo/tags/list?n=0", &[], vec![]).await;
    assert_eq!(
        (
            serde_json::from_slice::<Value>(&r.body).unwrap()["tags"].clone(),
            r.header("link")
        ),
        (json!([]), "")
    );
    let r = call(&a, Method::GET, "/v2/_catalog", &[], vec![]).await;
    assert_eq!(
        serde_json::from_slice::<Value>(&r.body).unwrap()["repositories"],
        json!(["t/repo"])
    );

    // a referrer with ?tag=, artifactType filtering
    let subject = sha(&m);
    let referrer = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.example.sbom",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": cfg, "size": 2},
        "layers": [], "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": subject, "size": m.len()},
        "annotations": {"k": "v"},
    }))
    .unwrap();
    let rd = sha(&referrer);
    let r = call(
        &a,
        Method::PUT,
        &format!("/v2/t/repo/manifests/{rd}?tag=sbom1&tag=sbom2"),
        &ct,
        referrer,
    )
    .await;
    assert_eq!(
        (r.status, r.header("oci-subject")),
        (StatusCode::CREATED, subject.as_str())
    );
    assert_eq!(r.headers.get_all("oci-tag").iter().count(), 2);
    let r = call(
        &a,
        Method::GET,
        &format!("/v2/t/repo/referrers/{subject}?artifactType=application/vnd.example.sbom"),
        &[],
        vec![],
    )
    .await;
    assert_eq!(r.header("oci-filters-applied"), "artifactType");
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["manifests"][0]["digest"], json!(rd));
    assert_eq!(v["manifests"][0]["annotations"], json!({"k": "v"}));
    let r = call(
        &a,
        Method::GET,
        &format!("/v2/t/repo/referrers/{subject}?artifactType=other"),
        &[],
        vec![],
    )
    .await;
    assert_eq!(
        serde_json::from_slice::<Value>(&r.body).unwrap()["manifests"],
        json!([])
    );

    // deleting the referrer removes it from the index and its tags
    assert_eq!(
        call(
            &a,
            Method::DELETE,
            &format!("/v2/t/repo/manifests/{rd}"),
            &[],
            vec![]
        )
        .await
        .status,
        StatusCode::ACCEPTED
    );
    let r = call(
        &a,
        Method::GET,
        &format!("/v2/t/repo/referrers/{subject}"),
        &[],
        vec![],
    )
    .await;
    assert_eq!(
        serde_json::from_slice::<Value>(&r.body).unwrap()["manifests"],
        json!([])
    );
    assert_eq!(
        call(&a, Method::GET, "/v2/t/repo/manifests/sbom1", &[], vec![])
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // tag delete, then manifest delete, then blob delete
    assert_eq!(
        call(&a, Method::DELETE, "/v2/t/repo/manifests/a", &[], vec![])
            .await
            .status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        call(&a, Method::DELETE, "/v2/t/repo/manifests/a", &[], vec![])
            .await
            .code(),
        "MANIFEST_UNKNOWN"
    );
    assert_eq!(
        call(&a, Method::GET, "/v2/t/repo/manifests/b", &[], vec![])
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        call(
            &a,
            Method::DELETE,
            &format!("/v2/t/repo/manifests/{subject}"),
            &[],
            vec![]
        )
        .await
        .status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        call(&a, Method::GET, "/v2/t/repo/manifests/b", &[], vec![])
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        call(
            &a,
            Method::DELETE,
            &format!("/v2/t/repo/blobs/{layer}"),
            &[],
            vec![]
        )
        .await
        .status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        call(
            &a,
            Method::GET,
            &format!("/v2/t/repo/blobs/{layer}"),
            &[],
            vec![]
        )
        .await
        .code(),
        "BLOB_UNKNOWN"
    );
}

#[tokio::test]
async fn mounts() {
    let a = apprd(&[]).await;
    let d = push_blob(&a, "src", b"shared").await;
    let r = call(
        &a,
        Method::POST,
        &format!("/v2/dst/blobs/uploads/?mount={d}&from=src"),
        &[],
        vec![],
    )
    .await;
    assert_eq!(
        (r.status, r.header("location")),
        (StatusCode::CREATED, format!("/v2/dst/blobs/{d}").as_str())
    );
    let r = call(
        &a,
        Method::POST,
        &format!("/v2/dst2/blobs/uploads/?mount={d}"),
        &[],
        vec![],
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    // missing from the source repository: a fresh upload session instead
    let r = call(
        &a,
        Method::POST,
        &format!("/v2/dst3/blobs/uploads/?mount={d}&from=elsewhere"),
        &[],
        vec![],
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert!(r.header("location").starts_with("/v2/dst3/blobs/uploads/"));
    assert_eq!(
        call(
            &a,
            Method::HEAD,
            &format!("/v2/dst3/blobs/{d}"),
            &[],
            vec![]
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
}
