//! The backend contract, and S3-only behaviour, against a real S3-compatible
//! server. `scripts/test.sh` starts moto and sets `APPRD_TEST_S3_ENDPOINT`;
//! with `APPRD_REQUIRE_S3=1` a missing endpoint fails instead of skipping.
//! Credentials and region default to moto's "anything goes".

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use apprd::store::s3::{client, S3Backend};
use apprd::store::{contract, Backend, Condition, StoreError};
use bytes::Bytes;

const MIB: u64 = 1024 * 1024;

mod s3_env;
use s3_env::{backend, backend_at, endpoint, setup};

#[tokio::test]
async fn s3_backend_honours_the_contract() {
    let Some((b, _)) = backend(5 * MIB).await else {
        return;
    };
    contract::run(&b, "contract").await;
}

#[tokio::test]
async fn conditional_writes_have_one_winner_under_contention() {
    let Some((b, _)) = backend(5 * MIB).await else {
        return;
    };
    let b = Arc::new(b);
    // Bodies differ per round and racer: S3 etags are content hashes, so a
    // racer rewriting the current bytes would keep the etag and also win.
    let race = |cond: Condition| {
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let (b, cond) = (b.clone(), cond.clone());
                tokio::spawn(async move {
                    let body = Bytes::from(format!("{cond:?}-{i}"));
                    b.put_if("race", body, cond).await
                })
            })
            .collect();
        async move {
            let mut wins = 0;
            for t in tasks {
                match t.await.unwrap() {
                    Ok(_) => wins += 1,
                    Err(StoreError::PreconditionFailed) => {}
                    Err(e) => panic!("unexpected {e}"),
                }
            }
            wins
        }
    };
    assert_eq!(race(Condition::Absent).await, 1);
    let etag = b.stat("race").await.unwrap().unwrap().etag;
    assert_eq!(race(Condition::Matches(etag)).await, 1);
    // If-Match on a missing key is a failed precondition (moto answers 404).
    assert!(matches!(
        b.put_if("nothing", Bytes::new(), Condition::Matches("\"x\"".into()))
            .await,
        Err(StoreError::PreconditionFailed)
    ));
}

#[tokio::test]
async fn a_staged_upload_moves_between_replicas() {
    let Some((a, bucket)) = backend(5 * MIB).await else {
        return;
    };
    let sdk = client(true).await;
    let b = S3Backend::new(sdk.client, sdk.credentials, &bucket, "pfx", 8 * MIB);
    let data: Vec<u8> = (0..12 * MIB as usize).map(|i| (i % 253) as u8).collect();
    let body = |s: &[u8]| -> apprd::store::ByteStream {
        let v = Bytes::copy_from_slice(s);
        Box::pin(futures_util::stream::iter(vec![Ok(v)]))
    };
    let six = 6 * MIB as usize;
    assert_eq!(
        a.stage_append("st", 0, body(&data[..six]), None)
            .await
            .unwrap(),
        six as u64
    );
    // Replica B (other part size setting) continues with A's part size.
    assert_eq!(
        b.stage_append("st", six as u64, body(&data[six..]), None)
            .await
            .unwrap(),
        data.len() as u64
    );
    b.stage_commit("st", "done").await.unwrap();
    let (back, _) = a.read("done").await.unwrap();
    assert!(back[..] == data[..]);
    assert!(a.list("st").await.unwrap().is_empty());
}

/// Appends of 5 MiB or more become whole parts (no tail object to read back
/// at the next append); smaller ones leave a tail that the next append
/// finishes. Part size 8 MiB: parts of 6, 10, 10 (3 of tail + 7), 8, 8, 6 MiB.
/// The same with and without declared lengths (planned parts, held parts).
#[tokio::test]
async fn large_appends_leave_no_tail() {
    let Some((b, _)) = backend(8 * MIB).await else {
        return;
    };
    let mib = MIB as usize;
    let all: Vec<u8> = (0..46 * mib).map(|i| (i % 241) as u8).collect();
    for declared in [false, true] {
        let staged = &format!("st-large-{declared}");
        let tails = apprd::store::layout::stage_tail_dir(staged);
        let mut at = 0;
        for (len, piece, tail_left) in [
            (6, 6, false),
            (10, 1, false),
            (3, 1, true),
            (7, 7, false),
            (20, 1, false),
        ] {
            let end = at + len * mib;
            let got = b
                .stage_append(
                    staged,
                    at as u64,
                    contract::chunked(&all[at..end], piece * mib),
                    declared.then_some((len * mib) as u64),
                )
                .await
                .unwrap();
            assert_eq!(got, end as u64);
            assert_eq!(
                !b.list(&tails).await.unwrap().is_empty(),
                tail_left,
                "append of {len} MiB, declared {declared}"
            );
            at = end;
        }
        let dest = format!("large-{declared}");
        b.stage_commit(staged, &dest).await.unwrap();
        let (back, meta) = b.read(&dest).await.unwrap();
        assert_eq!(meta.size, all.len() as u64);
        assert!(back[..] == all[..]);
        assert!(b.list(staged).await.unwrap().is_empty());
    }
}

/// A declared length that the body falls short of (the sender stopped
/// without an error) still stages exactly what came.
#[tokio::test]
async fn a_body_shorter_than_declared_stages_what_came() {
    let Some((b, _)) = backend(5 * MIB).await else {
        return;
    };
    let mib = MIB as usize;
    let all: Vec<u8> = (0..17 * mib).map(|i| (i % 239) as u8).collect();
    let got = b
        .stage_append(
            "short",
            0,
            contract::chunked(&all[..12 * mib], mib),
            Some(40 * MIB),
        )
        .await
        .unwrap();
    assert_eq!(got, 12 * MIB);
    let got = b
        .stage_append("short", got, contract::chunked(&all[12 * mib..], mib), None)
        .await
        .unwrap();
    assert_eq!(got, all.len() as u64);
    b.stage_commit("short", "short-done").await.unwrap();
    assert!(b.read("short-done").await.unwrap().0[..] == all[..]);
}

/// A declared append streams its parts; one whose body fails half way (the
/// client went away in the second part) leaves the staging where it was,
/// and the whole append sent again stages exactly its bytes.
#[tokio::test]
async fn a_body_failing_in_a_streamed_part_leaves_nothing() {
    let Some((b, _)) = backend(5 * MIB).await else {
        return;
    };
    let mib = MIB as usize;
    let all: Vec<u8> = (0..12 * mib).map(|i| (i % 251) as u8).collect();
    let bad = contract::failing(&all[..7 * mib]);
    assert!(matches!(
        b.stage_append("cut", 0, bad, Some(12 * MIB)).await,
        Err(StoreError::Body(_))
    ));
    let got = b
        .stage_append("cut", 0, contract::chunked(&all, 100_000), Some(12 * MIB))
        .await
        .unwrap();
    assert_eq!(got, 12 * MIB);
    b.stage_commit("cut", "cut-done").await.unwrap();
    assert!(b.read("cut-done").await.unwrap().0[..] == all[..]);
}

/// A streamed part whose connection to the store breaks half way is sent
/// again from the bytes kept for it, and the append succeeds. The cut is
/// real: a TCP forwarder in front of the store drops the first connection
/// that carries an unsigned (streamed) payload, 1 MiB into it.
#[tokio::test]
async fn a_streamed_part_cut_on_the_wire_is_sent_again() {
    let Some((_, bucket)) = backend(5 * MIB).await else {
        return;
    };
    let store = endpoint().unwrap();
    let forwarder = cutting_forwarder(store.trim_start_matches("http://").to_string()).await;
    let b = backend_at(&format!("http://{}", forwarder.addr), &bucket, "").await;
    let mib = MIB as usize;
    let all: Vec<u8> = (0..17 * mib).map(|i| (i % 247) as u8).collect();
    let got = b
        .stage_append("wire", 0, contract::chunked(&all, 100_000), Some(17 * MIB))
        .await
        .unwrap();
    assert_eq!(got, 17 * MIB);
    b.stage_commit("wire", "wire-done").await.unwrap();
    assert!(b.read("wire-done").await.unwrap().0[..] == all[..]);
    // The first part was streamed and cut; the append went on buffered
    // (signed payloads) from there.
    assert_eq!(forwarder.cuts.load(Ordering::SeqCst), 1);
    assert_eq!(forwarder.unsigned.load(Ordering::SeqCst), 1);
    // Uncut, all three parts (5, 5 and 7 MiB) stream.
    b.stage_append("wire2", 0, contract::chunked(&all, 100_000), Some(17 * MIB))
        .await
        .unwrap();
    b.stage_commit("wire2", "wire2-done").await.unwrap();
    assert!(b.read("wire2-done").await.unwrap().0[..] == all[..]);
    assert_eq!(forwarder.unsigned.load(Ordering::SeqCst), 4);
}

struct Forwarder {
    addr: std::net::SocketAddr,
    /// Requests seen with `UNSIGNED-PAYLOAD`.
    unsigned: Arc<AtomicUsize>,
    cuts: Arc<AtomicUsize>,
}

/// Forward 127.0.0.1:<port> to `target`, cutting the first connection that
/// sends an unsigned payload once 1 MiB more has gone through.
async fn cutting_forwarder(target: String) -> Forwarder {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let unsigned = Arc::new(AtomicUsize::new(0));
    let cuts = Arc::new(AtomicUsize::new(0));
    let (u, c) = (unsigned.clone(), cuts.clone());
    tokio::spawn(async move {
        while let Ok((mut down, _)) = listener.accept().await {
            let mut up = tokio::net::TcpStream::connect(&target).await.unwrap();
            let (u, c) = (u.clone(), c.clone());
            tokio::spawn(async move {
                let (mut dr, mut dw) = down.split();
                let (mut ur, mut uw) = up.split();
                let requests = async {
                    let (mut buf, mut window) = (vec![0u8; 64 * 1024], Vec::new());
                    let mut cut_after: Option<usize> = None;
                    loop {
                        let n = dr.read(&mut buf).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        window.extend_from_slice(&buf[..n]);
                        let found = window
                            .windows(16)
                            .filter(|w| w == b"UNSIGNED-PAYLOAD")
                            .count();
                        if found > 0 {
                            u.fetch_add(found, Ordering::SeqCst);
                            if cut_after.is_none() && c.load(Ordering::SeqCst) == 0 {
                                cut_after = Some(MIB as usize);
                            }
                        }
                        window.drain(..window.len().saturating_sub(15));
                        if let Some(left) = cut_after {
                            if n >= left {
                                c.fetch_add(1, Ordering::SeqCst);
                                return; // both sockets drop here
                            }
                            cut_after = Some(left - n);
                        }
                        if uw.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                };
                let answers = tokio::io::copy(&mut ur, &mut dw);
                tokio::select! {
                    _ = requests => {}
                    _ = answers => {}
                }
            });
        }
    });
    Forwarder {
        addr,
        unsigned,
        cuts,
    }
}

#[tokio::test]
async fn abandoned_multipart_uploads_are_purged() {
    let Some((b, _)) = backend(5 * MIB).await else {
        return;
    };
    let staged = apprd::store::layout::upload_data("00000000-0000-4000-8000-000000000000");
    let data = Bytes::from(vec![7u8; 6 * MIB as usize]);
    b.stage_append(
        &staged,
        0,
        Box::pin(futures_util::stream::iter(vec![Ok(data)])),
        None,
    )
    .await
    .unwrap();
    // A live staging is kept...
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(b.purge_stale(3600).await.unwrap(), 0);
    // ...an orphaned multipart upload past the TTL is aborted.
    b.delete(&apprd::store::layout::stage_record(&staged))
        .await
        .unwrap();
    assert_eq!(b.purge_stale(0).await.unwrap(), 1);
    assert_eq!(b.purge_stale(0).await.unwrap(), 0);
}

#[tokio::test]
async fn an_unreachable_store_is_unavailable_quickly() {
    let Some((_, bucket)) = backend(5 * MIB).await else {
        return;
    };
    let dead = backend_at("http://127.0.0.1:9", &bucket, "").await;
    let t0 = Instant::now();
    assert!(matches!(
        dead.stat("x").await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(t0.elapsed() < Duration::from_secs(15), "{:?}", t0.elapsed());
}

#[tokio::test]
async fn a_missing_bucket_is_named_at_startup() {
    let Some(ep) = endpoint() else {
        return;
    };
    setup(&ep);
    let cfg = apprd::config::S3Config {
        bucket: "apprd-no-such-bucket".into(),
        path_style: true,
        ..Default::default()
    };
    let err = S3Backend::connect(&cfg).await.err().unwrap().to_string();
    assert!(err.contains("does not exist"), "{err}");
}

#[tokio::test]
async fn presigned_urls_read_the_object() {
    let Some((b, _)) = backend(5 * MIB).await else {
        return;
    };
    b.put("p/obj", Bytes::from_static(b"presigned"))
        .await
        .unwrap();
    let url = b.presign_get("p/obj").await.unwrap();
    assert!(url.contains("X-Amz-Signature="), "{url}");
    let resp = reqwest::get(&url).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(&resp.bytes().await.unwrap()[..], b"presigned");
}
