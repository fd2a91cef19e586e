//! The APPR API over HTTP against the real binary: every route and every
//! error case of the reference, with exact bodies, and the OCI view of the
//! same packages.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use reqwest::{Client, Method, Response, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

struct Server {
    child: Child,
    url: String,
    dir: tempfile::TempDir,
    http: Client,
    /// `<endpoint>/<bucket>` when running on S3.
    bucket: Option<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// apprd on a temp folder, or on a fresh bucket of the S3 server at
    /// `AWS_ENDPOINT_URL` when `APPRD_TEST_STORAGE=s3` (tests/e2e/appr-http.sh).
    async fn start() -> Server {
        Self::start_with(&[]).await
    }

    async fn start_with(extra: &[&str]) -> Server {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let http = Client::builder().no_proxy().build().unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_apprd"));
        cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(extra);
        let bucket = if std::env::var("APPRD_TEST_STORAGE").as_deref() == Ok("s3") {
            let endpoint = std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL for s3");
            let bucket = format!("appr-http-{}", uuid::Uuid::new_v4().simple());
            let res = http
                .put(format!("{endpoint}/{bucket}"))
                .send()
                .await
                .unwrap();
            assert!(res.status().is_success(), "cannot create bucket {bucket}");
            cmd.args([
                "--storage",
                "s3",
                "--s3-path-style",
                "true",
                "--s3-bucket",
                &bucket,
            ]);
            Some(format!("{endpoint}/{bucket}"))
        } else {
            cmd.args(["--storage", "filesystem", "--root"])
                .arg(dir.path().join("data"));
            None
        };
        let mut child = cmd
            .env("APPRD_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        for _ in 0..200 {
            if http.get(format!("{url}/v2/")).send().await.is_ok() {
                return Server {
                    child,
                    url,
                    dir,
                    http,
                    bucket,
                };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("apprd did not start");
    }

    /// Every object apprd stored (health probes aside), to prove that a
    /// rejected request stored nothing.
    async fn stored(&self) -> Vec<String> {
        let mut keys = match &self.bucket {
            None => {
                let root = self.dir.path().join("data");
                files(&root)
                    .iter()
                    .map(|p| {
                        p.strip_prefix(&root)
                            .unwrap()
                            .to_string_lossy()
                            .into_owned()
                    })
                    .collect()
            }
            Some(bucket) => {
                let xml = self
                    .http
                    .get(format!("{bucket}?list-type=2"))
                    .send()
                    .await
                    .unwrap();
                let xml = xml.text().await.unwrap();
                xml.split("<Key>")
                    .skip(1)
                    .filter_map(|k| k.split_once("</Key>").map(|(k, _)| k.to_string()))
                    .collect::<Vec<_>>()
            }
        };
        keys.retain(|k| !k.starts_with("_health"));
        keys.sort();
        keys
    }

    async fn req(&self, method: Method, path: &str, body: Option<Value>) -> Response {
        let mut r = self.http.request(method, format!("{}{path}", self.url));
        if let Some(b) = body {
            r = r
                .header("Content-Type", "application/json")
                .body(b.to_string());
        }
        r.send().await.unwrap()
    }

    async fn json(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let res = self.req(method, path, body).await;
        let status = res.status();
        let bytes = res.bytes().await.unwrap();
        let v = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| panic!("{path}: not JSON: {}", String::from_utf8_lossy(&bytes)));
        (status, v)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.json(Method::GET, path, None).await
    }

    async fn push(
        &self,
        pkg: &str,
        release: &str,
        mt: &str,
        blob: &[u8],
        force: bool,
    ) -> (StatusCode, Value) {
        let body = json!({
            "blob": b64(blob), "release": release, "media_type": mt,
            "metadata": {"maintainers": [{"name": "T"}]},
            "name": "x", "package": pkg,
        });
        let path = format!("/cnr/api/v1/packages/{pkg}?force={force}");
        self.json(Method::POST, &path, Some(body)).await
    }
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// A chart-like .tar.gz; `tag` makes the content differ.
fn chart(name: &str, version: &str, tag: &str) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let files = [
        (
            format!("{name}/Chart.yaml"),
            format!("apiVersion: v2\nname: {name}\nversion: {version}\n"),
        ),
        (format!("{name}/values.yaml"), format!("tag: {tag}\n")),
    ];
    for (path, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, path, data.as_bytes()).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

fn appr_digest(targz: &[u8]) -> String {
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(targz), &mut raw).unwrap();
    hex::encode(Sha256::digest(raw))
}

/// Files under a folder, recursively (to prove that nothing was stored).
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files(&p));
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

const P: &str = "/cnr/api/v1/packages";

#[tokio::test]
async fn info_routes_cors_and_unknown_paths() {
    let s = Server::start().await;
    let res = s.req(Method::GET, "/cnr/version", None).await;
    assert_eq!(res.headers()["access-control-allow-origin"], "*");
    assert_eq!(res.headers()["content-type"], "application/json");
    assert_eq!(res.json_value().await, json!({"appr-api": "0.7.4"}));
    assert_eq!(
        s.req(Method::GET, "/cnr/version/", None).await.status(),
        404
    );
    assert_eq!(s.req(Method::GET, "/version", None).await.status(), 404);
    let (st, v) = s.get("/cnr/test_error").await;
    assert_eq!(st, 400);
    assert_eq!(
        v,
        json!({"code": "invalid-usage", "details": {"path": "/cnr/test_error"}, "message": "error message"})
    );
    let (st, v) = s.get("/cnr/routes").await;
    assert_eq!(st, 200);
    assert_eq!(v["routes"].as_array().unwrap().len(), 20);
    let res = s.req(Method::GET, "/cnr/", None).await;
    assert!(res.text().await.unwrap().contains("appr-package"));

    // CORS preflight, HEAD on GETs, 405 with Allow.
    let res = s
        .http
        .request(Method::OPTIONS, format!("{}{P}/a/b", s.url))
        .header("Origin", "http://example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        "http://example.com"
    );
    assert_eq!(res.headers()["allow"], "GET, HEAD, OPTIONS, POST");
    assert_eq!(res.headers()["vary"], "Origin");
    let res = s.req(Method::HEAD, "/cnr/version", None).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-length"], "20");
    assert!(res.bytes().await.unwrap().is_empty());
    let res = s
        .req(Method::POST, &format!("{P}/a/b/channels/beta"), None)
        .await;
    assert_eq!(res.status(), 405);
    assert_eq!(res.headers()["allow"], "DELETE, GET, HEAD, OPTIONS");
    assert_eq!(res.headers()["access-control-allow-origin"], "*");
    let (st, v) = s.get(&format!("{P}/a")).await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not-found"))
    );

    // Both prefixes and trailing slashes; an empty registry.
    for path in [
        P,
        "/cnr/api/v1/packages/",
        "/api/v1/packages",
        "/api/v1/packages/",
    ] {
        assert_eq!(s.get(path).await, (StatusCode::OK, json!([])), "{path}");
    }
    assert_eq!(
        s.get(&format!("{P}/search?q=x")).await,
        (StatusCode::OK, json!([]))
    );
}

trait JsonValue {
    async fn json_value(self) -> Value;
}

impl JsonValue for Response {
    async fn json_value(self) -> Value {
        serde_json::from_slice(&self.bytes().await.unwrap()).unwrap()
    }
}

#[tokio::test]
async fn bad_pushes_are_400_or_422_and_store_nothing() {
    let s = Server::start().await;
    let good = b64(&chart("mychart", "1.0.0", "a"));
    let path = format!("{P}/myns/mychart?force=false");
    let cases = [
        (
            json!({"blob": good}),
            400,
            json!({"code": "invalid-usage", "details": {"field": "release"}, "message": "push needs a 'release' field"}),
        ),
        (
            json!({"release": "1.0.0"}),
            400,
            json!({"code": "invalid-usage", "details": {"field": "blob"}, "message": "push needs a 'blob' field"}),
        ),
        (
            json!({"blob": good, "release": "abc"}),
            422,
            json!({"code": "invalid-release", "details": {"version": "abc"}, "message": "Invalid version string: u'abc'"}),
        ),
        (
            json!({"blob": good, "release": "01.0.0"}),
            422,
            json!({"code": "invalid-release", "details": {"version": "01.0.0"}, "message": "Invalid leading zero in major: u'01.0.0'"}),
        ),
    ];
    for (body, status, want) in cases {
        let (st, v) = s.json(Method::POST, &path, Some(body)).await;
        assert_eq!((st.as_u16(), v), (status, want));
    }
    for blob in [
        "not base64!".to_string(),
        b64(b"plain text, not gzip"),
        b64(&{
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            gz.write_all(&[1u8; 4096]).unwrap();
            gz.finish().unwrap()
        }),
        good[..good.len() - 8].to_string(),
    ] {
        let (st, v) = s
            .json(
                Method::POST,
                &path,
                Some(json!({"blob": blob, "release": "1.0.0", "media_type": "helm"})),
            )
            .await;
        assert_eq!(
            (st, v["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid-usage")),
            "{v}"
        );
    }
    let (st, v) = s
        .json(
            Method::POST,
            &path,
            Some(json!({"blob": good, "release": "1.0.0", "media_type": "a/b"})),
        )
        .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid-parameters"))
    );
    let long = format!("1.0.0-{}", "a".repeat(130));
    let (st, v) = s
        .json(
            Method::POST,
            &path,
            Some(json!({"blob": good, "release": long})),
        )
        .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid-release"))
    );
    // A body that is not JSON at all is ignored, so the fields are missing.
    let res = s
        .http
        .post(format!("{}{path}", s.url))
        .body("{\"blob\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    // Names that are not OCI repository names.
    let (st, v) = s
        .json(
            Method::POST,
            &format!("{P}/MyNS/chart"),
            Some(json!({"blob": good, "release": "1.0.0"})),
        )
        .await;
    assert_eq!(st, 422);
    assert_eq!(v["code"], "invalid-parameters");
    assert_eq!(v["details"], json!({"package": "MyNS/chart"}));
    assert!(v["message"]
        .as_str()
        .unwrap()
        .contains("OCI repository name"));

    let stored = s.stored().await;
    assert!(stored.is_empty(), "a rejected push stored {stored:?}");
    assert_eq!(s.get(P).await.1, json!([]));
}

#[tokio::test]
async fn push_conflict_force_and_show() {
    let s = Server::start().await;
    let v1 = chart("mychart", "1.0.0", "a");
    assert_eq!(
        s.push("myns/mychart", "1.0.0", "helm", &v1, false).await,
        (StatusCode::OK, json!({"status": "ok"}))
    );
    let before = s.stored().await;
    assert!(before.iter().any(|k| k.starts_with("blobs/")), "{before:?}");
    let other = chart("mychart", "1.0.0", "b");
    let (st, v) = s.push("myns/mychart", "1.0.0", "helm", &other, false).await;
    assert_eq!(st, 409);
    assert_eq!(
        v,
        json!({"code": "package-exists", "details": {"media_type": "helm", "package": "myns/mychart", "release": "1.0.0"}, "message": "Package exists already"})
    );
    assert_eq!(s.stored().await, before, "a 409 push left something behind");

    let (_, shown) = s.get(&format!("{P}/myns/mychart/1.0.0/helm")).await;
    assert_eq!(shown["content"]["digest"], appr_digest(&v1));
    assert_eq!(shown["content"]["size"], v1.len());
    assert_eq!(
        shown["content"]["mediaType"],
        "application/vnd.appr.package.helm.v0.tar+gzip"
    );
    assert_eq!(
        shown["mediaType"],
        "application/vnd.appr.package-manifest.helm.v0.json"
    );
    assert_eq!(shown["metadata"], json!({"maintainers": [{"name": "T"}]}));
    assert_eq!(shown["channels"], json!([]));
    assert_eq!(shown["content"]["urls"], json!([]));

    // force replaces the blob and the creation time.
    let (st, _) = s.push("myns/mychart", "1.0.0", "helm", &other, true).await;
    assert_eq!(st, 200);
    let (_, again) = s.get(&format!("{P}/myns/mychart/1.0.0/helm")).await;
    assert_eq!(again["content"]["digest"], appr_digest(&other));
    assert_ne!(again["created_at"], shown["created_at"]);
    let pulled = s
        .req(
            Method::GET,
            &format!("{P}/myns/mychart/1.0.0/helm/pull"),
            None,
        )
        .await;
    assert_eq!(pulled.bytes().await.unwrap().as_ref(), other.as_slice());
    // force as a JSON boolean does not count (the reference compares with "true").
    let path = format!("{P}/myns/mychart");
    let (st, _) = s
        .json(
            Method::POST,
            &path,
            Some(
                json!({"blob": b64(&v1), "release": "1.0.0", "media_type": "helm", "force": true}),
            ),
        )
        .await;
    assert_eq!(st, 409);
    // A full manifest media type is accepted and shortened; kpm is the default.
    let (st, _) = s
        .json(Method::POST, &path, Some(json!({"blob": b64(&v1), "release": "1.0.0", "media_type": "application/vnd.appr.package-manifest.appr.v0.json"})))
        .await;
    assert_eq!(st, 200);
    let (st, _) = s
        .json(
            Method::POST,
            &path,
            Some(json!({"blob": b64(&v1), "release": "1.0.0"})),
        )
        .await;
    assert_eq!(st, 200);
    let (_, list) = s.get(&format!("{P}/myns/mychart/1.0.0")).await;
    let mut mts: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["mediaType"].as_str().unwrap())
        .collect();
    mts.sort();
    assert_eq!(
        mts,
        [
            "application/vnd.appr.package-manifest.appr.v0.json",
            "application/vnd.appr.package-manifest.helm.v0.json",
            "application/vnd.appr.package-manifest.kpm.v0.json"
        ]
    );
    let (st, v) = s.get(&format!("{P}/myns/mychart/1.0.0/-")).await;
    assert_eq!(st, 400);
    assert_eq!(
        v,
        json!({"code": "invalid-usage", "details": {}, "message": "media-type non specified: [helm,appr,kpm]"})
    );
    let (st, v) = s.get(&format!("{P}/myns/mychart/1.0.0/nope")).await;
    assert_eq!(st, 404);
    assert_eq!(
        v,
        json!({"code": "package-not-found", "details": {"media_type": "nope", "package": "myns/mychart", "release": "1.0.0"}, "message": "package myns/mychart doesn't exist, v: 1.0.0, type: nope"})
    );
    let (st, v) = s.get(&format!("{P}/myns/nothere")).await;
    assert_eq!(st, 404);
    assert_eq!(
        v,
        json!({"code": "package-not-found", "details": {"media_type": null, "package": "myns/nothere", "release": null}, "message": "package myns/nothere doesn't exist, v: None, type: None"})
    );
    // Route 9 takes the release verbatim: `default` is not a release.
    assert_eq!(s.get(&format!("{P}/myns/mychart/default")).await.0, 404);
}

#[tokio::test]
async fn release_queries_pull_and_blobs() {
    let s = Server::start().await;
    let releases = [
        "1.0.0",
        "1.1.0-rc.1",
        "1.2.0",
        "2.0.0",
        "2.1.0-beta",
        "10.0.0",
    ];
    for r in releases {
        assert_eq!(
            s.push("myns/q", r, "kpm", &chart("q", r, r), false).await.0,
            200
        );
    }
    for (q, want) in [
        ("default", Some("10.0.0")),
        ("*", Some("10.0.0")),
        ("1.2", Some("1.2.0")),
        ("1", Some("1.2.0")),
        ("==1.2.0", Some("1.2.0")),
        (">=1.0.0,<2.0.0", Some("1.2.0")),
        ("<2.0.0", Some("1.2.0")),
        ("^1.0.0", Some("1.2.0")),
        ("~=1.1", Some("1.2.0")),
        ("!=10.0.0", Some("2.0.0")),
        ("~1.1.0", None),
        (">1.0.0-a", Some("10.0.0")),
        ("1.1.0-rc.1", Some("1.1.0-rc.1")),
    ] {
        let enc: String = q.bytes().map(|b| format!("%{b:02X}")).collect();
        let (st, v) = s.get(&format!("{P}/myns/q/{enc}/kpm")).await;
        match want {
            Some(r) => assert_eq!(
                (st, v["release"].as_str()),
                (StatusCode::OK, Some(r)),
                "{q}"
            ),
            None => assert_eq!(
                (st, v),
                (
                    StatusCode::NOT_FOUND,
                    json!({"code": "package-release-not-found", "details": {"package": "myns/q", "release_query": q}, "message": format!("No release match '{q}' for package 'myns/q'")})
                ),
                "{q}"
            ),
        }
    }
    let (st, v) = s.get(&format!("{P}/myns/q/abc/-")).await;
    assert_eq!(st, 422);
    assert_eq!(
        v,
        json!({"code": "invalid-release", "details": {"release": "abc"}, "message": "Invalid requirement specification: u'abc'"})
    );

    // Raw and JSON pulls.
    let pkg = chart("q", "1.2.0", "1.2.0");
    let res = s
        .req(Method::GET, &format!("{P}/myns/q/1.2/-/pull"), None)
        .await;
    assert_eq!(res.headers()["content-type"], "application/x-gzip");
    assert_eq!(res.headers()["content-disposition"], "myns_q_1.2.0.tar.gz");
    assert_eq!(res.bytes().await.unwrap().as_ref(), pkg.as_slice());
    for path in [
        format!("{P}/myns/q/1.2.0/kpm/pull?format=json"),
        format!("{P}/myns/q/1.2.0/kpm/pull/json"),
    ] {
        let (st, v) = s.get(&path).await;
        assert_eq!(st, 200);
        assert_eq!(
            v,
            json!({"package": "myns/q", "release": "1.2.0", "media_type": "kpm", "filename": "myns_q_1.2.0.tar.gz", "blob": b64(&pkg)})
        );
    }
    // HEAD: the GET's headers, no body.
    let res = s
        .req(Method::HEAD, &format!("{P}/myns/q/1.2.0/kpm/pull"), None)
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-length"], pkg.len().to_string());
    assert_eq!(res.headers()["content-disposition"], "myns_q_1.2.0.tar.gz");
    assert!(res.bytes().await.unwrap().is_empty());
    // Blobs by APPR digest.
    let d = appr_digest(&pkg);
    let (_, v) = s
        .get(&format!("{P}/myns/q/blobs/sha256/{d}?format=json"))
        .await;
    assert_eq!(v["blob"], b64(&pkg));
    let res = s
        .req(Method::GET, &format!("{P}/myns/q/blobs/sha256/{d}"), None)
        .await;
    assert_eq!(
        res.headers()["content-disposition"],
        format!("myns_q_{}.tar.gz", &d[..8])
    );
    assert_eq!(res.bytes().await.unwrap().as_ref(), pkg.as_slice());
    let (_, v) = s.get(&format!("{P}/myns/q/blobs/sha256/{d}/json")).await;
    assert_eq!(
        v,
        json!({"package": "myns/q", "release": d, "filename": format!("myns_q_{}.tar.gz", &d[..8]), "blob": b64(&pkg)})
    );
    let (st, v) = s.get(&format!("{P}/myns/q/blobs/sha256/deadbeef")).await;
    assert_eq!(st, 404);
    assert_eq!(
        v,
        json!({"code": "package-not-found", "details": {"media_type": null, "package": "myns/q", "release": "deadbeef"}, "message": "package myns/q doesn't exist, v: deadbeef, type: None"})
    );

    // List, filters and search.
    let (_, list) = s
        .get(&format!("{P}?namespace=myns&query=q&media_type=kpm"))
        .await;
    assert_eq!(
        list[0]["releases"],
        json!([
            "10.0.0",
            "2.1.0-beta",
            "2.0.0",
            "1.2.0",
            "1.1.0-rc.1",
            "1.0.0"
        ])
    );
    assert_eq!(list[0]["default"], "10.0.0");
    assert_eq!(list[0]["manifests"], json!(["kpm"]));
    assert_eq!(list[0]["visibility"], "public");
    assert_eq!(s.get(&format!("{P}?namespace=other")).await.1, json!([]));
    assert_eq!(s.get(&format!("{P}?media_type=helm")).await.1, json!([]));
    assert_eq!(
        s.get(&format!("{P}/search?q=my.*q")).await.1,
        json!(["myns/q"])
    );
    assert_eq!(s.get(&format!("{P}/search?q=zzz")).await.1, json!([]));
    assert_eq!(
        s.get(&format!("{P}/myns/q?media_type=helm")).await.1,
        json!([])
    );
    assert_eq!(
        s.get(&format!("{P}/myns/q"))
            .await
            .1
            .as_array()
            .unwrap()
            .len(),
        6
    );
}

#[tokio::test]
async fn channels_and_deletes() {
    let s = Server::start().await;
    for r in ["1.0.0", "1.1.0-rc.1", "1.2.0"] {
        s.push("myns/c", r, "helm", &chart("c", r, r), false).await;
    }
    let ch = format!("{P}/myns/c/channels");
    assert_eq!(s.get(&format!("{ch}/")).await, (StatusCode::OK, json!([])));
    let (st, v) = s
        .json(Method::POST, &format!("{ch}/beta/1.1.0-rc.1"), None)
        .await;
    assert_eq!(
        (st, v),
        (
            StatusCode::OK,
            json!({"name": "beta", "current": "1.1.0-rc.1", "releases": ["1.1.0-rc.1"]})
        )
    );
    let (_, v) = s
        .json(Method::POST, &format!("{ch}/beta/1.0.0"), None)
        .await;
    assert_eq!(
        v,
        json!({"name": "beta", "current": "1.0.0", "releases": ["1.1.0-rc.1", "1.0.0"]})
    );
    let (st, v) = s
        .json(Method::POST, &format!("{ch}/beta/7.7.7"), None)
        .await;
    assert_eq!(
        (st, v),
        (
            StatusCode::NOT_FOUND,
            json!({"code": "package-release-not-found", "details": {"package": "myns/c", "release": "7.7.7"}, "message": "Release 7.7.7 doesn't exist for package myns/c"})
        )
    );
    assert_eq!(
        s.json(Method::POST, &format!("{ch}/beta/1.2"), None)
            .await
            .0,
        404
    );
    s.json(Method::POST, &format!("{ch}/stable/1.2.0"), None)
        .await;
    let (_, shown) = s.get(&format!("{P}/myns/c/1.2.0/helm")).await;
    assert_eq!(shown["channels"], json!(["stable"]));
    let (_, v) = s.get(&ch).await;
    assert_eq!(
        v,
        json!([{"name": "beta", "current": "1.0.0", "releases": ["1.1.0-rc.1", "1.0.0"]},
               {"name": "stable", "current": "1.2.0", "releases": ["1.2.0"]}])
    );
    let (st, v) = s
        .json(Method::DELETE, &format!("{ch}/beta/1.0.0"), None)
        .await;
    assert_eq!(
        (st, v),
        (
            StatusCode::OK,
            json!({"status": "deleted", "package": "myns/c", "name": "beta", "release": "1.0.0"})
        )
    );
    assert_eq!(
        s.get(&format!("{ch}/beta")).await.1,
        json!({"name": "beta", "current": "1.1.0-rc.1", "releases": ["1.1.0-rc.1"]})
    );
    // Removing a release the channel does not have changes nothing.
    assert_eq!(
        s.json(Method::DELETE, &format!("{ch}/beta/1.2.0"), None)
            .await
            .0,
        200
    );
    assert_eq!(
        s.json(Method::DELETE, &format!("{ch}/beta/9.9.9"), None)
            .await
            .1["code"],
        "package-not-found"
    );
    let (st, v) = s.json(Method::DELETE, &format!("{ch}/beta"), None).await;
    assert_eq!(
        (st, v),
        (
            StatusCode::OK,
            json!({"channel": "beta", "package": "myns/c", "action": "delete"})
        )
    );
    let missing = json!({"code": "channel-not-found", "details": {"package": "beta"}, "message": "No channel found for package 'beta'"});
    assert_eq!(
        s.get(&format!("{ch}/beta")).await,
        (StatusCode::NOT_FOUND, missing.clone())
    );
    assert_eq!(
        s.json(Method::DELETE, &format!("{ch}/beta"), None).await,
        (StatusCode::NOT_FOUND, missing.clone())
    );
    assert_eq!(
        s.json(Method::DELETE, &format!("{ch}/beta/1.0.0"), None)
            .await,
        (StatusCode::NOT_FOUND, missing)
    );
    assert_eq!(
        s.get(&format!("{P}/myns/none/channels")).await.1["code"],
        "package-not-found"
    );

    // Deleting a release takes it out of its channels.
    let (st, v) = s
        .json(Method::DELETE, &format!("{P}/myns/c/1.2.0/helm"), None)
        .await;
    assert_eq!(
        (st, v),
        (
            StatusCode::OK,
            json!({"status": "deleted", "package": "myns/c", "release": "1.2.0"})
        )
    );
    let (st, v) = s
        .json(Method::DELETE, &format!("{P}/myns/c/1.2.0/helm"), None)
        .await;
    assert_eq!(
        (st, v),
        (
            StatusCode::NOT_FOUND,
            json!({"code": "package-not-found", "details": {"media_type": null, "package": "myns/c", "release": null}, "message": "package myns/c doesn't exist, v: None, type: None"})
        )
    );
    assert_eq!(
        s.get(&format!("{ch}/stable")).await.0,
        404,
        "stable held only 1.2.0"
    );
    assert_eq!(
        s.json(Method::DELETE, &format!("{P}/myns/c/1.0.0/-"), None)
            .await
            .0,
        404,
        "DELETE does not resolve -"
    );
    for r in ["1.0.0", "1.1.0-rc.1"] {
        assert_eq!(
            s.json(Method::DELETE, &format!("{P}/myns/c/{r}/helm"), None)
                .await
                .0,
            200
        );
    }
    assert_eq!(
        s.get(&format!("{P}/myns/c")).await,
        (StatusCode::OK, json!([]))
    );
    assert_eq!(s.get(P).await.1, json!([]));
    assert_eq!(
        s.get(&format!("{P}/myns/c/default/-/pull")).await.1["code"],
        "package-not-found"
    );
}

#[tokio::test]
async fn oci_view_of_appr_and_appr_view_of_oci() {
    let s = Server::start().await;
    let pkg = chart("oc", "1.0.0", "x");
    s.push("myns/oc", "1.0.0", "helm", &pkg, false).await;
    s.push("myns/oc", "1.0.0", "kpm", &pkg, false).await;
    let manifest_url = format!("{}/v2/myns/oc/manifests/1.0.0", s.url);
    // An index for clients that take one, the helm chart for those that do not.
    let idx = s
        .http
        .get(&manifest_url)
        .header("Accept", "application/vnd.oci.image.index.v1+json")
        .send()
        .await
        .unwrap();
    assert_eq!(
        idx.headers()["content-type"],
        "application/vnd.oci.image.index.v1+json"
    );
    let idx = idx.json_value().await;
    assert_eq!(idx["manifests"].as_array().unwrap().len(), 2);
    assert_eq!(
        idx["manifests"][0]["artifactType"],
        "application/vnd.cncf.helm.config.v1+json"
    );
    let m = s
        .http
        .get(&manifest_url)
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap();
    assert_eq!(
        m.headers()["content-type"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    let m = m.json_value().await;
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.cncf.helm.config.v1+json"
    );
    assert_eq!(
        m["layers"][0]["mediaType"],
        "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
    );
    assert_eq!(m["annotations"]["io.appr.digest"], appr_digest(&pkg));
    let layer = m["layers"][0]["digest"].as_str().unwrap();
    assert_eq!(
        layer,
        format!("sha256:{}", hex::encode(Sha256::digest(&pkg)))
    );
    let blob = s
        .http
        .get(format!("{}/v2/myns/oc/blobs/{layer}", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(blob.bytes().await.unwrap().as_ref(), pkg.as_slice());
    let config = s
        .http
        .get(format!(
            "{}/v2/myns/oc/blobs/{}",
            s.url,
            m["config"]["digest"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap();
    let config = config.json_value().await;
    assert_eq!(
        (config["name"].as_str(), config["version"].as_str()),
        (Some("oc"), Some("1.0.0"))
    );

    // A chart pushed through /v2 the way `helm push` does is an APPR release.
    let other = chart("viaoci", "2.0.0+b1", "y");
    let put_blob = |data: Vec<u8>| {
        let s = &s;
        async move {
            let d = format!("sha256:{}", hex::encode(Sha256::digest(&data)));
            let res = s
                .http
                .post(format!(
                    "{}/v2/myns/viaoci/blobs/uploads/?digest={d}",
                    s.url
                ))
                .body(data.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 201);
            json!({"digest": d, "size": data.len()})
        }
    };
    let cfg = put_blob(
        br#"{"apiVersion":"v2","name":"viaoci","version":"2.0.0+b1","maintainers":[{"name":"M"}]}"#
            .to_vec(),
    )
    .await;
    let lay = put_blob(other.clone()).await;
    let manifest = json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.cncf.helm.config.v1+json", "digest": cfg["digest"], "size": cfg["size"]},
        "layers": [{"mediaType": "application/vnd.cncf.helm.chart.content.v1.tar+gzip", "digest": lay["digest"], "size": lay["size"]}],
        "annotations": {"org.opencontainers.image.created": "2026-01-02T03:04:05Z"}
    });
    let res = s
        .http
        .put(format!("{}/v2/myns/viaoci/manifests/2.0.0_b1", s.url))
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let (st, v) = s.get(&format!("{P}/myns/viaoci/default/-")).await;
    assert_eq!(st, 200);
    assert_eq!(v["release"], "2.0.0+b1");
    assert_eq!(v["content"]["digest"], appr_digest(&other));
    assert_eq!(v["created_at"], "2026-01-02T03:04:05");
    assert_eq!(
        v["metadata"],
        json!({"maintainers": [{"name": "M"}], "source": null})
    );
    let (_, pulled) = s
        .get(&format!("{P}/myns/viaoci/2.0.0%2Bb1/helm/pull/json"))
        .await;
    assert_eq!(pulled["blob"], b64(&other));
    let (_, list) = s.get(P).await;
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["myns/oc", "myns/viaoci"]);
    // Adding an APPR media type to it turns the tag into a release index.
    assert_eq!(
        s.push("myns/viaoci", "2.0.0+b1", "kpm", &other, false)
            .await
            .0,
        200
    );
    let (_, both) = s.get(&format!("{P}/myns/viaoci/2.0.0+b1")).await;
    assert_eq!(both.as_array().unwrap().len(), 2);
    assert_eq!(
        s.push("myns/viaoci", "2.0.0+b1", "helm", &other, false)
            .await
            .0,
        409
    );
}

#[tokio::test]
async fn concurrent_writers_lose_nothing() {
    let s = Server::start().await;
    let pkg = chart("cc", "1.0.0", "x");
    let types: Vec<String> = (0..8).map(|i| format!("t{i}")).collect();
    let pushes = types
        .iter()
        .map(|mt| s.push("myns/cc", "1.0.0", mt, &pkg, false));
    for (st, v) in futures_util::future::join_all(pushes).await {
        assert_eq!(st, 200, "{v}");
    }
    let (_, list) = s.get(&format!("{P}/myns/cc/1.0.0")).await;
    assert_eq!(
        list.as_array().unwrap().len(),
        types.len(),
        "a concurrent push was lost: {list}"
    );

    let releases: Vec<String> = (0..6).map(|i| format!("2.0.{i}")).collect();
    for r in &releases {
        s.push("myns/cc", r, "helm", &pkg, false).await;
    }
    let paths: Vec<String> = releases
        .iter()
        .map(|r| format!("{P}/myns/cc/channels/stable/{r}"))
        .collect();
    let adds = paths.iter().map(|p| s.json(Method::POST, p, None));
    for (st, _) in futures_util::future::join_all(adds).await {
        assert_eq!(st, 200);
    }
    let (_, ch) = s.get(&format!("{P}/myns/cc/channels/stable")).await;
    assert_eq!(
        ch["releases"].as_array().unwrap().len(),
        releases.len(),
        "a channel update was lost: {ch}"
    );
}

#[tokio::test]
async fn push_bodies_over_the_limit_are_413_and_store_nothing() {
    let s = Server::start_with(&["--max-package-size", "4096"]).await;
    let big: Vec<u8> = (0..20_000u32).map(|i| (i * 7919 % 251) as u8).collect();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::none());
    gz.write_all(&big).unwrap();
    let (st, v) = s
        .push("myns/big", "1.0.0", "helm", &gz.finish().unwrap(), false)
        .await;
    assert_eq!(
        (st.as_u16(), v["code"].as_str()),
        (413, Some("package-too-large"))
    );
    assert_eq!(v["details"], json!({"limit": 4096}));
    let stored = s.stored().await;
    assert!(stored.is_empty(), "an oversized push stored {stored:?}");
}
