//! How much memory an S3 staged append holds, counted by this test binary's
//! allocator against a real S3-compatible server (the environment is
//! `s3_env`'s). Its own binary, so that no other test allocates meanwhile.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use apprd::store::{Backend, ByteStream};
use bytes::Bytes;

mod s3_env;

/// The system allocator, keeping the bytes live now and their peak.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Relaxed) + layout.size();
            PEAK.fetch_max(now, Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        System.dealloc(p, layout);
        LIVE.fetch_sub(layout.size(), Relaxed);
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const MIB: usize = 1024 * 1024;

/// Peak bytes allocated above what was live when `f` started.
async fn peak_during<F: std::future::Future>(f: F) -> (usize, F::Output) {
    let base = LIVE.load(Relaxed);
    PEAK.store(base, Relaxed);
    let out = f.await;
    (PEAK.load(Relaxed) - base, out)
}

#[tokio::test]
async fn a_declared_length_needs_no_part_buffer() {
    let part = 8 * MIB;
    let Some((b, _)) = s3_env::backend(part as u64).await else {
        return;
    };

    // 42 MiB as a client sends it (64 KiB pieces): parts of 8, 8, 8, 8, 10 MiB.
    // Pieces are slices of one buffer, made as they are taken: the body
    // itself allocates nothing the count could mistake for staging.
    let data = Bytes::from((0..42 * MIB).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    let mut peaks = Vec::new();
    for declared in [Some(data.len() as u64), None] {
        let staged = format!("mem-{}", declared.is_some());
        let d = data.clone();
        let body: ByteStream = Box::pin(futures_util::stream::iter(
            (0..d.len())
                .step_by(64 * 1024)
                .map(move |at| Ok(d.slice(at..(at + 64 * 1024).min(d.len())))),
        ));
        let (peak, size) = peak_during(b.stage_append(&staged, 0, body, declared)).await;
        assert_eq!(size.unwrap(), data.len() as u64);
        b.stage_commit(&staged, &format!("{staged}-done"))
            .await
            .unwrap();
        peaks.push(peak);
    }
    eprintln!(
        "peak above start: declared {} MiB, undeclared {} MiB",
        peaks[0] / MIB,
        peaks[1] / MIB
    );
    // Declared parts stream: the chunks kept for a retry are the body's own,
    // so staging allocates no part buffer (a buffered part was 10 MiB here).
    assert!(peaks[0] < 2 * MIB, "declared: {} bytes", peaks[0]);
    // Without a length a full part waits for the next one's 5 MiB: two buffers.
    assert!(peaks[1] > 2 * part, "undeclared: {} bytes", peaks[1]);
    for declared in [true, false] {
        let (back, _) = b.read(&format!("mem-{declared}-done")).await.unwrap();
        assert!(back[..] == data[..]);
    }
}
