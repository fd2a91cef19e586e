//! Small S3 reads and blob streams sent directly (signed with aws-sigv4) and
//! handed back to the SDK when the answer is not a plain 200, 206 or 404
//! (`src/store/s3/direct.rs`, `src/store/s3/bulk.rs`). The counters of
//! `apprd_s3_reads_total` and its siblings tell which path answered, so the
//! tests of this binary take turns.
//!
//! On moto (`APPRD_TEST_S3_ENDPOINT`), which checks no signatures, and on
//! s3s-fs (`APPRD_TEST_S3_SIGNED_ENDPOINT`, with the key pair in
//! `APPRD_TEST_S3_SIGNED_KEY` and `..._SECRET`), which does.

mod s3_env;

use std::time::Duration;

use apprd::store::s3::{client, S3Backend};
use apprd::store::{Backend, ByteRange, StoreError};
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use bytes::Bytes;
use futures_util::StreamExt;
use s3_env::{backend, backend_at, endpoint};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;

static TURN: Mutex<()> = Mutex::const_new(());

/// Keys that need every kind of percent-encoding S3 signs.
const KEYS: &[&str] = &[
    "plain/key",
    "repos/a.b_c-d~e/_manifests/revisions/sha256/0123abcd",
    "odd/a b+c%d:e@f=g,h;i!j'k(l)m*n$o&p",
    "odd/é/ü/日本",
];

/// (direct, sdk) counts of `metric` so far in this process.
fn counts(metric: &str) -> (u64, u64) {
    let text = apprd::ops::metrics::render();
    let count = |path: &str| {
        let prefix = format!("{metric}{{path=\"{path}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map_or(0, |n| n.trim().parse().unwrap())
    };
    (count("direct"), count("sdk"))
}

/// (direct, sdk) reads counted so far in this process.
fn reads() -> (u64, u64) {
    counts("apprd_s3_reads_total")
}

/// (direct, sdk) stats counted so far in this process.
fn stats() -> (u64, u64) {
    counts("apprd_s3_stats_total")
}

/// Put every key, read and stat each back; the bytes, sizes and etags must
/// be the ones put.
async fn round_trip(b: &S3Backend) {
    for (i, key) in KEYS.iter().enumerate() {
        let data = Bytes::from(format!("{{\"n\":{i},\"key\":{key:?}}}"));
        let put = b.put(key, data.clone()).await.unwrap();
        let (got, meta) = b.read(key).await.unwrap();
        assert_eq!(got, data, "{key}");
        assert_eq!(meta.etag, put.etag, "{key}");
        assert_eq!(meta.size, data.len() as u64, "{key}");
        let stat = b.stat(key).await.unwrap().expect("stat of a key just put");
        assert_eq!(stat.etag, put.etag, "{key}");
        assert_eq!(stat.size, data.len() as u64, "{key}");
    }
    assert!(matches!(
        b.read("odd/missing key").await,
        Err(StoreError::NotFound)
    ));
    assert!(b.stat("odd/missing key").await.unwrap().is_none());
}

/// [`round_trip`], with every read and stat answered by the direct path.
async fn round_trip_direct(b: &S3Backend) {
    let (reads_before, stats_before) = (reads(), stats());
    round_trip(b).await;
    let (reads_after, stats_after) = (reads(), stats());
    let n = KEYS.len() as u64 + 1;
    assert_eq!(reads_after.0 - reads_before.0, n, "direct reads");
    assert_eq!(
        reads_after.1, reads_before.1,
        "no read went through the SDK"
    );
    assert_eq!(stats_after.0 - stats_before.0, n, "direct stats");
    assert_eq!(
        stats_after.1, stats_before.1,
        "no stat went through the SDK"
    );
}

#[tokio::test]
async fn small_reads_go_direct_and_answer_as_the_sdk_would() {
    let Some((b, _)) = backend(5 * 1024 * 1024).await else {
        return;
    };
    let _turn = TURN.lock().await;
    round_trip_direct(&b).await;
}

/// A listener whose first connection answers `503 Slow Down` and closes;
/// later ones are forwarded to `upstream`.
async fn slow_down_once(upstream: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut first = true;
        loop {
            let (mut conn, _) = listener.accept().await.unwrap();
            if std::mem::take(&mut first) {
                let mut head = [0u8; 4096];
                let _ = conn.read(&mut head).await;
                let _ = conn
                    .write_all(
                        b"HTTP/1.1 503 Slow Down\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    )
                    .await;
                continue;
            }
            let up = upstream.trim_start_matches("http://").to_string();
            tokio::spawn(async move {
                let mut to = TcpStream::connect(up).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut conn, &mut to).await;
            });
        }
    });
    url
}

#[tokio::test]
async fn an_answer_other_than_200_or_404_goes_to_the_sdk() {
    let Some((b, bucket)) = backend(5 * 1024 * 1024).await else {
        return;
    };
    b.put("k", Bytes::from_static(b"value")).await.unwrap();
    let url = slow_down_once(endpoint().unwrap()).await;
    let via = backend_at(&url, &bucket, "/pfx/").await;
    let _turn = TURN.lock().await;
    let before = reads();
    // The direct GET meets the 503; the SDK sends it again and gets the object.
    let (got, _) = via.read("k").await.unwrap();
    assert_eq!(&got[..], b"value");
    let after = reads();
    assert_eq!(
        after.0, before.0,
        "the 503 was no answer of the direct path"
    );
    assert_eq!(after.1 - before.1, 1, "the SDK read it");

    // The same for a stat: the direct HEAD meets a 503, the SDK answers.
    let url = slow_down_once(endpoint().unwrap()).await;
    let via = backend_at(&url, &bucket, "/pfx/").await;
    let before = stats();
    let meta = via.stat("k").await.unwrap().expect("k is there");
    assert_eq!(meta.size, 5);
    let after = stats();
    assert_eq!(
        after.0, before.0,
        "the 503 was no answer of the direct path"
    );
    assert_eq!(after.1 - before.1, 1, "the SDK sent the HEAD");

    // And for a blob stream.
    let url = slow_down_once(endpoint().unwrap()).await;
    let via = backend_at(&url, &bucket, "/pfx/").await;
    let before = streams();
    assert_eq!(collect(&via, "k", None).await.unwrap(), b"value");
    let after = streams();
    assert_eq!(
        after.0, before.0,
        "the 503 was no answer of the direct path"
    );
    assert_eq!(after.1 - before.1, 1, "the SDK streamed it");
}

/// A backend on a fresh bucket of the signature-checking server, signing
/// with `secret`; `None` (skipped) without that server.
async fn signed_backend(secret: &str) -> Option<(S3Backend, aws_sdk_s3::Client)> {
    let url = match std::env::var("APPRD_TEST_S3_SIGNED_ENDPOINT") {
        Ok(u) if !u.is_empty() => u,
        _ if std::env::var("APPRD_REQUIRE_S3").as_deref() == Ok("1") => {
            panic!("APPRD_REQUIRE_S3=1 but APPRD_TEST_S3_SIGNED_ENDPOINT is not set")
        }
        _ => {
            eprintln!("skipped: set APPRD_TEST_S3_SIGNED_ENDPOINT to run the signed S3 tests");
            return None;
        }
    };
    s3_env::setup(&endpoint().unwrap_or_else(|| url.clone()));
    let key = std::env::var("APPRD_TEST_S3_SIGNED_KEY").unwrap();
    let creds = Credentials::new(key, secret, None, None, "test");
    let sdk = client(true).await;
    let conf = sdk
        .client
        .config()
        .to_builder()
        .endpoint_url(url)
        .credentials_provider(creds.clone())
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .operation_timeout(Duration::from_secs(10))
                .build(),
        )
        .build();
    let c = aws_sdk_s3::Client::from_conf(conf);
    let provider = SharedCredentialsProvider::new(creds);
    Some((
        S3Backend::new(c.clone(), Some(provider), "signed", "pfx", 5 * 1024 * 1024),
        c,
    ))
}

#[tokio::test]
async fn direct_reads_are_signed_as_s3_checks_them() {
    let secret = std::env::var("APPRD_TEST_S3_SIGNED_SECRET").unwrap_or_default();
    let Some((b, c)) = signed_backend(&secret).await else {
        return;
    };
    let _ = c.create_bucket().bucket("signed").send().await;
    let _turn = TURN.lock().await;
    round_trip_direct(&b).await; // the server took every direct signature

    // With a wrong secret the server refuses both paths: an error, never
    // "not found", and the SDK's answer is the one given.
    let (wrong, _) = signed_backend("not-the-secret").await.unwrap();
    refused_by_sdk(reads, wrong.read(KEYS[0])).await;
    refused_by_sdk(stats, wrong.stat(KEYS[0])).await;
}

/// `op` fails as a store that refuses apprd, and that answer is the SDK's
/// (one more in `counter`'s sdk count, none in its direct count).
async fn refused_by_sdk<T: std::fmt::Debug>(
    counter: fn() -> (u64, u64),
    op: impl std::future::Future<Output = Result<T, StoreError>>,
) {
    let before = counter();
    let err = op.await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    let after = counter();
    assert_eq!(after.0, before.0);
    assert_eq!(after.1 - before.1, 1);
}

/// (direct, sdk) blob streams counted so far in this process.
fn streams() -> (u64, u64) {
    counts("apprd_s3_streams_total")
}

/// `len` bytes that differ from one offset to the next.
fn pattern(len: usize) -> Bytes {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0])
        .collect::<Vec<u8>>()
        .into()
}

/// All of a store stream, or its first error.
async fn collect(b: &S3Backend, key: &str, range: Option<ByteRange>) -> Result<Vec<u8>, String> {
    let mut stream = b.get(key, range).await.map_err(|e| format!("{e:?}"))?;
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.map_err(|e| e.to_string())?);
    }
    Ok(out)
}

#[tokio::test]
async fn blob_streams_go_direct_whole_and_in_ranges() {
    let Some((b, _)) = backend(5 * 1024 * 1024).await else {
        return;
    };
    // Not a multiple of the low-water mark: the last read must not wait for
    // bytes that never come (it would stall, and fail, after 20 s).
    let data = pattern(3 * 1024 * 1024 + 17);
    b.put("blobs/big", data.clone()).await.unwrap();
    b.put("blobs/small", Bytes::from_static(b"tiny"))
        .await
        .unwrap();
    let _turn = TURN.lock().await;
    let before = streams();
    // Twice each: the second read may ride the connection the first one kept.
    for _ in 0..2 {
        assert!(collect(&b, "blobs/big", None).await.unwrap() == data[..]);
        assert_eq!(collect(&b, "blobs/small", None).await.unwrap(), b"tiny");
    }
    let len = data.len() as u64;
    for (start, end) in [(0, 0), (5, 1024 * 1024 + 3), (len - 10, len - 1)] {
        let got = collect(&b, "blobs/big", Some(ByteRange { start, end }))
            .await
            .unwrap();
        assert!(got == data[start as usize..=end as usize], "{start}-{end}");
    }
    assert_eq!(
        collect(&b, "blobs/missing", None).await.unwrap_err(),
        "NotFound"
    );
    let after = streams();
    assert_eq!(after.0 - before.0, 8, "direct streams");
    assert_eq!(after.1, before.1, "no stream went through the SDK");
}

/// A store that answers every GET with the head of a 1000-byte object and
/// 10 bytes of it, then closes the connection or (with `stall`) goes silent.
async fn cut_short(stall: bool) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let (mut conn, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut head = [0u8; 4096];
                let _ = conn.read(&mut head).await;
                let _ = conn
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\netag: \"e\"\r\n\r\n0123456789",
                    )
                    .await;
                if stall {
                    tokio::time::sleep(Duration::from_secs(120)).await;
                }
            });
        }
    });
    url
}

#[tokio::test]
async fn a_blob_stream_cut_short_ends_in_an_error() {
    let Some(e) = endpoint() else {
        return;
    };
    s3_env::setup(&e);
    for stall in [false, true] {
        let via = backend_at(&cut_short(stall).await, "bucket", "").await;
        let started = std::time::Instant::now();
        let err = collect(&via, "k", None).await.unwrap_err();
        let expected = if stall {
            "stalled"
        } else {
            "closed the connection"
        };
        assert!(err.contains(expected), "{err}");
        // A stall ends after the 20 s idle limit, not at the silent store's whim.
        assert!(started.elapsed() < Duration::from_secs(60));
    }
}

#[tokio::test]
async fn blob_streams_are_signed_as_s3_checks_them() {
    let secret = std::env::var("APPRD_TEST_S3_SIGNED_SECRET").unwrap_or_default();
    let Some((b, c)) = signed_backend(&secret).await else {
        return;
    };
    let _ = c.create_bucket().bucket("signed").send().await;
    let data = pattern(700 * 1024 + 1);
    b.put("odd/a b+c%d/blob", data.clone()).await.unwrap();
    let _turn = TURN.lock().await;
    let before = streams();
    assert!(collect(&b, "odd/a b+c%d/blob", None).await.unwrap() == data[..]);
    let range = Some(ByteRange {
        start: 1,
        end: 300_000,
    });
    assert!(collect(&b, "odd/a b+c%d/blob", range).await.unwrap() == data[1..=300_000]);
    let after = streams();
    assert_eq!(
        after.0 - before.0,
        2,
        "both streams went direct and were accepted"
    );
    assert_eq!(after.1, before.1);
}
