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
use futures_util::StreamExt;
use tokio::fs;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio_util::io::ReaderStream;

use super::{Backend, ByteRange, ByteStream, Condition, Meta, StoreError, StoreResult};

const READ_BUF: usize = 256 * 1024;

pub struct FsBackend {
    root: PathBuf,
    cas: tokio::sync::Mutex<()>,
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

    /// Rename into place, creating parents; retried once because a concurrent
    /// delete may prune the parent folder in between.
    async fn install(&self, from: &Path, key: &str) -> io::Result<()> {
        let to = self.path(key);
        for attempt in 0..3 {
            if let Some(parent) = to.parent() {
                fs::create_dir_all(parent).await?;
            }
            match fs::rename(from, &to).await {
                Err(e) if e.kind() == io::ErrorKind::NotFound && attempt < 2 => continue,
                other => return other,
            }
        }
        unreachable!()
    }

    async fn write_temp(&self, data: &[u8]) -> io::Result<PathBuf> {
        let tmp = self.temp_path();
        let mut f = fs::File::create(&tmp).await?;
        f.write_all(data).await?;
        f.sync_all().await?;
        Ok(tmp)
    }

    /// Remove empty folders from `key`'s parent up to the root.
    async fn prune(&self, key: &str) {
        let mut dir = self.path(key);
        while dir.pop() && dir != self.root {
            if fs::remove_dir(&dir).await.is_err() {
                break;
            }
        }
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
        match fs::metadata(self.path(key)).await {
            Ok(m) if m.is_file() => Ok(Some(meta_of(&m))),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn get(&self, key: &str, range: Option<ByteRange>) -> StoreResult<ByteStream> {
        let mut f = fs::File::open(self.path(key)).await.map_err(not_found)?;
        let stream: ByteStream = match range {
            None => Box::pin(ReaderStream::with_capacity(f, READ_BUF)),
            Some(r) => {
                f.seek(SeekFrom::Start(r.start)).await?;
                Box::pin(ReaderStream::with_capacity(
                    f.take(r.end - r.start + 1),
                    READ_BUF,
                ))
            }
        };
        Ok(stream)
    }

    async fn read(&self, key: &str) -> StoreResult<(Bytes, Meta)> {
        let path = self.path(key);
        let mut f = fs::File::open(&path).await.map_err(not_found)?;
        let meta = meta_of(&f.metadata().await?);
        let mut buf = Vec::with_capacity(meta.size as usize);
        f.read_to_end(&mut buf).await?;
        Ok((Bytes::from(buf), meta))
    }

    async fn put(&self, key: &str, data: Bytes) -> StoreResult<Meta> {
        let tmp = self.write_temp(&data).await?;
        self.install(&tmp, key).await?;
        Ok(meta_of(&fs::metadata(self.path(key)).await?))
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

    async fn list(&self, prefix: &str) -> StoreResult<Vec<String>> {
        let mut out = Vec::new();
        let base = prefix.trim_end_matches('/');
        let mut pending = vec![base.to_string()];
        while let Some(dir) = pending.pop() {
            let mut rd = match fs::read_dir(self.path(&dir)).await {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) if e.raw_os_error() == Some(20) => continue, // ENOTDIR
                Err(e) => return Err(e.into()),
            };
            while let Some(entry) = rd.next_entry().await? {
                let name = entry.file_name().to_string_lossy().into_owned();
                let key = if dir.is_empty() {
                    name
                } else {
                    format!("{dir}/{name}")
                };
                if entry.file_type().await?.is_dir() {
                    pending.push(key);
                } else {
                    out.push(key);
                }
            }
        }
        Ok(out)
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        match fs::remove_file(self.path(key)).await {
            Ok(()) => {
                self.prune(key).await;
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn stage_append(
        &self,
        staged: &str,
        offset: u64,
        mut body: ByteStream,
    ) -> StoreResult<u64> {
        let path = self.path(staged);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).await?;
        }
        let mut f = fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&path)
            .await?;
        let len = f.metadata().await?.len();
        if len < offset {
            return Err(StoreError::OffsetMismatch {
                expected: offset,
                actual: len,
            });
        }
        // Bytes past `offset` are from an append that failed half way.
        f.set_len(offset).await?;
        f.seek(SeekFrom::Start(offset)).await?;
        let mut size = offset;
        let result: StoreResult<()> = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(StoreError::Body)?;
                f.write_all(&chunk).await?;
                size += chunk.len() as u64;
            }
            f.flush().await?;
            Ok(())
        }
        .await;
        if let Err(e) = result {
            let _ = f.set_len(offset).await;
            return Err(e);
        }
        Ok(size)
    }

    async fn stage_read(&self, staged: &str) -> StoreResult<ByteStream> {
        match self.get(staged, None).await {
            Err(StoreError::NotFound) => Ok(Box::pin(futures_util::stream::empty())),
            other => other,
        }
    }

    async fn stage_commit(&self, staged: &str, dest: &str) -> StoreResult<()> {
        let path = self.path(staged);
        // An empty upload may never have touched the disk.
        if fs::metadata(&path).await.is_err() {
            fs::create_dir_all(path.parent().unwrap_or(&self.root)).await?;
            fs::File::create(&path).await?;
        }
        fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .await?
            .sync_all()
            .await?;
        self.install(&path, dest).await?;
        self.prune(staged).await;
        Ok(())
    }

    async fn stage_abort(&self, staged: &str) -> StoreResult<()> {
        self.delete(staged).await
    }
}
