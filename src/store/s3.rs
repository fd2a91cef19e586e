//! S3-compatible backend (AWS S3, Garage, Ceph RGW, SeaweedFS, MinIO, moto).
//!
//! Every key is `<prefix><layout key>` in one bucket; the bucket is the only
//! shared state between replicas. Small objects are single PUTs; staged
//! uploads stream into multipart uploads ([`staging`] explains the design).
//!
//! Client settings, and why:
//! - checksums `WhenRequired`: the SDK's default streamed CRC trailers and
//!   part CRCs on CompleteMultipartUpload break Garage and s3rver
//!   (`shared/reference/s3-test-servers.md`); digests are checked by apprd.
//! - standard retries (3 attempts, 200 ms..2 s backoff, throttling such as 503
//!   SlowDown included), a 3 s connect timeout and a 20 s limit from sending a
//!   request to its response head: a refusing store becomes
//!   [`StoreError::Unavailable`] within a second, a silent one within about a
//!   minute, never a hang. Server-side copies and multipart completions of
//!   large objects get 5 minutes, and so do parts streamed while the client
//!   sends them. Every retried body is in memory (`Bytes`), so retries can
//!   resend it; a streamed part is not retried by the SDK, the staging sends
//!   it again from memory ([`staging`]).
//! - blob streams go [`direct`] first too, read in large steps ([`bulk`]);
//!   a body that stalls for 20 s ends in an error.
//! - whole-object reads and stats go [`direct`] first (half the CPU of the SDK's
//!   pipeline); what that path cannot answer within 5 s, or with 200/404,
//!   the SDK sends again, with everything above.

mod bulk;
mod direct;
mod staging;

use std::io;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::meta::region::RegionProviderChain;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::get_object::GetObjectOutput;
use aws_sdk_s3::operation::head_object::HeadObjectOutput;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream as SdkBody;
use aws_sdk_s3::Client;
use bytes::Bytes;

use self::direct::DirectRead;
use super::{Backend, ByteRange, ByteStream, Condition, Meta, StoreError, StoreResult};
use crate::config::S3Config;
use crate::ops::metrics;

/// Largest object a single CopyObject may copy.
const MAX_COPY: u64 = 5 * 1024 * 1024 * 1024;
/// Piece size of a multipart copy of anything larger.
const COPY_PART: u64 = 1024 * 1024 * 1024;
/// Time from sending a request to the response head (per attempt).
const READ_TIMEOUT: Duration = Duration::from_secs(20);
/// The same for copies and completions, which S3 does server-side in one request.
const SLOW_READ_TIMEOUT: Duration = Duration::from_secs(300);
/// A direct small read's limit ([`direct`]); then the SDK tries, as above.
const DIRECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Lifetime of presigned GET URLs.
const PRESIGN_TTL: Duration = Duration::from_secs(15 * 60);

pub struct S3Backend {
    client: Client,
    bucket: String,
    /// Empty, or ends with `/`.
    prefix: String,
    part_size: u64,
    credentials: Option<SharedCredentialsProvider>,
    /// Named in startup errors.
    endpoint: String,
    /// Set up on the first read, as it needs a presigned URL ([`direct`]).
    direct: tokio::sync::OnceCell<Option<DirectRead>>,
}

/// An SDK client, the credentials it signs with, and its endpoint (for messages).
pub struct Sdk {
    pub client: Client,
    /// The SDK's own chain; [`direct`] reads sign with it too.
    pub credentials: Option<SharedCredentialsProvider>,
    pub endpoint: String,
}

/// The SDK client from the standard AWS chain (env, profiles, web identity)
/// with apprd's checksum, retry and timeout settings.
pub async fn client(path_style: bool) -> Sdk {
    let shared = aws_config::defaults(BehaviorVersion::latest())
        .region(RegionProviderChain::default_provider().or_else("us-east-1"))
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(3)
                .with_initial_backoff(Duration::from_millis(200))
                .with_max_backoff(Duration::from_secs(2)),
        )
        .timeout_config(timeouts(READ_TIMEOUT))
        .load()
        .await;
    let conf = aws_sdk_s3::config::Builder::from(&shared)
        .force_path_style(path_style)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .build();
    let endpoint = shared
        .endpoint_url()
        .unwrap_or("the AWS default endpoint")
        .to_string();
    Sdk {
        client: Client::from_conf(conf),
        credentials: shared.credentials_provider(),
        endpoint,
    }
}

/// A part's body: in memory (signed, and retried by the SDK), or streamed
/// while it arrives (`len` bytes; unsigned, as the SDK signs only bodies it
/// holds; not retried, the caller keeps the bytes instead; with the long
/// timeout, as it lasts as long as its sender takes).
enum Part {
    Held(Bytes),
    Streamed(SdkBody, u64),
}

fn timeouts(read: Duration) -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(3))
        .read_timeout(read)
        .build()
}

/// Per-operation settings for requests that copy or assemble whole objects,
/// and for parts that last as long as their sender takes.
fn slow() -> aws_sdk_s3::config::Builder {
    aws_sdk_s3::config::Builder::new().timeout_config(timeouts(SLOW_READ_TIMEOUT))
}

impl S3Backend {
    /// A backend on `bucket`; with `credentials`, small reads go [`direct`].
    pub fn new(
        client: Client,
        credentials: Option<SharedCredentialsProvider>,
        bucket: &str,
        prefix: &str,
        part_size: u64,
    ) -> Self {
        let prefix = prefix.trim_matches('/');
        S3Backend {
            client,
            bucket: bucket.to_string(),
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
            part_size,
            credentials,
            endpoint: "its endpoint".into(),
            direct: tokio::sync::OnceCell::new(),
        }
    }

    async fn direct(&self) -> Option<&DirectRead> {
        self.direct
            .get_or_init(|| async {
                let credentials = self.credentials.clone()?;
                DirectRead::new(
                    &self.client,
                    credentials,
                    &self.bucket,
                    DIRECT_TIMEOUT,
                    READ_TIMEOUT,
                )
                .await
            })
            .await
            .as_ref()
    }

    /// Connect with the AWS chain and check that the bucket exists.
    pub async fn connect(cfg: &S3Config) -> anyhow::Result<Self> {
        let backend = Self::open(cfg).await;
        backend.check_bucket().await?;
        Ok(backend)
    }

    /// A backend with the AWS chain's client; nothing is sent yet.
    pub async fn open(cfg: &S3Config) -> Self {
        let Sdk {
            client,
            credentials,
            endpoint,
        } = client(cfg.path_style).await;
        let mut backend = Self::new(client, credentials, &cfg.bucket, &cfg.prefix, cfg.part_size);
        backend.endpoint = endpoint;
        backend
    }

    /// Fails with what to fix when the bucket is missing or out of reach.
    pub async fn check_bucket(&self) -> anyhow::Result<()> {
        let (b, endpoint) = (&self.bucket, &self.endpoint);
        let Err(e) = self.client.head_bucket().bucket(b).send().await else {
            return Ok(());
        };
        match status(&e) {
            Some(404) => anyhow::bail!(
                "S3 bucket {b:?} does not exist at {endpoint}; create it first (apprd never creates buckets)"
            ),
            Some(301) | Some(400) => anyhow::bail!(
                "S3 bucket {b:?} at {endpoint} answered {:?}: check AWS_REGION and --s3-path-style",
                status(&e)
            ),
            Some(403) => anyhow::bail!(
                "access to S3 bucket {b:?} at {endpoint} denied: check the AWS credentials"
            ),
            _ => anyhow::bail!(
                "cannot reach S3 bucket {b:?} at {endpoint}: {}",
                DisplayErrorContext(&e)
            ),
        }
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// `bucket/key` for the copy-source headers, percent-encoded.
    fn copy_source(&self, key: &str) -> String {
        let mut out = format!("{}/", self.bucket);
        for b in self.key(key).bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                    out.push(b as char)
                }
                _ => out.push_str(&format!("%{b:02X}")),
            }
        }
        out
    }

    /// Server-side copy: the bytes never pass through apprd.
    async fn copy(&self, from: &str, to: &str, size: u64) -> StoreResult<()> {
        if size <= MAX_COPY {
            self.client
                .copy_object()
                .bucket(&self.bucket)
                .key(self.key(to))
                .copy_source(self.copy_source(from))
                .customize()
                .config_override(slow())
                .send()
                .await
                .map_err(|e| store_err("CopyObject", to, e))?;
            return Ok(());
        }
        let id = self.create_multipart(to).await?;
        let result = async {
            let mut etags = Vec::new();
            let mut start = 0;
            while start < size {
                let end = (start + COPY_PART).min(size) - 1;
                let n = etags.len() as i32 + 1;
                etags.push(self.copy_part(to, &id, n, from, Some((start, end))).await?);
                start = end + 1;
            }
            self.complete_multipart(to, &id, &etags).await
        }
        .await;
        if result.is_err() {
            let _ = self.abort_multipart(to, &id).await;
        }
        result
    }

    async fn create_multipart(&self, key: &str) -> StoreResult<String> {
        let out = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(self.key(key))
            .send()
            .await
            .map_err(|e| store_err("CreateMultipartUpload", key, e))?;
        out.upload_id()
            .map(str::to_string)
            .ok_or_else(|| protocol("CreateMultipartUpload without an upload id"))
    }

    async fn upload_part(&self, key: &str, id: &str, n: i32, part: Part) -> StoreResult<String> {
        let (body, len, settings) = match part {
            Part::Held(data) => {
                let len = data.len() as u64;
                (SdkBody::from(data), len, None)
            }
            Part::Streamed(body, len) => (body, len, Some(slow())),
        };
        let mut op = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(self.key(key))
            .upload_id(id)
            .part_number(n)
            .content_length(len as i64)
            .body(body)
            .customize();
        if let Some(settings) = settings {
            op = op.config_override(settings);
        }
        let out = op
            .send()
            .await
            .map_err(|e| store_err("UploadPart", key, e))?;
        out.e_tag()
            .map(str::to_string)
            .ok_or_else(|| protocol("UploadPart without an etag"))
    }

    /// A part of `key`'s multipart upload copied from `from` (all of it, or a range).
    async fn copy_part(
        &self,
        key: &str,
        id: &str,
        n: i32,
        from: &str,
        range: Option<(u64, u64)>,
    ) -> StoreResult<String> {
        let out = self
            .client
            .upload_part_copy()
            .bucket(&self.bucket)
            .key(self.key(key))
            .upload_id(id)
            .part_number(n)
            .copy_source(self.copy_source(from))
            .set_copy_source_range(range.map(|(a, b)| format!("bytes={a}-{b}")))
            .customize()
            .config_override(slow())
            .send()
            .await
            .map_err(|e| store_err("UploadPartCopy", key, e))?;
        out.copy_part_result()
            .and_then(|r| r.e_tag())
            .map(str::to_string)
            .ok_or_else(|| protocol("UploadPartCopy without an etag"))
    }

    async fn complete_multipart(&self, key: &str, id: &str, etags: &[String]) -> StoreResult<()> {
        use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
        let parts = etags
            .iter()
            .enumerate()
            .map(|(i, e)| {
                CompletedPart::builder()
                    .part_number(i as i32 + 1)
                    .e_tag(e)
                    .build()
            })
            .collect();
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(self.key(key))
            .upload_id(id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .customize()
            .config_override(slow())
            .send()
            .await
            .map_err(|e| store_err("CompleteMultipartUpload", key, e))?;
        Ok(())
    }

    /// Abort a multipart upload; one that is already gone is fine.
    async fn abort_multipart(&self, key: &str, id: &str) -> StoreResult<()> {
        match self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(self.key(key))
            .upload_id(id)
            .send()
            .await
            .map_err(|e| store_err("AbortMultipartUpload", key, e))
        {
            Err(StoreError::NotFound) => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// HeadObject, or `None` for a missing object.
    async fn head(&self, key: &str) -> StoreResult<Option<HeadObjectOutput>> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(self.key(key))
            .send()
            .await
            .map_err(|e| store_err("HeadObject", key, e))
        {
            Ok(out) => Ok(Some(out)),
            Err(StoreError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn fetch(&self, key: &str, range: Option<ByteRange>) -> StoreResult<GetObjectOutput> {
        self.client
            .get_object()
            .bucket(&self.bucket)
            .key(self.key(key))
            .set_range(range.map(range_header))
            .send()
            .await
            .map_err(|e| store_err("GetObject", key, e))
    }

    /// Last-modified time (unix seconds) of an object, if it exists.
    async fn modified(&self, key: &str) -> StoreResult<Option<i64>> {
        Ok(self
            .head(key)
            .await?
            .map(|out| out.last_modified().map(|t| t.secs()).unwrap_or(0)))
    }
}

/// A `Range` header's value for `r`, as both read paths send it.
fn range_header(r: ByteRange) -> String {
    format!("bytes={}-{}", r.start, r.end)
}

fn status<E>(e: &SdkError<E, HttpResponse>) -> Option<u16> {
    e.raw_response().map(|r| r.status().as_u16())
}

fn protocol(msg: &str) -> StoreError {
    StoreError::Io(io::Error::other(format!("s3: {msg}")))
}

/// Map an SDK error (after the SDK's own retries) onto the store's errors.
fn store_err<E>(op: &str, key: &str, e: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let code = e.code().unwrap_or("").to_string();
    // The full context (endpoint, key, cause) goes to the log; error bodies
    // get a short reason only.
    let unavailable = |reason: &str| {
        tracing::warn!(op, key, error = %DisplayErrorContext(&e), "s3 store unavailable");
        StoreError::Unavailable(format!("s3 {op}: {reason}"))
    };
    match &e {
        SdkError::TimeoutError(_) => return unavailable("timed out"),
        // Not sent because of apprd's side, e.g. a streamed part whose
        // client stopped: no sign of the store's health.
        SdkError::DispatchFailure(f) if f.is_user() => {
            return StoreError::Io(io::Error::other(format!(
                "s3 {op} {key}: request not sent: {}",
                DisplayErrorContext(&e)
            )))
        }
        SdkError::DispatchFailure(_) => return unavailable("store unreachable"),
        _ => {}
    }
    match status(&e) {
        Some(404) => StoreError::NotFound,
        Some(412) => StoreError::PreconditionFailed,
        Some(409) if code == "ConditionalRequestConflict" => StoreError::PreconditionFailed,
        Some(403) => unavailable("access denied"),
        Some(s @ (429 | 500..)) => unavailable(&format!("answered {s} {code}")),
        _ => StoreError::Io(io::Error::other(format!(
            "s3 {op} {key}: {}",
            DisplayErrorContext(&e)
        ))),
    }
}

fn etag_of(e: Option<&str>) -> StoreResult<String> {
    e.map(str::to_string)
        .ok_or_else(|| protocol("response without an etag"))
}

/// The SDK's body as the store's stream of chunks.
fn stream_of(body: SdkBody) -> ByteStream {
    Box::pin(futures_util::stream::try_unfold(body, |mut b| async move {
        match b.try_next().await {
            Ok(Some(chunk)) => Ok(Some((chunk, b))),
            Ok(None) => Ok(None),
            Err(e) => Err(io::Error::other(e)),
        }
    }))
}

#[async_trait]
impl Backend for S3Backend {
    fn name(&self) -> &'static str {
        "s3"
    }

    async fn stat(&self, key: &str) -> StoreResult<Option<Meta>> {
        if let Some(direct) = self.direct().await {
            if let Some(answer) = direct.head(&self.key(key)).await {
                metrics::s3_stat("direct");
                return answer;
            }
        }
        metrics::s3_stat("sdk");
        match self.head(key).await? {
            Some(out) => Ok(Some(Meta {
                size: out.content_length().unwrap_or(0).max(0) as u64,
                etag: etag_of(out.e_tag())?,
            })),
            None => Ok(None),
        }
    }

    async fn get(&self, key: &str, range: Option<ByteRange>) -> StoreResult<ByteStream> {
        if let Some(direct) = self.direct().await {
            if let Some(answer) = direct.stream(&self.key(key), range).await {
                metrics::s3_stream("direct");
                return answer;
            }
        }
        metrics::s3_stream("sdk");
        Ok(stream_of(self.fetch(key, range).await?.body))
    }

    async fn read(&self, key: &str) -> StoreResult<(Bytes, Meta)> {
        if let Some(direct) = self.direct().await {
            if let Some(answer) = direct.get(&self.key(key)).await {
                metrics::s3_read("direct");
                return answer;
            }
        }
        metrics::s3_read("sdk");
        let out = self.fetch(key, None).await?;
        let etag = etag_of(out.e_tag())?;
        let data = out
            .body
            .collect()
            .await
            .map_err(|e| StoreError::Unavailable(format!("s3 GetObject {key}: {e}")))?
            .into_bytes();
        let size = data.len() as u64;
        Ok((data, Meta { size, etag }))
    }

    async fn put(&self, key: &str, data: Bytes) -> StoreResult<Meta> {
        let size = data.len() as u64;
        let out = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(self.key(key))
            .body(SdkBody::from(data))
            .send()
            .await
            .map_err(|e| store_err("PutObject", key, e))?;
        Ok(Meta {
            size,
            etag: etag_of(out.e_tag())?,
        })
    }

    async fn put_if(&self, key: &str, data: Bytes, cond: Condition) -> StoreResult<Meta> {
        let size = data.len() as u64;
        let req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(self.key(key))
            .body(SdkBody::from(data));
        let req = match cond {
            Condition::Absent => req.if_none_match("*"),
            Condition::Matches(etag) => req.if_match(etag),
        };
        match req.send().await.map_err(|e| store_err("PutObject", key, e)) {
            Ok(out) => Ok(Meta {
                size,
                etag: etag_of(out.e_tag())?,
            }),
            // If-Match on a missing key: 404 on AWS and moto, 412 elsewhere.
            Err(StoreError::NotFound) => Err(StoreError::PreconditionFailed),
            Err(e) => Err(e),
        }
    }

    async fn list_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<String>> {
        // S3 lists in key order: start-after and max-keys give the page itself.
        let mut out = Vec::new();
        let mut token = None;
        while out.len() < limit {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(self.key(prefix))
                .set_start_after(after.map(|a| self.key(a)))
                // Only a short page names max-keys; 1000 is S3's own default.
                .set_max_keys((limit - out.len() < 1000).then(|| (limit - out.len()) as i32))
                .set_continuation_token(token)
                .send()
                .await
                .map_err(|e| store_err("ListObjectsV2", prefix, e))?;
            out.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key()?.strip_prefix(&self.prefix))
                    .map(str::to_string),
            );
            match page.next_continuation_token() {
                Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_string()),
                _ => break,
            }
        }
        out.truncate(limit);
        Ok(out)
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.key(key))
            .send()
            .await
            .map_err(|e| store_err("DeleteObject", key, e))
        {
            Ok(_) | Err(StoreError::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn stage_append(
        &self,
        staged: &str,
        offset: u64,
        body: ByteStream,
        len: Option<u64>,
    ) -> StoreResult<u64> {
        self.staged_append(staged, offset, body, len).await
    }

    async fn stage_read(&self, staged: &str) -> StoreResult<ByteStream> {
        self.staged_read(staged).await
    }

    async fn stage_commit(&self, staged: &str, dest: &str) -> StoreResult<()> {
        self.staged_commit(staged, dest).await
    }

    async fn stage_abort(&self, staged: &str) -> StoreResult<()> {
        self.staged_abort(staged).await
    }

    async fn put_stream(&self, staged: &str, dest: &str, body: ByteStream) -> StoreResult<u64> {
        self.staged_put_stream(staged, dest, body).await
    }

    async fn purge_stale(&self, ttl_secs: u64) -> StoreResult<usize> {
        self.purge_multipart(ttl_secs).await
    }

    async fn presign_get(&self, key: &str) -> Option<String> {
        let conf = PresigningConfig::expires_in(PRESIGN_TTL).ok()?;
        match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.key(key))
            .presigned(conf)
            .await
        {
            Ok(req) => Some(req.uri().to_string()),
            Err(e) => {
                tracing::warn!(error = %DisplayErrorContext(&e), "cannot presign a blob URL");
                None
            }
        }
    }
}
