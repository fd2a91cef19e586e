//! The backend contract, and S3-only behaviour, against a real S3-compatible
//! server. `scripts/test.sh` starts moto and sets `APPRD_TEST_S3_ENDPOINT`;
//! with `APPRD_REQUIRE_S3=1` a missing endpoint fails instead of skipping.
//! Credentials and region default to moto's "anything goes".

use std::sync::Arc;
use std::time::{Duration, Instant};

use apprd::store::s3::{client, S3Backend};
use apprd::store::{contract, Backend, Condition, StoreError};
use bytes::Bytes;

const MIB: u64 = 1024 * 1024;

mod s3_env;
use s3_env::{backend, endpoint, setup};

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
    let (c, _) = client(true).await;
    let b = S3Backend::new(c, &bucket, "pfx", 8 * MIB);
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
    let conf = {
        let (c, _) = client(true).await;
        c.config()
            .to_builder()
            .endpoint_url("http://127.0.0.1:9")
            .build()
    };
    let dead = S3Backend::new(aws_sdk_s3::Client::from_conf(conf), &bucket, "", 5 * MIB);
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
