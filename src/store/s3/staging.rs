//! Staged uploads on S3, shared by every replica through the bucket.
//!
//! A staged object `S` (e.g. `uploads/<id>/data`) is
//! - a multipart upload *at key `S`* holding parts 1..=n, each at least the
//!   S3 minimum of 5 MiB;
//! - a *tail* object `S._tail/<uuid>` with the bytes past the last part
//!   (under one part);
//! - a record `S._stage` (JSON): upload id, part etags and sizes, tail key, size.
//!
//! `append` loads the tail into a part buffer and streams the body through it.
//! When the body's length is declared (`Content-Length`), the parts are
//! planned ahead: each is `part_size` (fixed when the staging starts, so
//! replicas with other settings agree) if 5 MiB or more would follow it, else
//! the whole rest (up to `part_size` + 5 MiB). With no tail to go first, each
//! planned part streams into UploadPart as its bytes arrive, so receiving
//! and sending overlap (received whole, hashed again for the payload
//! signature and only then sent, pushes reached 0.64-0.80 of the store's
//! in-place limit; streamed, 0.77-0.99: `bench/results/s3.md`). Its payload
//! is unsigned, since the SDK can only sign what it holds; over plain HTTP
//! that gives up little, as a GET's body is never signed either. Its chunks
//! are kept until S3 answers: if the part fails, or the body ends early, they
//! go back in front of the body and the rest of the append takes the
//! buffered path, whose parts are signed and retried by the SDK: one buffer
//! sized to the part fills and is sent in turn. When the length is unknown,
//! a buffer that reaches `part_size` is held until 5 MiB more have come, and
//! then sent; if the body ends first, the rest joins it as one last part.
//! Either way the rest at the end becomes one last part too if it is a whole
//! part or this body brought 5 MiB or more; only a rest under that becomes a
//! new tail (fresh key). So a chunked upload of 5 MiB chunks or more writes one part
//! per chunk and never reads a tail back, and small chunks still gather into
//! `part_size` parts.
//! Only then is the record rewritten (conditionally on its etag, so two
//! replicas appending at once cannot both win). A failed append therefore
//! leaves the record, and the staged object, at `offset`: parts it uploaded are
//! re-uploaded under the same numbers by the next append, or dropped by
//! CompleteMultipartUpload, which keeps only listed parts.
//! Memory per upload: one part (buffered, or kept while it streams) with a
//! declared length, two without.
//! Cost: a chunk under 5 MiB re-reads and rewrites the tail (under one part)
//! once per chunk.
//!
//! `commit` uploads the tail as the last part with UploadPartCopy (server
//! side), completes the multipart upload at `S` ("sealing" it), then copies
//! `S` to the content-addressed destination with CopyObject (multipart copy
//! above 5 GiB). The destination is unknown until the digest is checked, so
//! this one server-side copy is the price; the bytes never pass through apprd
//! (on Garage a copy only shares blocks; on AWS it takes seconds per GiB).
//! Staged bytes below one part never start a multipart upload: the tail is
//! copied to the destination, and `put_stream` of a small body is one PutObject.
//!
//! `read` (a second pass for another digest algorithm) seals first, since the
//! parts of an open multipart upload cannot be read; a sealed staging takes
//! no more appends. `abort` aborts the multipart upload and deletes the tail,
//! the sealed object and the record. Multipart uploads that outlive the upload
//! TTL without a live record are aborted by [`S3Backend::purge_multipart`].

use std::io;

use aws_sdk_s3::primitives::ByteStream as SdkBody;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::{Part, S3Backend};
use crate::store::{layout, Backend, ByteRange, ByteStream, Condition, StoreError, StoreResult};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Record {
    part_size: u64,
    size: u64,
    #[serde(default)]
    upload_id: Option<String>,
    /// Etags of parts 1..=n.
    #[serde(default)]
    parts: Vec<String>,
    /// Sizes of parts 1..=n (filled in by `load` for records written before
    /// parts varied in size: their parts are all `part_size` bytes).
    #[serde(default)]
    sizes: Vec<u64>,
    #[serde(default)]
    tail: Option<String>,
    /// All `size` bytes are a complete object at the staged key.
    #[serde(default)]
    sealed: bool,
}

impl Record {
    fn parts_bytes(&self) -> u64 {
        self.sizes.iter().sum()
    }
}

/// The smallest part S3 takes (all but the last part of an upload).
const MIN_PART: usize = 5 * 1024 * 1024;

/// The size of the next part when `rest` bytes remain to be staged: a whole
/// part if at least 5 MiB would follow it, else all of them (the last part,
/// or a tail if under 5 MiB).
fn plan_part(part_size: usize, rest: u64) -> usize {
    if rest >= (part_size + MIN_PART) as u64 {
        part_size
    } else {
        rest as usize
    }
}

/// The buffer of a sent part, emptied for a part of `cap` bytes, or a new one
/// if the SDK still holds it or it is too small.
fn reuse(sent: Bytes, cap: usize) -> BytesMut {
    if let Ok(mut b) = sent.try_into_mut() {
        if b.capacity() >= cap {
            b.clear();
            return b;
        }
        // Freed before the larger one is taken.
        drop(b);
    }
    BytesMut::with_capacity(cap)
}

/// Chunks in flight between an append's body and a streamed part.
const STREAM_DEPTH: usize = 8;

/// An append's body, with chunks put back at its front: a streamed part
/// that falls back hands back what it took, for the buffered path.
struct Unread {
    /// A stack: the next chunk is the last.
    front: Vec<Bytes>,
    body: ByteStream,
}

impl Unread {
    async fn next(&mut self) -> Option<io::Result<Bytes>> {
        match self.front.pop() {
            Some(chunk) => Some(Ok(chunk)),
            None => self.body.next().await,
        }
    }

    /// Put `chunks` back, to come next in their order.
    fn unread<I>(&mut self, chunks: I)
    where
        I: IntoIterator<Item = Bytes>,
        I::IntoIter: DoubleEndedIterator,
    {
        self.front.extend(chunks.into_iter().rev());
    }
}

fn inconsistent(staged: &str, why: &str) -> StoreError {
    StoreError::Io(std::io::Error::other(format!(
        "staged upload {staged}: {why}"
    )))
}

impl S3Backend {
    /// The record and its etag; a fresh record if there is none yet.
    async fn load(&self, staged: &str) -> StoreResult<(Record, Option<String>)> {
        match self.read(&layout::stage_record(staged)).await {
            Ok((data, meta)) => {
                let mut rec: Record = serde_json::from_slice(&data)
                    .map_err(|e| inconsistent(staged, &format!("corrupt record: {e}")))?;
                rec.sizes.resize(rec.parts.len(), rec.part_size);
                Ok((rec, Some(meta.etag)))
            }
            Err(StoreError::NotFound) => Ok((
                Record {
                    part_size: self.part_size,
                    ..Record::default()
                },
                None,
            )),
            Err(e) => Err(e),
        }
    }

    /// Write the record if nobody changed it since we read `etag`.
    async fn save(&self, staged: &str, rec: &Record, etag: Option<String>) -> StoreResult<String> {
        let data = Bytes::from(serde_json::to_vec(rec).expect("records serialize"));
        let cond = etag.map_or(Condition::Absent, Condition::Matches);
        Ok(self
            .put_if(&layout::stage_record(staged), data, cond)
            .await?
            .etag)
    }

    /// A multipart upload with no parts cannot be completed: drop it.
    async fn drop_empty_multipart(&self, staged: &str, rec: &mut Record) {
        if rec.parts.is_empty() {
            if let Some(id) = rec.upload_id.take() {
                let _ = self.abort_multipart(staged, &id).await;
            }
        }
    }

    pub(super) async fn staged_append(
        &self,
        staged: &str,
        offset: u64,
        body: ByteStream,
        len: Option<u64>,
    ) -> StoreResult<u64> {
        let mut body = Unread {
            front: Vec::new(),
            body: crate::store::declared(body, len),
        };
        let (mut rec, mut etag) = self.load(staged).await?;
        if rec.sealed {
            return Err(inconsistent(staged, "sealed by a read; no more appends"));
        }
        // Bytes past `offset` inside the tail may be cut (an append whose
        // session update failed); full parts cannot be.
        if offset > rec.size || offset < rec.parts_bytes() {
            return Err(StoreError::OffsetMismatch {
                expected: offset,
                actual: rec.size,
            });
        }
        let part_size = rec.part_size as usize;
        // Room for a part and the bytes a last part may gain (see the module doc).
        let cap = part_size + MIN_PART;
        let keep = (offset - rec.parts_bytes()) as usize;
        let mut size = offset;
        let mut left = len;
        // With the body's length known and no tail to go first, each planned
        // part streams to S3 as it arrives.
        if keep == 0 {
            while let Some(l) = left {
                let part = plan_part(part_size, l);
                if part < MIN_PART
                    || !self
                        .stream_part(staged, &mut rec, &mut etag, &mut body, part)
                        .await?
                {
                    break;
                }
                size += part as u64;
                left = Some(l - part as u64);
            }
        }
        // Otherwise (or after a streamed part fell back), with the length
        // known, each buffer is sized to the part it will become and sent
        // when full: one buffer at a time. Unknown, a full part is held
        // (below) and two buffers take turns.
        let mut target = left.map(|l| plan_part(part_size, keep as u64 + l));
        let mut buf = BytesMut::with_capacity(target.unwrap_or(cap));
        if keep > 0 {
            let tail = rec
                .tail
                .clone()
                .ok_or_else(|| inconsistent(staged, "tail missing"))?;
            // Streamed into the part buffer: reading the tail whole first
            // held two copies of up to a part beside the buffer.
            let range = ByteRange {
                start: 0,
                end: keep as u64 - 1,
            };
            let mut data = self.get(&tail, Some(range)).await?;
            while let Some(chunk) = data.next().await {
                buf.extend_from_slice(&chunk?);
            }
            if buf.len() < keep {
                return Err(inconsistent(staged, "tail too short"));
            }
        }
        // Parts go into `rec` as they are sent; the bucket's record changes
        // only at the end (or, with no part in it yet, when the upload starts).
        // A whole part waits in `held` until 5 MiB more have come (then it is
        // sent) or the body ends (then the rest joins it). Two buffers take
        // turns, so no byte is copied twice and none is ever grown.
        let mut held: Option<BytesMut> = None;
        let mut spare: Option<BytesMut> = None;
        while let Some(chunk) = body.next().await {
            let mut chunk = chunk.map_err(StoreError::Body)?;
            size += chunk.len() as u64;
            // `declared` fails a body longer than `len`.
            left = left.map(|l| l.saturating_sub(chunk.len() as u64));
            while !chunk.is_empty() {
                if buf.is_empty() && held.is_none() && chunk.len() >= cap {
                    // A chunk holding a part and the next one's minimum goes out as it is.
                    let part = chunk.split_to(part_size);
                    self.send_part(staged, &mut rec, &mut etag, part).await?;
                    target = left.map(|l| plan_part(part_size, l + chunk.len() as u64));
                    continue;
                }
                let take = (target.unwrap_or(part_size) - buf.len()).min(chunk.len());
                buf.extend_from_slice(&chunk.split_to(take));
                if let (Some(t), Some(l)) = (target, left) {
                    let rest = l + chunk.len() as u64;
                    if buf.len() == t && rest > 0 {
                        let part = std::mem::take(&mut buf).freeze();
                        self.send_part(staged, &mut rec, &mut etag, part.clone())
                            .await?;
                        let next = plan_part(part_size, rest);
                        target = Some(next);
                        buf = reuse(part, next);
                    }
                    continue;
                }
                if buf.len() >= MIN_PART {
                    if let Some(whole) = held.take() {
                        let part = whole.freeze();
                        self.send_part(staged, &mut rec, &mut etag, part.clone())
                            .await?;
                        // Sent: the buffer is ours alone again, for the next part.
                        spare = part.try_into_mut().ok();
                    }
                }
                if buf.len() == part_size {
                    let mut next = spare.take().unwrap_or_else(|| BytesMut::with_capacity(cap));
                    next.clear();
                    held = Some(std::mem::replace(&mut buf, next));
                }
            }
        }
        let brought = (size - offset) as usize;
        if brought == 0 && offset == rec.size {
            return Ok(size);
        }
        if let Some(mut last) = held.take() {
            // Under 5 MiB followed it (more would have sent it): one last part.
            last.extend_from_slice(&buf.split());
            self.send_part(staged, &mut rec, &mut etag, last.freeze())
                .await?;
        } else if buf.len() >= part_size || (buf.len() >= MIN_PART && brought >= MIN_PART) {
            let last = buf.split().freeze();
            self.send_part(staged, &mut rec, &mut etag, last).await?;
        }
        let new_tail = if buf.is_empty() {
            None
        } else {
            let key = layout::stage_tail(staged);
            self.put(&key, buf.freeze()).await?;
            Some(key)
        };
        let old_tail = rec.tail.take();
        rec.tail = new_tail.clone();
        rec.size = size;
        match self.save(staged, &rec, etag).await {
            Ok(_) => {
                if let Some(t) = old_tail {
                    let _ = self.delete(&t).await;
                }
                Ok(size)
            }
            Err(e) => {
                if let Some(t) = new_tail {
                    let _ = self.delete(&t).await;
                }
                Err(e)
            }
        }
    }

    /// The multipart upload's id, starting it for the first part.
    async fn upload_id(
        &self,
        staged: &str,
        rec: &mut Record,
        etag: &mut Option<String>,
    ) -> StoreResult<String> {
        if let Some(id) = &rec.upload_id {
            return Ok(id.clone());
        }
        // Recorded at once so that no multipart upload is ever orphaned.
        let id = self.create_multipart(staged).await?;
        rec.upload_id = Some(id.clone());
        *etag = Some(self.save(staged, rec, etag.take()).await?);
        Ok(id)
    }

    /// Send the next `len` bytes of `body` as the next part while they
    /// arrive. They are kept until S3 answers: if the part fails, or the body
    /// ends first, they go back into `body` and `false` tells the caller to
    /// buffer the part (sent with the SDK's retries). A body error fails.
    async fn stream_part(
        &self,
        staged: &str,
        rec: &mut Record,
        etag: &mut Option<String>,
        body: &mut Unread,
        len: usize,
    ) -> StoreResult<bool> {
        let id = self.upload_id(staged, rec, etag).await?;
        let n = rec.parts.len() as i32 + 1;
        let (tx, mut rx) = mpsc::channel(STREAM_DEPTH);
        let feed = async {
            let (mut taken, mut sent) = (Vec::new(), 0);
            let mut failed = None;
            while sent < len {
                let mut chunk = match body.next().await {
                    Some(Ok(chunk)) => chunk,
                    Some(Err(e)) => {
                        failed = Some(e);
                        break;
                    }
                    None => break,
                };
                if chunk.len() > len - sent {
                    body.unread([chunk.split_off(len - sent)]);
                }
                sent += chunk.len();
                taken.push(chunk.clone());
                if tx.send(Ok(chunk)).await.is_err() {
                    break; // the request failed and dropped its body
                }
            }
            if sent < len {
                // Cut the request: S3 must not see a short part as complete.
                let _ = tx.send(Err(io::Error::other("part cut short"))).await;
            }
            drop(tx);
            (taken, sent, failed)
        };
        // The request's body: what the feed sends.
        let request = SdkBody::from_body_1_x(http_body_util::StreamBody::new(
            futures_util::stream::poll_fn(move |cx| {
                rx.poll_recv(cx)
                    .map(|c| c.map(|r| r.map(http_body::Frame::data)))
            }),
        ));
        let upload = self.upload_part(staged, &id, n, Part::Streamed(request, len as u64));
        let ((taken, sent, failed), result) = futures_util::future::join(feed, upload).await;
        if let Some(e) = failed {
            return Err(StoreError::Body(e));
        }
        match result {
            Ok(part) if sent == len => {
                rec.parts.push(part);
                rec.sizes.push(len as u64);
                return Ok(true);
            }
            // A body that ended early is the sender's doing, not the store's.
            Err(e) if sent == len => {
                tracing::warn!(staged, part = n, error = %e, "streamed part failed; buffering it");
            }
            _ => {}
        }
        body.unread(taken);
        Ok(false)
    }

    /// Upload the next part, starting the multipart upload on the first one.
    async fn send_part(
        &self,
        staged: &str,
        rec: &mut Record,
        etag: &mut Option<String>,
        data: Bytes,
    ) -> StoreResult<()> {
        let id = self.upload_id(staged, rec, etag).await?;
        let n = rec.parts.len() as i32 + 1;
        let len = data.len() as u64;
        rec.parts
            .push(self.upload_part(staged, &id, n, Part::Held(data)).await?);
        rec.sizes.push(len);
        Ok(())
    }

    /// Complete the multipart upload (tail as the last part) at the staged key.
    async fn seal(
        &self,
        staged: &str,
        mut rec: Record,
        etag: Option<String>,
    ) -> StoreResult<Record> {
        let Some(id) = rec.upload_id.clone() else {
            return Err(inconsistent(staged, "nothing to seal"));
        };
        let mut parts = rec.parts.clone();
        if let Some(tail) = &rec.tail {
            let n = parts.len() as i32 + 1;
            parts.push(self.copy_part(staged, &id, n, tail, None).await?);
        }
        match self.complete_multipart(staged, &id, &parts).await {
            Ok(()) => {}
            // Completed by an earlier attempt whose record update was lost.
            Err(StoreError::NotFound)
                if self.stat(staged).await?.map(|m| m.size) == Some(rec.size) => {}
            Err(e) => return Err(e),
        }
        let old_tail = rec.tail.take();
        rec.upload_id = None;
        rec.parts.clear();
        rec.sizes.clear();
        rec.sealed = true;
        self.save(staged, &rec, etag).await?;
        if let Some(t) = old_tail {
            let _ = self.delete(&t).await;
        }
        Ok(rec)
    }

    pub(super) async fn staged_read(&self, staged: &str) -> StoreResult<ByteStream> {
        let (mut rec, etag) = self.load(staged).await?;
        self.drop_empty_multipart(staged, &mut rec).await;
        if rec.upload_id.is_some() {
            self.seal(staged, rec, etag).await?;
            return self.get(staged, None).await;
        }
        match (&rec.tail, rec.sealed) {
            (_, true) => self.get(staged, None).await,
            (Some(tail), false) => self.get(tail, None).await,
            (None, false) => Ok(Box::pin(futures_util::stream::empty())),
        }
    }

    pub(super) async fn staged_commit(&self, staged: &str, dest: &str) -> StoreResult<()> {
        let (mut rec, etag) = self.load(staged).await?;
        self.drop_empty_multipart(staged, &mut rec).await;
        if rec.upload_id.is_some() {
            rec = self.seal(staged, rec, etag).await?;
        }
        match (&rec.tail, rec.sealed) {
            (_, true) => self.copy(staged, dest, rec.size).await?,
            (Some(tail), false) => self.copy(tail, dest, rec.size).await?,
            (None, false) => {
                self.put(dest, Bytes::new()).await?;
            }
        }
        self.staged_abort(staged).await
    }

    pub(super) async fn staged_abort(&self, staged: &str) -> StoreResult<()> {
        let (rec, _) = self.load(staged).await?;
        if let Some(id) = &rec.upload_id {
            self.abort_multipart(staged, id).await?;
        }
        // Tails of appends that failed after writing one are swept too.
        let tails = self.list(&layout::stage_tail_dir(staged)).await?;
        for key in rec.tail.iter().chain(tails.iter()) {
            self.delete(key).await?;
        }
        self.delete(staged).await?;
        // The record goes last: an abort that fails half way can be repeated.
        self.delete(&layout::stage_record(staged)).await
    }

    /// A body of less than one part is one PutObject; a larger one streams
    /// through a staged multipart upload.
    pub(super) async fn staged_put_stream(
        &self,
        staged: &str,
        dest: &str,
        mut body: ByteStream,
    ) -> StoreResult<u64> {
        // Up to one part is read ahead, never more: a buffer grown past it
        // would double and copy.
        let part_size = self.part_size as usize;
        let mut head = BytesMut::with_capacity(part_size);
        let overflow = loop {
            match body.next().await {
                Some(chunk) => {
                    let chunk = chunk.map_err(StoreError::Body)?;
                    if head.len() + chunk.len() > part_size {
                        break chunk;
                    }
                    head.extend_from_slice(&chunk);
                }
                None => {
                    let size = head.len() as u64;
                    self.put(dest, head.freeze()).await?;
                    return Ok(size);
                }
            }
        };
        self.staged_abort(staged).await?;
        let first = futures_util::stream::iter([Ok(head.freeze()), Ok(overflow)]);
        let result = async {
            let size = self
                .staged_append(staged, 0, Box::pin(first.chain(body)), None)
                .await?;
            self.staged_commit(staged, dest).await?;
            Ok(size)
        }
        .await;
        if result.is_err() {
            let _ = self.staged_abort(staged).await;
        }
        result
    }

    /// Abort multipart uploads under `uploads/` started more than `ttl_secs`
    /// ago whose staging record is gone, stale, or names another upload.
    pub(super) async fn purge_multipart(&self, ttl_secs: u64) -> StoreResult<usize> {
        let cutoff = chrono::Utc::now().timestamp() - ttl_secs as i64;
        let mut purged = 0;
        let (mut key_marker, mut id_marker) = (None, None);
        loop {
            let page = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(self.key(layout::UPLOADS))
                .set_key_marker(key_marker)
                .set_upload_id_marker(id_marker)
                .send()
                .await
                .map_err(|e| super::store_err("ListMultipartUploads", layout::UPLOADS, e))?;
            for u in page.uploads() {
                let (Some(key), Some(id)) = (u.key(), u.upload_id()) else {
                    continue;
                };
                let Some(staged) = key.strip_prefix(&self.prefix) else {
                    continue;
                };
                if u.initiated().map(|t| t.secs()).unwrap_or(0) > cutoff {
                    continue;
                }
                let record = layout::stage_record(staged);
                let live = match self.load(staged).await {
                    Ok((rec, Some(_))) if rec.upload_id.as_deref() == Some(id) => {
                        self.modified(&record).await?.unwrap_or(0) > cutoff
                    }
                    _ => false,
                };
                if !live {
                    self.abort_multipart(staged, id).await?;
                    purged += 1;
                }
            }
            if page.is_truncated() != Some(true) {
                break;
            }
            key_marker = page.next_key_marker().map(str::to_string);
            id_marker = page.next_upload_id_marker().map(str::to_string);
            if key_marker.is_none() {
                break;
            }
        }
        Ok(purged)
    }
}
