//! Filesystem backend: one file per key under a root folder.
//!
//! Every visible write goes temp file -> fsync -> rename, so a crash leaves the
//! old object or the new one, never a torn one. Conditional writes are
//! serialised by a mutex: the filesystem store serves one process.

use std::io::{self, SeekFrom};
#[cfg(unix)]
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use tokio::fs;

use super::{Backend, ByteRange, ByteStream, Condition, Meta, StoreError, StoreResult};

/// Size of each read of a streamed file: one blocking-pool hop, and one socket
/// write, per block. 1.5 MiB pulled 2-4% faster than 1 MiB for 0.5-2 MiB more
/// peak RSS; 2 MiB cost 7 MiB more, and at glibc's 4 MiB mmap threshold
/// (`main.rs`) every block became a fresh mapping and pulls halved.
const READ_BLOCK: usize = 1536 * 1024;

/// Bytes of records the backend keeps (see [`FsBackend::records`]).
const RECORD_CACHE_BYTES: u64 = 8 << 20;

pub struct FsBackend {
    root: PathBuf,
    cas: tokio::sync::Mutex<()>,
    /// Records (tags, revision links, session records) as last read, with the
    /// `Meta` of the file they came from. A read still stats the file and
    /// uses the kept bytes only while the stat matches: one syscall instead
    /// of open, fstat, read and close, on every manifest request. Records are
    /// only ever replaced by rename (a new inode), and this backend's own
    /// writes drop the entry as well.
    records: quick_cache::sync::Cache<String, (Meta, Bytes), RecordWeight>,
}

#[derive(Clone)]
struct RecordWeight;

impl quick_cache::Weighter<String, (Meta, Bytes)> for RecordWeight {
    fn weight(&self, key: &String, value: &(Meta, Bytes)) -> u64 {
        (key.len() + value.0.etag.len() + value.1.len() + 96) as u64
    }
}

impl FsBackend {
    /// Open (creating) a store at `root`; leftovers of interrupted writes are removed.
    pub async fn open(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        fs::create_dir_all(&root).await?;
        let tmp = root.join("_tmp");
        let _ = fs::remove_dir_all(&tmp).await;
        fs::create_dir_all(&tmp).await?;
        Ok(FsBackend {
            root,
            cas: tokio::sync::Mutex::new(()),
            records: quick_cache::sync::Cache::with_weighter(
                16 * 1024,
                RECORD_CACHE_BYTES,
                RecordWeight,
            ),
        })
    }

    fn path(&self, key: &str) -> PathBuf {
        debug_assert!(
            !key.split('/').any(|c| c == ".." || c == "."),
            "bad key {key}"
        );
        self.root.join(key)
    }

    fn temp_path(&self) -> PathBuf {
        self.root
            .join("_tmp")
            .join(uuid::Uuid::new_v4().to_string())
    }

    /// Create `path`'s parent folders. Retried because a concurrent delete
    /// prunes empty folders up to the root: one that lands between two of
    /// `create_dir_all`'s steps fails it with NotFound, or with AlreadyExists
    /// when the folder went between its mkdir and its check.
    fn make_parent(path: &Path) -> io::Result<()> {
        use io::ErrorKind::{AlreadyExists, NotFound};
        let Some(parent) = path.parent() else {
            return Ok(());
        };
        for _ in 0..8 {
            match std::fs::create_dir_all(parent) {
                Err(e) if matches!(e.kind(), NotFound | AlreadyExists) => continue,
                other => return other,
            }
        }
        std::fs::create_dir_all(parent)
    }

    /// Rename into place, creating parents; retried because a concurrent
    /// delete may prune the parent folder after it was made.
    fn install(from: &Path, to: &Path) -> io::Result<()> {
        for attempt in 0..3 {
            Self::make_parent(to)?;
            match std::fs::rename(from, to) {
                Err(e) if e.kind() == io::ErrorKind::NotFound && attempt < 2 => continue,
                other => return other,
            }
        }
        unreachable!()
    }

    /// Remove empty folders from `path`'s parent up to the root.
    fn prune(root: &Path, path: &Path) {
        let mut dir = path.to_path_buf();
        while dir.pop() && dir != root {
            if std::fs::remove_dir(&dir).is_err() {
                break;
            }
        }
    }
}

/// Run a whole filesystem operation on the blocking pool in one hop: each
/// `tokio::fs` call is a hop of its own, and a manifest GET made of a dozen
/// of them spent more time switching threads than reading. `stat` and `read`
/// (records and manifests, bounded by the manifest size limit) skip even that
/// one hop: from the page cache they take microseconds, the hop ten times
/// more (bench/: 14k -> 26k manifest GETs per second on one core).
/// The work starts when this is called, not when the result is awaited, so a
/// caller can keep one operation in flight while it does something else
/// (`read_blocks` and `BatchWriter` do).
fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> impl std::future::Future<Output = io::Result<T>> + Send + 'static {
    let task = tokio::task::spawn_blocking(f);
    async move {
        task.await
            .map_err(|e| io::Error::other(format!("blocking task failed: {e}")))?
    }
}

fn meta_of(m: &std::fs::Metadata) -> Meta {
    let mtime = m
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    #[cfg(unix)]
    let ino = m.ino();
    #[cfg(not(unix))]
    let ino = 0u64;
    Meta {
        size: m.len(),
        etag: format!("{ino:x}-{mtime:x}-{:x}", m.len()),
    }
}

fn not_found(e: io::Error) -> StoreError {
    if e.kind() == io::ErrorKind::NotFound {
        StoreError::NotFound
    } else {
        StoreError::Io(e)
    }
}

#[async_trait]
impl Backend for FsBackend {
    fn name(&self) -> &'static str {
        "filesystem"
    }

    async fn stat(&self, key: &str) -> StoreResult<Option<Meta>> {
        match std::fs::metadata(self.path(key)) {
            Ok(m) if m.is_file() => Ok(Some(meta_of(&m))),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn get(&self, key: &str, range: Option<ByteRange>) -> StoreResult<ByteStream> {
        let path = self.path(key);
        let start = range.map_or(0, |r| r.start);
        let (f, len) = blocking(move || {
            let mut f = std::fs::File::open(path)?;
            if start > 0 {
                io::Seek::seek(&mut f, SeekFrom::Start(start))?;
            }
            let len = f.metadata()?.len();
            Ok((f, len))
        })
        .await
        .map_err(not_found)?;
        let end = range.map_or(len, |r| (r.end + 1).min(len));
        let how = if super::layout::is_blob(key) {
            Fetch::Map
        } else {
            Fetch::Copy
        };
        Ok(read_blocks(f, start, end.max(start), how))
    }

    async fn read(&self, key: &str) -> StoreResult<(Bytes, Meta)> {
        let path = self.path(key);
        let cacheable = !super::layout::is_blob(key);
        if cacheable {
            let now = std::fs::metadata(&path).map_err(not_found)?;
            if let Some((meta, bytes)) = self.records.get(key) {
                if now.is_file() && meta_of(&now) == meta {
                    return Ok((bytes, meta));
                }
            }
        }
        // What is read whole (records, manifests) is replaced by rename, never
        // changed in place, so the size from `fstat` is the size to read:
        // open, fstat, read, close. (`read_to_end` adds an fstat, a seek and
        // a read at EOF: 7 syscalls where 4 do.)
        let read = || -> io::Result<(Vec<u8>, Meta)> {
            let mut f = std::fs::File::open(&path)?;
            let meta = meta_of(&f.metadata()?);
            let mut buf = vec![0; meta.size as usize];
            io::Read::read_exact(&mut f, &mut buf)?;
            Ok((buf, meta))
        };
        let (buf, meta) = read().map_err(not_found)?;
        let bytes = Bytes::from(buf);
        if cacheable {
            self.records
                .insert(key.to_string(), (meta.clone(), bytes.clone()));
        }
        Ok((bytes, meta))
    }

    async fn put(&self, key: &str, data: Bytes) -> StoreResult<Meta> {
        let (tmp, dest) = (self.temp_path(), self.path(key));
        let meta = blocking(move || {
            let mut f = std::fs::File::create(&tmp)?;
            io::Write::write_all(&mut f, &data)?;
            f.sync_all()?;
            Self::install(&tmp, &dest)?;
            Ok(meta_of(&f.metadata()?))
        })
        .await;
        self.records.remove(key);
        Ok(meta?)
    }

    async fn put_if(&self, key: &str, data: Bytes, cond: Condition) -> StoreResult<Meta> {
        let _guard = self.cas.lock().await;
        let current = self.stat(key).await?;
        let ok = match (&cond, &current) {
            (Condition::Absent, None) => true,
            (Condition::Matches(etag), Some(m)) => &m.etag == etag,
            _ => false,
        };
        if !ok {
            return Err(StoreError::PreconditionFailed);
        }
        self.put(key, data).await
    }

    async fn list_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<String>> {
        let root = self.root.clone();
        let base = prefix.trim_end_matches('/').to_string();
        let after = after.map(str::to_string);
        Ok(blocking(move || {
            let mut out = Vec::new();
            walk_in_order(&root, &base, after.as_deref(), limit, &mut out)?;
            Ok(out)
        })
        .await?)
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.records.remove(key);
        let (root, path) = (self.root.clone(), self.path(key));
        Ok(blocking(move || match std::fs::remove_file(&path) {
            Ok(()) => {
                Self::prune(&root, &path);
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        })
        .await?)
    }

    async fn stage_append(
        &self,
        staged: &str,
        offset: u64,
        body: ByteStream,
        len: Option<u64>,
    ) -> StoreResult<u64> {
        let mut body = super::declared(body, len);
        let path = self.path(staged);
        let file = blocking(move || -> io::Result<Result<StageFile, u64>> {
            Self::make_parent(&path)?;
            let f = std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(false)
                .open(&path)?;
            let len = f.metadata()?.len();
            if len < offset {
                return Ok(Err(len));
            }
            // Bytes past `offset` are from an append that failed half way.
            f.set_len(offset)?;
            Ok(Ok(StageFile::open(f, &path)))
        })
        .await?;
        let file = file.map_err(|actual| StoreError::OffsetMismatch {
            expected: offset,
            actual,
        })?;
        let mut writer = BatchWriter::new(file, offset);
        let mut size = offset;
        let result: StoreResult<()> = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(StoreError::Body)?;
                size += chunk.len() as u64;
                writer.push(&chunk).await?;
            }
            Ok(())
        }
        .await;
        match (result, writer.finish().await) {
            (Ok(()), Ok(_)) => Ok(size),
            (Ok(()), Err(e)) => Err(e.into()),
            (Err(e), file) => {
                if let Ok(f) = file {
                    let _ = blocking(move || f.file.set_len(offset)).await;
                }
                Err(e)
            }
        }
    }

    async fn stage_read(&self, staged: &str) -> StoreResult<ByteStream> {
        match self.get(staged, None).await {
            Err(StoreError::NotFound) => Ok(Box::pin(futures_util::stream::empty())),
            other => other,
        }
    }

    async fn stage_commit(&self, staged: &str, dest: &str) -> StoreResult<()> {
        self.records.remove(dest);
        let (root, path, dest) = (self.root.clone(), self.path(staged), self.path(dest));
        blocking(move || {
            // An empty upload may never have touched the disk.
            Self::make_parent(&path)?;
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)?
                .sync_all()?;
            Self::install(&path, &dest)?;
            Self::prune(&root, &path);
            Ok(())
        })
        .await?;
        Ok(())
    }

    async fn stage_abort(&self, staged: &str) -> StoreResult<()> {
        self.delete(staged).await
    }
}

/// How [`read_blocks`] gets a block of a file.
#[derive(Clone, Copy)]
enum Fetch {
    /// `read(2)` straight into a fresh buffer that is then sent on (tokio's
    /// `File` reads into a buffer of its own, then copies: a tenth of a
    /// pull's CPU). Reads go on from where the file's cursor is.
    Copy,
    /// Mapped, pages faulted in (`MAP_POPULATE`) on the blocking pool: the
    /// bytes go from the page cache to the socket with actix-web's one copy
    /// instead of two (a warm pull is bound by apprd's core). Only for files
    /// never changed in place: a mapped file cut short would SIGBUS the
    /// process.
    Map,
}

/// Streams bytes `pos..end` of `file` (whose cursor is at `pos`) in blocks,
/// each got on the blocking pool while the block before it is sent: a pull
/// from a cold page cache then waits for the disk and the socket at once, not
/// in turn. Two blocks at most are held.
fn read_blocks(file: std::fs::File, pos: u64, end: u64, how: Fetch) -> ByteStream {
    fn next_block(
        mut file: std::fs::File,
        pos: u64,
        end: u64,
        how: Fetch,
    ) -> Option<impl std::future::Future<Output = io::Result<(std::fs::File, Bytes)>>> {
        let want = (end - pos).min(READ_BLOCK as u64);
        (want > 0).then(|| {
            blocking(move || {
                let block = match how {
                    Fetch::Copy => {
                        // `take` + `read_to_end` fills the block without zeroing it first.
                        let mut block = Vec::with_capacity(want as usize);
                        io::Read::read_to_end(&mut io::Read::take(&mut file, want), &mut block)?;
                        Bytes::from(block)
                    }
                    // SAFETY: only files that are never truncated or
                    // rewritten in place are mapped (see `Fetch::Map`), and
                    // `end` is within the size the file had when opened.
                    Fetch::Map => Bytes::from_owner(unsafe {
                        memmap2::MmapOptions::new()
                            .offset(pos)
                            .len(want as usize)
                            .populate()
                            .map(&file)?
                    }),
                };
                Ok((file, block))
            })
        })
    }
    let first = next_block(file, pos, end, how);
    Box::pin(futures_util::stream::try_unfold(
        (first, pos),
        move |(next, pos)| async move {
            let Some(next) = next else {
                return Ok(None);
            };
            let (file, block) = next.await?;
            if block.is_empty() {
                return Ok(None);
            }
            let pos = pos + block.len() as u64;
            Ok(Some((block, (next_block(file, pos, end, how), pos))))
        },
    ))
}

/// A staged upload's file, opened twice: buffered, and with `O_DIRECT` where
/// the filesystem allows it. Whole aligned blocks go straight to the disk,
/// which must see every byte before the commit's fsync anyway: on a VM,
/// filling page-cache pages the guest has not touched lately can cost more
/// than the disk write itself (bench/: a 1 GiB write with fdatasync made
/// 270 MiB/s through the cache, 1,000 direct), and a pushed blob does not
/// crowd out the blobs being pulled. The price: the first pull of a blob just
/// pushed reads it from the disk. Unaligned heads and tails go buffered.
struct StageFile {
    file: std::fs::File,
    direct: Option<std::fs::File>,
}

/// Offsets, lengths and buffers of direct writes are multiples of this (the
/// page size, which covers every logical block size in use).
const DIRECT_ALIGN: usize = 4096;

impl StageFile {
    fn open(file: std::fs::File, path: &Path) -> Self {
        StageFile {
            file,
            direct: open_direct(path),
        }
    }

    /// Write `block` at `pos`: its aligned part direct when that is possible,
    /// the rest buffered, with writeback started. (A [`Block`]'s bytes are
    /// always page-aligned in memory; only the file offset needs checking.)
    fn write_at(&mut self, block: &Block, pos: u64) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        let block = block.bytes();
        let mut done = 0;
        if pos.is_multiple_of(DIRECT_ALIGN as u64) {
            let aligned = block.len() / DIRECT_ALIGN * DIRECT_ALIGN;
            if let (Some(direct), true) = (&self.direct, aligned > 0) {
                match direct.write_all_at(&block[..aligned], pos) {
                    Ok(()) => done = aligned,
                    // Opened but refused (EINVAL for this device's alignment,
                    // EOPNOTSUPP on some stacked filesystems): the block and
                    // the rest of the upload go buffered, and an error that
                    // is not about direct writes (ENOSPC) comes back from
                    // the buffered write.
                    Err(_) => self.direct = None,
                }
            }
        }
        if done < block.len() {
            let pos = pos + done as u64;
            self.file.write_all_at(&block[done..], pos)?;
            start_writeback(&self.file, pos, block.len() - done);
        }
        Ok(())
    }
}

#[cfg(target_os = "linux")]
fn open_direct(path: &Path) -> Option<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    // tmpfs and some others refuse O_DIRECT at open: then all is buffered.
    std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .ok()
}

#[cfg(not(target_os = "linux"))]
fn open_direct(_path: &Path) -> Option<std::fs::File> {
    None
}

/// A write buffer whose bytes start page-aligned, as direct writes need. A
/// heap buffer with the alignment found inside it, not a mapping of its own:
/// fresh pages for every PATCH of a chunked push cost more than they saved.
struct Block {
    buf: Vec<u8>,
    start: usize,
}

impl Block {
    fn new() -> Self {
        let mut buf: Vec<u8> = Vec::with_capacity(WRITE_BLOCK + DIRECT_ALIGN);
        let start = buf.as_ptr().align_offset(DIRECT_ALIGN);
        buf.resize(start, 0);
        Block { buf, start }
    }

    fn len(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Copy as much of `data` as fits; how much that was. Never past the
    /// capacity, so the bytes never move.
    fn fill(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(WRITE_BLOCK - self.len());
        self.buf.extend_from_slice(&data[..n]);
        n
    }

    fn clear(&mut self) {
        self.buf.truncate(self.start);
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

/// Writes a stream of small chunks (a socket read each) as 1 MiB blocks, one
/// blocking-pool hop per block with the next block filling meanwhile: a hop
/// per chunk cost a fifth of a push's CPU in task switches. Two buffers take
/// turns, so a long push allocates no more than that.
struct BatchWriter {
    buf: Block,
    /// Where in the file the next block goes.
    pos: u64,
    /// The file and the buffer last written from, once that write is done.
    write: Option<BoxFuture<'static, io::Result<Written>>>,
}

/// The file and the buffer of a finished write.
type Written = (StageFile, Block);

const WRITE_BLOCK: usize = 1 << 20;

impl BatchWriter {
    fn new(file: StageFile, pos: u64) -> Self {
        BatchWriter {
            buf: Block::new(),
            pos,
            write: Some(Box::pin(std::future::ready(Ok((file, Block::new()))))),
        }
    }

    async fn push(&mut self, mut chunk: &[u8]) -> io::Result<()> {
        while !chunk.is_empty() {
            chunk = &chunk[self.buf.fill(chunk)..];
            if self.buf.len() == WRITE_BLOCK {
                self.flush().await?;
            }
        }
        Ok(())
    }

    /// The file and a free buffer, once the write in flight is done.
    async fn settle(&mut self) -> io::Result<Written> {
        self.write.take().expect("a write after each flush").await
    }

    /// Wait for the write in flight, then start writing the buffer.
    async fn flush(&mut self) -> io::Result<()> {
        let (mut file, mut free) = self.settle().await?;
        free.clear();
        let block = std::mem::replace(&mut self.buf, free);
        let pos = self.pos;
        self.pos += block.len() as u64;
        // Spawned now, not when awaited: the write runs while the next block fills.
        self.write = Some(Box::pin(blocking(move || {
            file.write_at(&block, pos)?;
            Ok((file, block))
        })));
        Ok(())
    }

    /// Write what is left; the file back, for truncation after a failure.
    async fn finish(mut self) -> io::Result<StageFile> {
        if self.buf.len() > 0 {
            self.flush().await?;
        }
        Ok(self.settle().await?.0)
    }
}

/// Start sending a just-written range to the disk without waiting for it, so
/// the disk works while the rest of the upload arrives and the fsync at commit
/// waits for the last blocks only, not for the whole blob (bench/: a 1 GiB
/// push spent a third of its time in that fsync). Only a hint: errors surface
/// at the fsync.
#[cfg(target_os = "linux")]
fn start_writeback(file: &std::fs::File, pos: u64, len: usize) {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain syscall on a descriptor `file` keeps open.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            pos as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &std::fs::File, _pos: u64, _len: usize) {}

/// Append the file keys under `dir` to `out` in byte order, skipping keys up
/// to `after` and stopping at `limit`: a page reads only the folders it
/// covers (10,000 repositories were 10,000 folder reads for every page).
fn walk_in_order(
    root: &Path,
    dir: &str,
    after: Option<&str>,
    limit: usize,
    out: &mut Vec<String>,
) -> io::Result<()> {
    let rd = match std::fs::read_dir(root.join(dir)) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) if e.raw_os_error() == Some(20) => return Ok(()), // ENOTDIR
        Err(e) => return Err(e),
    };
    // Each entry as the start of the keys it holds: a folder's keys all
    // begin with "name/" (the trailing "/" marks it a folder), which is what
    // orders it among its siblings.
    let mut entries = Vec::new();
    for entry in rd {
        let entry = entry?;
        let mut key = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        key.push_str(&entry.file_name().to_string_lossy());
        if entry.file_type()?.is_dir() {
            key.push('/');
        }
        entries.push(key);
    }
    entries.sort_unstable();
    for key in entries {
        if out.len() >= limit {
            break;
        }
        if key.ends_with('/') {
            // Everything below starts with `key`: skip it when `after` lies beyond.
            if after.is_some_and(|a| a > key.as_str() && !a.starts_with(&key)) {
                continue;
            }
            walk_in_order(root, key.trim_end_matches('/'), after, limit, out)?;
        } else if after.is_none_or(|a| key.as_str() > a) {
            out.push(key);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;
    use crate::store::layout;

    async fn collect(mut s: ByteStream) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(chunk) = s.next().await {
            out.extend_from_slice(&chunk.unwrap());
        }
        out
    }

    /// Writers in fresh folders beside deletes that prune their empty
    /// siblings' parents (upload sessions, from 16 clients): a prune that
    /// lands between two of `create_dir_all`'s mkdirs must not fail a write.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn writes_survive_concurrent_prunes() {
        let dir = tempfile::tempdir().unwrap();
        let b = std::sync::Arc::new(FsBackend::open(dir.path()).await.unwrap());
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let b = b.clone();
                tokio::spawn(async move {
                    for _ in 0..300 {
                        let key = layout::upload_session(&uuid::Uuid::new_v4().to_string());
                        b.put(&key, Bytes::from_static(b"{}")).await?;
                        b.delete(&key).await?;
                    }
                    StoreResult::Ok(())
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().expect("a write or delete failed");
        }
    }

    /// Blobs are mapped, other files read: both give the same bytes, whole
    /// and in ranges that start and end inside blocks or on their edges.
    #[tokio::test]
    async fn mapped_and_read_blocks_agree() {
        let dir = tempfile::tempdir().unwrap();
        let b = FsBackend::open(dir.path()).await.unwrap();
        let data: Vec<u8> = (0..READ_BLOCK * 3 + 4321)
            .map(|i| (i % 251) as u8)
            .collect();
        let blob = layout::blob(&Digest::sha256_of(&data));
        assert!(layout::is_blob(&blob));
        for key in [blob.as_str(), "other/file"] {
            b.put(key, Bytes::from(data.clone())).await.unwrap();
            assert!(
                collect(b.get(key, None).await.unwrap()).await == data,
                "{key}"
            );
            let (block, last) = (READ_BLOCK as u64, data.len() as u64 - 1);
            for (start, end) in [
                (0, 0),
                (1, block),
                (block - 1, block),
                (block, 2 * block + 7),
                (last, last),
            ] {
                let got = collect(b.get(key, Some(ByteRange { start, end })).await.unwrap()).await;
                assert!(
                    got[..] == data[start as usize..=end as usize],
                    "{key} {start}-{end}"
                );
            }
        }
        let empty = layout::blob(&Digest::sha256_of(b""));
        b.put(&empty, Bytes::new()).await.unwrap();
        assert!(collect(b.get(&empty, None).await.unwrap()).await.is_empty());
        assert!(matches!(
            b.get(&layout::blob(&Digest::sha256_of(b"x")), None).await,
            Err(StoreError::NotFound)
        ));
    }

    /// Kept records never hide a change: not the backend's own writes and
    /// deletes, and not a file replaced or removed behind its back (same
    /// size, so only the stat's inode and mtime tell).
    #[tokio::test]
    async fn kept_records_follow_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let b = FsBackend::open(dir.path()).await.unwrap();
        let key = "repositories/r/_tags/t";
        async fn read(b: &FsBackend) -> StoreResult<Bytes> {
            b.read("repositories/r/_tags/t")
                .await
                .map(|(bytes, _)| bytes)
        }
        b.put(key, Bytes::from_static(b"one")).await.unwrap();
        assert_eq!(read(&b).await.unwrap(), "one");
        assert_eq!(read(&b).await.unwrap(), "one");
        b.put(key, Bytes::from_static(b"two")).await.unwrap();
        assert_eq!(read(&b).await.unwrap(), "two");

        let path = dir.path().join(key);
        let other = dir.path().join("elsewhere");
        std::fs::write(&other, b"six").unwrap();
        std::fs::rename(&other, &path).unwrap();
        assert_eq!(read(&b).await.unwrap(), "six");
        let (bytes, meta) = b.read(key).await.unwrap();
        assert_eq!(
            (bytes.as_ref(), meta),
            (&b"six"[..], b.stat(key).await.unwrap().unwrap())
        );

        std::fs::remove_file(&path).unwrap();
        assert!(matches!(read(&b).await, Err(StoreError::NotFound)));
        b.put(key, Bytes::from_static(b"ten")).await.unwrap();
        assert_eq!(read(&b).await.unwrap(), "ten");
        b.delete(key).await.unwrap();
        assert!(matches!(read(&b).await, Err(StoreError::NotFound)));
    }

    /// Appends that start on and off the direct-write alignment, end inside
    /// a block, and fail half way, on a file opened for direct writes where
    /// the filesystem allows it: the staged bytes are exactly those appended,
    /// whichever way each part went.
    #[tokio::test]
    async fn direct_and_buffered_appends_interleave() {
        use crate::store::contract::{chunked, failing};
        let dir = tempfile::tempdir().unwrap();
        let b = FsBackend::open(dir.path()).await.unwrap();
        let all: Vec<u8> = (0..3 * WRITE_BLOCK + 5000)
            .map(|i| (i % 253) as u8)
            .collect();
        let s = layout::upload_data("direct");
        // aligned start, unaligned tail; unaligned start; aligned start again
        let cuts = [WRITE_BLOCK + 100, 2 * WRITE_BLOCK + DIRECT_ALIGN, all.len()];
        let mut at = 0;
        for end in cuts {
            if at % DIRECT_ALIGN == 0 {
                let fail_at = (at + WRITE_BLOCK / 2).min(end);
                assert!(b
                    .stage_append(&s, at as u64, failing(&all[at..fail_at]), None)
                    .await
                    .is_err());
            }
            let got = b
                .stage_append(&s, at as u64, chunked(&all[at..end], 65_537), None)
                .await
                .unwrap();
            assert_eq!(got, end as u64);
            at = end;
        }
        assert!(collect(b.stage_read(&s).await.unwrap()).await == all);
    }

    /// A direct write that fails (here a descriptor not open for writing)
    /// leaves the block, and the rest of the upload, to buffered writes.
    #[test]
    fn a_refused_direct_write_falls_back_to_buffered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("staged");
        let file = std::fs::File::create(&path).unwrap();
        let mut staged = StageFile {
            file,
            direct: Some(std::fs::File::open(&path).unwrap()),
        };
        let mut block = Block::new();
        let data: Vec<u8> = (0..WRITE_BLOCK).map(|i| (i % 241) as u8).collect();
        assert_eq!(block.fill(&data), WRITE_BLOCK);
        staged.write_at(&block, 0).unwrap();
        assert!(staged.direct.is_none());
        assert!(std::fs::read(&path).unwrap() == data);
    }
}
