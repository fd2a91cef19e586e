//! Running apprd as a service, against the real binary: health, readiness,
//! metrics, request ids and logs, graceful shutdown, configuration.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

const BIN: &str = env!("CARGO_BIN_EXE_apprd");

/// A running `apprd serve`, killed when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// `apprd` with a clean environment: no setting leaks in from the caller.
fn apprd() -> Command {
    let mut c = Command::new(BIN);
    c.env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        c.env("PATH", path);
    }
    c
}

impl Server {
    async fn start(root: &Path, extra: &[&str]) -> Server {
        Server::start_env(root, extra, &[]).await
    }

    async fn start_env(root: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let addr = free_addr();
        let log = root.with_extension("log");
        let mut cmd = apprd();
        cmd.envs(env.iter().copied());
        cmd.args(["serve", "--listen", &addr.to_string(), "--root"])
            .arg(root.join("data"))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        let child = cmd.spawn().expect("spawn apprd");
        let s = Server {
            child,
            addr,
            log,
            _dir: None,
        };
        s.wait_up().await;
        s
    }

    async fn fresh(extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Server::start(&dir.path().join("s"), extra).await;
        s._dir = Some(dir);
        s
    }

    fn data(&self) -> PathBuf {
        self.log.with_extension("").join("data")
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    async fn wait_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if reqwest::get(self.url("/healthz")).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("apprd did not start: {}", self.logs());
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn sigterm(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -TERM failed");
    }

    async fn metrics(&self) -> String {
        reqwest::get(self.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn digest_of(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// Push a blob in one `POST ?digest=` request.
async fn push_blob(s: &Server, repo: &str, data: &[u8]) -> reqwest::StatusCode {
    reqwest::Client::new()
        .post(s.url(&format!(
            "/v2/{repo}/blobs/uploads/?digest={}",
            digest_of(data)
        )))
        .body(data.to_vec())
        .send()
        .await
        .unwrap()
        .status()
}

/// The value of the sample whose line starts with `series` (name and labels).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn health_and_readiness() {
    let s = Server::fresh(&[]).await;
    let r = reqwest::get(s.url("/healthz")).await.unwrap();
    assert_eq!(r.status(), 200);
    let id = r.headers()["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::try_parse(id).is_ok_and(|u| !u.is_nil()), "{id}");
    assert_eq!(r.text().await.unwrap(), r#"{"status":"ok"}"#);

    let r = reqwest::get(s.url("/readyz")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains(r#""status":"ready""#));
}

/// Every filesystem write goes through `<root>/_tmp`; a plain file in its
/// place makes writes fail for any user, root included (chmod does not stop root).
#[tokio::test]
async fn not_ready_when_storage_is_unwritable() {
    let s = Server::fresh(&[]).await;
    let tmp = s.data().join("_tmp");
    assert_eq!(reqwest::get(s.url("/readyz")).await.unwrap().status(), 200);

    std::fs::remove_dir_all(&tmp).unwrap();
    std::fs::write(&tmp, b"not a folder").unwrap();
    let r = reqwest::get(s.url("/readyz")).await.unwrap();
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(body["status"], "not ready");
    assert_eq!(body["storage"], "filesystem");
    // /healthz is about the process, not the store.
    assert_eq!(reqwest::get(s.url("/healthz")).await.unwrap().status(), 200);
    assert!(push_blob(&s, "a/b", b"hello").await.is_server_error());
    let m = s.metrics().await;
    let errors = sample(
        &m,
        r#"apprd_storage_errors_total{backend="filesystem",operation="check"}"#,
    );
    assert_eq!(errors, Some(1.0), "{m}");

    std::fs::remove_file(&tmp).unwrap();
    std::fs::create_dir(&tmp).unwrap();
    assert_eq!(reqwest::get(s.url("/readyz")).await.unwrap().status(), 200);
}

#[tokio::test]
async fn metrics_after_known_traffic() {
    let s = Server::fresh(&[]).await;
    let blob = vec![7u8; 1000];
    assert_eq!(push_blob(&s, "team/app", &blob).await, 201);
    // Doubled slashes are merged before the route is labelled.
    let path = format!("/v2/team/app/blobs/{}", digest_of(&blob));
    for url in [s.url(&path), s.url(&path.replace("/team/", "//team/"))] {
        let r = reqwest::get(&url).await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.bytes().await.unwrap().len(), 1000);
    }
    let r = reqwest::get(s.url("/v2/team/app/manifests/nope"))
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    r.bytes().await.unwrap();

    let r = reqwest::get(s.url("/metrics")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    // Requests are counted once their body is sent: poll briefly.
    let mut m = String::new();
    for _ in 0..40 {
        m = s.metrics().await;
        if sample(
            &m,
            r#"apprd_http_requests_total{method="GET",route="manifest",status="404"}"#,
        )
        .is_some()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let expect = [
        (
            r#"apprd_http_requests_total{method="POST",route="upload_start",status="201"}"#,
            1.0,
        ),
        (
            r#"apprd_http_requests_total{method="GET",route="blob",status="200"}"#,
            2.0,
        ),
        (
            r#"apprd_http_requests_total{method="GET",route="manifest",status="404"}"#,
            1.0,
        ),
        (
            r#"apprd_http_request_bytes_total{method="POST",route="upload_start"}"#,
            1000.0,
        ),
        (
            r#"apprd_http_response_bytes_total{method="GET",route="blob"}"#,
            2000.0,
        ),
        (
            r#"apprd_http_request_duration_seconds_count{method="GET",route="blob"}"#,
            2.0,
        ),
        (
            r#"apprd_http_requests_total{method="GET",route="/healthz",status="200"}"#,
            1.0,
        ),
        ("apprd_uploads_in_progress", 0.0),
    ];
    for (series, value) in expect {
        assert_eq!(sample(&m, series), Some(value), "{series} in\n{m}");
    }
    assert!(m.contains(
        r#"apprd_http_request_duration_seconds_bucket{method="GET",route="blob",le="+Inf"} 2"#
    ));
    for op in ["stage_append", "stage_commit", "stat", "get"] {
        let series =
            format!(r#"apprd_storage_operations_total{{backend="filesystem",operation="{op}"}}"#);
        assert!(
            sample(&m, &series).unwrap_or(0.0) >= 1.0,
            "{series} in\n{m}"
        );
    }
    assert!(m.contains("apprd_storage_operation_duration_seconds_bucket{backend=\"filesystem\""));
    assert!(
        sample(&m, "process_resident_memory_bytes").unwrap_or(0.0) > 0.0,
        "{m}"
    );
    assert!(sample(&m, "process_open_fds").unwrap_or(0.0) > 0.0, "{m}");
    // Route labels, never raw paths.
    assert!(!m.contains("team/app"), "{m}");
}

/// Send `n` requests one after another on one connection.
async fn sequential_requests(s: &Server, n: usize) {
    let client = reqwest::Client::new();
    for _ in 0..n {
        let r = client.get(s.url("/v2/")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
    }
}

const POLLING: &str = "apprd_worker_wakeups_total{waiting=\"polling\"}";

/// Requests that follow each other closely find their worker still polling
/// (src/ops/idle_poll.rs); once they stop, so does the polling.
#[tokio::test]
async fn workers_poll_between_close_requests_and_stop_when_idle() {
    // A window long enough for a debug build's gaps too; 200 µs by default.
    let s = Server::fresh(&["--idle-poll-us", "5000"]).await;
    sequential_requests(&s, 1000).await;
    let m = s.metrics().await;
    let caught = sample(&m, POLLING).unwrap_or(0.0);
    assert!(caught > 0.0, "no request caught while polling:\n{m}");

    tokio::time::sleep(Duration::from_millis(100)).await;
    let cpu = |m: &str| sample(m, "process_cpu_seconds_total").expect("process metrics");
    let before = cpu(&s.metrics().await);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let used = cpu(&s.metrics().await) - before;
    // A worker that kept polling would use the whole second.
    assert!(
        used <= 0.05,
        "idle apprd used {used} s of CPU in one second"
    );

    let off = Server::fresh(&["--idle-poll-us", "0"]).await;
    sequential_requests(&off, 200).await;
    let m = off.metrics().await;
    assert_eq!(
        sample(&m, POLLING).unwrap_or(0.0),
        0.0,
        "polling is off:\n{m}"
    );
}

#[tokio::test]
async fn request_ids_and_no_secrets_in_logs() {
    let s = Server::fresh(&["--log-format", "json"]).await;
    let r = reqwest::Client::new()
        .get(s.url("/v2/team/app/manifests/v1?token=hunter2"))
        .header("Authorization", "Bearer s3cr3t-t0ken")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    let other = reqwest::get(s.url("/v2/")).await.unwrap();
    assert_ne!(other.headers()["x-request-id"].to_str().unwrap(), id);

    let mut logs = String::new();
    for _ in 0..40 {
        logs = s.logs();
        if logs.contains(&id) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let line = logs
        .lines()
        .find(|l| l.contains(&id))
        .unwrap_or_else(|| panic!("request id {id} not logged:\n{logs}"));
    let v: serde_json::Value = serde_json::from_str(line).expect("JSON log line");
    assert_eq!(v["span"]["path"], "/v2/team/app/manifests/v1");
    assert_eq!(v["span"]["route"], "manifest");
    assert_eq!(v["fields"]["status"], 404);
    for l in logs.lines() {
        serde_json::from_str::<serde_json::Value>(l).expect("every line is JSON");
    }
    assert!(!logs.contains("hunter2"), "{logs}");
    assert!(!logs.contains("s3cr3t"), "{logs}");
}

/// A slow upload in flight at SIGTERM completes; new connections are refused;
/// the blob is there after a restart.
#[tokio::test]
async fn graceful_shutdown_finishes_inflight_upload() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("s");
    let mut s = Server::start(&root, &["--shutdown-grace-secs", "30"]).await;

    const CHUNKS: usize = 30;
    let chunk = vec![42u8; 64 * 1024];
    let whole: Vec<u8> = chunk.repeat(CHUNKS);
    let digest = digest_of(&whole);

    let r = reqwest::Client::new()
        .post(s.url("/v2/slow/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let sep = if location.contains('?') { '&' } else { '?' };
    let put_url = s.url(&format!("{location}{sep}digest={digest}"));

    // 30 chunks, 100 ms apart: about 3 s on the wire.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    let sender = tokio::spawn(async move {
        for _ in 0..CHUNKS {
            tx.send(Ok(chunk.clone())).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let body = reqwest::Body::wrap_stream(futures_util::stream::unfold(rx, |mut rx| async {
        rx.recv().await.map(|item| (item, rx))
    }));
    let upload = tokio::spawn(
        reqwest::Client::new()
            .put(put_url)
            .header("Content-Type", "application/octet-stream")
            .body(body)
            .send(),
    );

    // SIGTERM while the body is still arriving (the server has seen it start).
    let mut m = String::new();
    for _ in 0..20 {
        m = s.metrics().await;
        if sample(&m, "apprd_uploads_in_progress") == Some(1.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(sample(&m, "apprd_uploads_in_progress"), Some(1.0), "{m}");
    s.sigterm();
    // New connections are refused soon after (polled: machines can be slow).
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect_timeout(&s.addr, Duration::from_millis(500)).is_ok() {
        assert!(
            Instant::now() < deadline,
            "new connections still accepted after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let res = upload.await.unwrap().expect("upload request");
    sender.await.unwrap();
    assert_eq!(res.status(), 201, "{}", s.logs());

    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = s.child.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "apprd did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit status {status}: {}", s.logs());
    // The upload was still in flight when the signal arrived.
    let logs = s.logs();
    let signal = logs.find("SIGTERM received").expect("SIGTERM not logged");
    let done = logs
        .find("route=upload ")
        .unwrap_or_else(|| panic!("upload not logged:\n{logs}"));
    assert!(signal < done, "upload finished before SIGTERM:\n{logs}");
    drop(s);

    let s = Server::start(&root, &[]).await;
    let r = reqwest::get(s.url(&format!("/v2/slow/blobs/{digest}")))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), whole.as_slice());
}

/// A stand-in OTLP/HTTP collector: answers 200 to every request and hands
/// each (request line, body) over a channel.
fn fake_collector() -> (SocketAddr, std::sync::mpsc::Receiver<(String, Vec<u8>)>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let mut reader = BufReader::new(conn);
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let mut len = 0;
            loop {
                let mut h = String::new();
                reader.read_line(&mut h).unwrap();
                if h.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = h.split_once(':') {
                    if k.eq_ignore_ascii_case("content-length") {
                        len = v.trim().parse().unwrap();
                    }
                }
            }
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            let mut conn = reader.into_inner();
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            let _ = tx.send((line, body));
        }
    });
    (addr, rx)
}

/// With an OTLP endpoint set, request spans are exported (flushed at the
/// latest on shutdown) and continue the caller's `traceparent`.
#[tokio::test]
async fn exports_traces_when_configured() {
    let (collector, received) = fake_collector();
    let dir = tempfile::tempdir().unwrap();
    let endpoint = format!("http://{collector}");
    let mut s = Server::start_env(
        &dir.path().join("s"),
        &[],
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str())],
    )
    .await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let r = reqwest::Client::new()
        .get(s.url("/v2/"))
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    s.sigterm();
    s.child.wait().unwrap();

    let (line, body) = received
        .recv_timeout(Duration::from_secs(10))
        .expect("no OTLP export arrived");
    assert!(line.starts_with("POST /v1/traces "), "{line}");
    let has = |needle: &[u8]| body.windows(needle.len()).any(|w| w == needle);
    assert!(
        has(&hex::decode(trace_id).unwrap()),
        "remote trace id not in export"
    );
    assert!(has(b"GET base"), "span name not in export");
    assert!(has(b"apprd"), "service name not in export");
}

// ---- configuration ----

fn check(file: Option<&str>, env: &[(&str, &str)], flags: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = apprd();
    cmd.args(["config", "check"]).args(flags);
    if let Some(text) = file {
        let path = dir.path().join("apprd.toml");
        std::fs::write(&path, text).unwrap();
        cmd.arg("--config").arg(path);
    }
    cmd.envs(env.iter().copied());
    cmd.output().unwrap()
}

fn effective(file: Option<&str>, env: &[(&str, &str)], flags: &[&str]) -> toml::Table {
    let out = check(file, env, flags);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    toml::from_str(&String::from_utf8(out.stdout).unwrap()).expect("config check prints TOML")
}

#[test]
fn config_precedence_flags_env_file_defaults() {
    let file =
        "listen = \"127.0.0.1:1001\"\nmax_manifest_size = 5000000\n[s3]\nprefix = \"from-file\"\n";
    let env = [
        ("APPRD_LISTEN", "127.0.0.1:1002"),
        ("APPRD_S3_PREFIX", "from-env"),
    ];
    let flag = ["--listen", "127.0.0.1:1003"];

    let c = effective(None, &[], &[]);
    assert_eq!(c["listen"].as_str(), Some("0.0.0.0:5000"));
    assert_eq!(c["max_manifest_size"].as_integer(), Some(4 * 1024 * 1024));

    let c = effective(Some(file), &[], &[]);
    assert_eq!(c["listen"].as_str(), Some("127.0.0.1:1001"));
    assert_eq!(c["s3"]["prefix"].as_str(), Some("from-file"));

    let c = effective(Some(file), &env, &[]);
    assert_eq!(c["listen"].as_str(), Some("127.0.0.1:1002"));
    assert_eq!(c["s3"]["prefix"].as_str(), Some("from-env"));
    assert_eq!(c["max_manifest_size"].as_integer(), Some(5000000));

    let c = effective(Some(file), &env, &flag);
    assert_eq!(c["listen"].as_str(), Some("127.0.0.1:1003"));
    assert_eq!(c["s3"]["prefix"].as_str(), Some("from-env"));

    // The file may also be named by the environment.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, file).unwrap();
    let c = effective(None, &[("APPRD_CONFIG", path.to_str().unwrap())], &[]);
    assert_eq!(c["listen"].as_str(), Some("127.0.0.1:1001"));
}

#[test]
fn config_rejects_unknown_keys_and_bad_values() {
    for (text, word) in [
        ("listn = \"0.0.0.0:1\"\n", "listn"),
        ("[s3]\nbuckt = \"x\"\n", "buckt"),
        ("[nope]\na = 1\n", "nope"),
        ("shutdown_grace_secs = \"soon\"\n", "shutdown_grace_secs"),
    ] {
        let out = check(Some(text), &[], &[]);
        assert!(!out.status.success(), "accepted {text:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(word), "{text:?}: {err}");
    }
    let out = check(None, &[("STORAGE", "s3")], &[]);
    assert!(!out.status.success(), "s3 without a bucket accepted");
    let out = check(None, &[], &["--s3-part-size", "1024"]);
    assert!(!out.status.success(), "tiny part size accepted");
}

#[test]
fn config_check_masks_secrets() {
    let out = check(
        None,
        &[
            ("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEKEY"),
            ("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI-very-secret"),
            ("AWS_REGION", "eu-west-1"),
        ],
        &[],
    );
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        !text.contains("AKIAEXAMPLEKEY") && !text.contains("very-secret"),
        "{text}"
    );
    assert!(
        text.contains("AWS_SECRET_ACCESS_KEY: set (masked)"),
        "{text}"
    );
    assert!(text.contains("eu-west-1"), "{text}");
}

#[test]
fn example_config_is_valid() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/example.toml");
    let c = effective(None, &[], &["--config", example]);
    let text = std::fs::read_to_string(example).unwrap();
    let example: toml::Table = toml::from_str(&text).unwrap();
    // Every top-level key of the effective config is documented in the example.
    for key in c.keys() {
        assert!(example.contains_key(key), "config/example.toml lacks {key}");
    }
}

/// `serve --help` documents every setting the code reads from the environment.
#[test]
fn help_lists_every_setting() {
    let out = apprd().args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    let source = include_str!("../src/config.rs");
    let names: Vec<&str> = source
        .split("env = \"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .collect();
    assert!(names.len() >= 10, "{names:?}");
    for name in names {
        assert!(
            help.contains(&format!("env: {name}")),
            "--help lacks {name}:\n{help}"
        );
    }
    for name in [
        "APPRD_LOG ",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "AWS_SECRET_ACCESS_KEY",
        "/readyz",
    ] {
        assert!(help.contains(name), "--help lacks {name}:\n{help}");
    }
}
