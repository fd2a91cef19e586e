//! The behaviour every backend must have. Run against the filesystem backend
//! in unit tests and against a real S3-compatible server in integration tests.

use bytes::Bytes;
use futures_util::{stream, TryStreamExt};

use super::{Backend, ByteRange, ByteStream, Condition, StoreError};

fn body(parts: &[&'static [u8]]) -> ByteStream {
    let items: Vec<std::io::Result<Bytes>> =
        parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
    Box::pin(stream::iter(items))
}

fn failing_body(first: &'static [u8]) -> ByteStream {
    let items = vec![
        Ok(Bytes::from_static(first)),
        Err(std::io::Error::other("client went away")),
    ];
    Box::pin(stream::iter(items))
}

async fn collect(s: ByteStream) -> Vec<u8> {
    s.try_fold(Vec::new(), |mut acc, b| async move {
        acc.extend_from_slice(&b);
        Ok(acc)
    })
    .await
    .unwrap()
}

/// Run every check; `ns` keeps runs apart when a store is shared.
pub async fn run(b: &dyn Backend, ns: &str) {
    let k = |s: &str| format!("{ns}/{s}");

    // put / read / stat / get with ranges
    assert!(b.stat(&k("a/missing")).await.unwrap().is_none());
    assert!(matches!(
        b.read(&k("a/missing")).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        b.get(&k("a/missing"), None).await,
        Err(StoreError::NotFound)
    ));
    let m = b
        .put(&k("a/one"), Bytes::from_static(b"hello world"))
        .await
        .unwrap();
    assert_eq!(m.size, 11);
    let (data, meta) = b.read(&k("a/one")).await.unwrap();
    assert_eq!(&data[..], b"hello world");
    assert_eq!(meta.etag, m.etag);
    assert_eq!(b.stat(&k("a/one")).await.unwrap().unwrap().size, 11);
    let part = collect(
        b.get(&k("a/one"), Some(ByteRange { start: 6, end: 10 }))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(part, b"world");
    assert_eq!(
        collect(b.get(&k("a/one"), None).await.unwrap()).await,
        b"hello world"
    );

    // conditional writes
    let c = k("a/cond");
    let first = b
        .put_if(&c, Bytes::from_static(b"1"), Condition::Absent)
        .await
        .unwrap();
    assert!(matches!(
        b.put_if(&c, Bytes::from_static(b"x"), Condition::Absent)
            .await,
        Err(StoreError::PreconditionFailed)
    ));
    let second = b
        .put_if(
            &c,
            Bytes::from_static(b"2"),
            Condition::Matches(first.etag.clone()),
        )
        .await
        .unwrap();
    assert_ne!(first.etag, second.etag);
    assert!(matches!(
        b.put_if(
            &c,
            Bytes::from_static(b"3"),
            Condition::Matches(first.etag.clone())
        )
        .await,
        Err(StoreError::PreconditionFailed)
    ));
    assert_eq!(&b.read(&c).await.unwrap().0[..], b"2");

    // list and delete
    b.put(&k("a/sub/two"), Bytes::from_static(b"2"))
        .await
        .unwrap();
    let mut keys = b.list(&k("a/")).await.unwrap();
    keys.sort();
    assert_eq!(keys, vec![k("a/cond"), k("a/one"), k("a/sub/two")]);
    b.delete(&k("a/sub/two")).await.unwrap();
    b.delete(&k("a/sub/two")).await.unwrap();
    assert!(b.stat(&k("a/sub/two")).await.unwrap().is_none());
    assert!(b.list(&k("nothing/")).await.unwrap().is_empty());

    // staging: appends, a failed append, offsets, commit
    let s = k("stage/1");
    assert_eq!(
        b.stage_append(&s, 0, body(&[b"abc", b"def"]), Some(6))
            .await
            .unwrap(),
        6
    );
    assert!(matches!(
        b.stage_append(&s, 6, failing_body(b"zzz"), None).await,
        Err(StoreError::Body(_))
    ));
    assert!(matches!(
        b.stage_append(&s, 9, body(&[b"x"]), None).await,
        Err(StoreError::OffsetMismatch { .. })
    ));
    // A body longer than it declared fails, and leaves the staging as it was.
    assert!(matches!(
        b.stage_append(&s, 6, body(&[b"gh", b"ijk"]), Some(3)).await,
        Err(StoreError::Body(_))
    ));
    assert_eq!(
        b.stage_append(&s, 6, body(&[b"ghi"]), None).await.unwrap(),
        9
    );
    assert_eq!(collect(b.stage_read(&s).await.unwrap()).await, b"abcdefghi");
    assert!(b.stat(&k("final/1")).await.unwrap().is_none());
    b.stage_commit(&s, &k("final/1")).await.unwrap();
    assert_eq!(&b.read(&k("final/1")).await.unwrap().0[..], b"abcdefghi");

    // an empty staged object commits as an empty object
    b.stage_commit(&k("stage/empty"), &k("final/empty"))
        .await
        .unwrap();
    assert_eq!(b.stat(&k("final/empty")).await.unwrap().unwrap().size, 0);

    // abort leaves nothing; put_stream is all or nothing
    b.stage_append(&k("stage/2"), 0, body(&[b"junk"]), None)
        .await
        .unwrap();
    b.stage_abort(&k("stage/2")).await.unwrap();
    assert!(b
        .put_stream(&k("stage/3"), &k("final/3"), failing_body(b"half"))
        .await
        .is_err());
    assert!(b.stat(&k("final/3")).await.unwrap().is_none());
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let big_body: ByteStream = Box::pin(stream::iter(
        big.chunks(65_536)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    ));
    assert_eq!(
        b.put_stream(&k("stage/4"), &k("final/4"), big_body)
            .await
            .unwrap(),
        big.len() as u64
    );
    let back = b
        .get(&k("final/4"), None)
        .await
        .unwrap()
        .map_ok(|c| c.len())
        .try_collect::<Vec<_>>()
        .await;
    assert_eq!(back.unwrap().iter().sum::<usize>(), big.len());
    assert_eq!(
        collect(b.get(&k("final/4"), None).await.unwrap()).await,
        big
    );

    multipart_sized(b, &k).await;
    list_pages(b, &k).await;

    b.check().await.unwrap();
    for key in b.list(&format!("{ns}/")).await.unwrap() {
        b.delete(&key).await.unwrap();
    }
    assert!(b.list(&format!("{ns}/")).await.unwrap().is_empty());
}

/// Pages of a listing come in byte order of the whole keys, across nested
/// folders ("a-b/_r" < "a/0/_r" < "a/_r" < "a/b/_r"), and chaining them by
/// their last key covers every key exactly once.
async fn list_pages(b: &dyn Backend, k: &dyn Fn(&str) -> String) {
    let names = [
        "lp/a/_r",
        "lp/a-b/_r",
        "lp/a/b/_r",
        "lp/a/0/_r",
        "lp/b",
        "lp/c/d/e",
    ];
    for n in names {
        b.put(&k(n), Bytes::from_static(b"x")).await.unwrap();
    }
    let mut want: Vec<String> = names.iter().map(|n| k(n)).collect();
    want.sort();
    let prefix = k("lp/");
    let (mut got, mut after) = (Vec::new(), None::<String>);
    loop {
        let page = b.list_page(&prefix, after.as_deref(), 2).await.unwrap();
        assert!(page.len() <= 2, "{page:?}");
        let Some(last) = page.last().cloned() else {
            break;
        };
        got.extend(page);
        after = Some(last);
    }
    assert_eq!(got, want);
    assert_eq!(b.list_page(&prefix, None, usize::MAX).await.unwrap(), want);
    let mid = k("lp/a/c");
    let rest: Vec<String> = want.iter().filter(|x| **x > mid).cloned().collect();
    assert_eq!(b.list_page(&prefix, Some(&mid), 100).await.unwrap(), rest);
    assert!(b
        .list_page(&k("nothing/"), None, 10)
        .await
        .unwrap()
        .is_empty());
}

fn pattern(from: usize, len: usize) -> Vec<u8> {
    (from..from + len).map(|i| (i % 251) as u8).collect()
}

/// `data` as a body of `chunk`-byte pieces.
pub fn chunked(data: &[u8], chunk: usize) -> ByteStream {
    let items: Vec<std::io::Result<Bytes>> = data
        .chunks(chunk)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    Box::pin(stream::iter(items))
}

/// `data` in 64 KiB chunks, then an error: a client that went away.
pub fn failing(data: &[u8]) -> ByteStream {
    let mut items: Vec<std::io::Result<Bytes>> = data
        .chunks(64 * 1024)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    items.push(Err(std::io::Error::other("client went away")));
    Box::pin(stream::iter(items))
}

/// Staged appends across several multipart parts (parts are 5..8 MiB on S3),
/// with a failed append in the middle of a part.
async fn multipart_sized(b: &dyn Backend, k: &dyn Fn(&str) -> String) {
    const MIB: usize = 1024 * 1024;
    let all = pattern(0, 14 * MIB + 123);
    let s = k("stage/big");
    let cuts = [3 * MIB, 11 * MIB, all.len()];
    let mut at = 0;
    for (i, end) in cuts.into_iter().enumerate() {
        if i == 1 {
            // Fails after 4 MiB: nothing of it may remain.
            assert!(matches!(
                b.stage_append(&s, at as u64, failing(&all[at..at + 4 * MIB]), None)
                    .await,
                Err(StoreError::Body(_))
            ));
        }
        // Declared lengths: backends may plan their parts with them.
        let len = Some((end - at) as u64);
        let got = b
            .stage_append(&s, at as u64, chunked(&all[at..end], 100_000), len)
            .await
            .unwrap();
        assert_eq!(got, end as u64);
        at = end;
    }
    assert!(collect(b.stage_read(&s).await.unwrap()).await == all);
    b.stage_commit(&s, &k("final/big")).await.unwrap();
    assert!(collect(b.get(&k("final/big"), None).await.unwrap()).await == all);
    let r = ByteRange {
        start: 5 * MIB as u64 - 3,
        end: 5 * MIB as u64 + 2,
    };
    assert_eq!(
        collect(b.get(&k("final/big"), Some(r)).await.unwrap()).await,
        &all[r.start as usize..=r.end as usize]
    );

    // commit straight from an open multipart upload (no read first)
    let s2 = k("stage/big2");
    b.stage_append(&s2, 0, chunked(&all[..9 * MIB], 1 << 20), None)
        .await
        .unwrap();
    b.stage_commit(&s2, &k("final/big2")).await.unwrap();
    assert!(collect(b.get(&k("final/big2"), None).await.unwrap()).await == all[..9 * MIB]);
    b.stage_abort(&k("stage/never")).await.unwrap();
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn filesystem_backend_honours_the_contract() {
        let dir = tempfile::tempdir().unwrap();
        let fs = super::super::fs::FsBackend::open(dir.path()).await.unwrap();
        super::run(&fs, "contract").await;
    }
}
