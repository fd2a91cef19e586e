//! Whole-object reads, stats (HEAD) and blob streams without the SDK's
//! per-request pipeline.
//!
//! Reads of small objects (tag records, revision links, manifests, channel
//! records) and stats (a blob link before a mount, a marker before it is
//! written) are most of what a registry asks its store, and for them the SDK's
//! orchestrator (config layering, a dozen interceptors, endpoint rules, the
//! user agent) costs more CPU than the rest of the request: a manifest GET by
//! digest on Garage took about 165 µs of apprd's CPU through the SDK and 75 µs
//! this way (`bench/results/s3.md`). This path signs the same GET or HEAD with
//! `aws-sigv4`, the SDK's own signer, and sends it with hyper over pooled
//! connections; blob streams go on connections of their own, read in large
//! steps ([`super::bulk`]).
//!
//! It only answers 200 (the object, or its size and etag), 206 (a range) and
//! 404 (missing, as the SDK path maps it). Anything else (403, throttling,
//! 5xx, a timeout, a reset) goes back to the SDK, which retries, maps and
//! logs it, so the store keeps one error path.
//! The endpoint is whatever the SDK resolves (taken from a presigned URL);
//! plain-HTTP endpoints only, HTTPS stays with the SDK (no TLS stack here).

use std::sync::RwLock;
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::Client;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::super::{ByteRange, ByteStream, Meta, StoreError, StoreResult};
use super::bulk::Bulk;

/// What S3 leaves unencoded in a key's path (RFC 3986 unreserved, and `/`).
const KEY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');
/// Credentials this close to expiry are fetched again.
const REFRESH_BEFORE: Duration = Duration::from_secs(300);
/// The largest 404 body read before the connection is reused.
const MAX_ERROR_BODY: usize = 16 * 1024;

pub struct DirectRead {
    http: HttpClient<HttpConnector, Empty<Bytes>>,
    /// The bucket's URL, ending in `/`: the object's encoded key follows.
    base: String,
    region: String,
    credentials: SharedCredentialsProvider,
    identity: RwLock<Option<Identity>>,
    timeout: Duration,
    /// Streamed reads of blobs ([`super::bulk`]).
    bulk: Bulk,
}

/// A response header as text.
fn header<'a, B>(res: &'a http::Response<B>, name: &str) -> Option<&'a str> {
    res.headers().get(name)?.to_str().ok()
}

/// What a direct read answers: the object or `NotFound`; `None` when this
/// path gives no answer and the SDK must send the request.
pub type Direct = Option<StoreResult<(Bytes, Meta)>>;

impl DirectRead {
    /// A direct reader for `bucket` as `client` reaches it, signing with
    /// `credentials`; `None` where the SDK must do the work (HTTPS, no region,
    /// S3 Express and access points).
    pub async fn new(
        client: &Client,
        credentials: SharedCredentialsProvider,
        bucket: &str,
        timeout: Duration,
        stall: Duration,
    ) -> Option<Self> {
        let region = client.config().region()?.to_string();
        if bucket.ends_with("--x-s3") || bucket.starts_with("arn:") {
            return None; // directory buckets and access points: other auth
        }
        let presigned = client
            .get_object()
            .bucket(bucket)
            .key("_")
            .presigned(PresigningConfig::expires_in(Duration::from_secs(60)).ok()?)
            .await
            .ok()?;
        let url = presigned.uri().split('?').next()?;
        let base = url.strip_suffix('_')?;
        if !base.starts_with("http://") || !base.ends_with('/') {
            return None;
        }
        let authority = base.parse::<http::Uri>().ok()?.authority()?.clone();
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(3)));
        connector.set_nodelay(true);
        Some(DirectRead {
            http: HttpClient::builder(TokioExecutor::new()).build(connector),
            base: base.to_string(),
            region,
            credentials,
            identity: RwLock::new(None),
            timeout,
            bulk: Bulk::new(&authority, stall),
        })
    }

    /// GET the object at `key` (the full key, prefix included).
    pub async fn get(&self, key: &str) -> Direct {
        self.within(self.try_get(key)).await
    }

    /// Stream the object at `key`, or `range` of it ([`super::bulk`]).
    pub async fn stream(
        &self,
        key: &str,
        range: Option<ByteRange>,
    ) -> Option<StoreResult<ByteStream>> {
        self.within(self.try_stream(key, range)).await
    }

    async fn try_stream(
        &self,
        key: &str,
        range: Option<ByteRange>,
    ) -> Option<StoreResult<ByteStream>> {
        let mut req = http::Request::get(self.url(key)).body(()).ok()?;
        self.sign(&mut req).await?;
        // The store reads the path from the request line, the host from `Host`;
        // the range is not signed (as the SDK signs it, it need not be).
        *req.uri_mut() = req.uri().path_and_query()?.as_str().parse().ok()?;
        if let Some(r) = range {
            let value = super::range_header(r).parse().ok()?;
            req.headers_mut().insert(http::header::RANGE, value);
        }
        let answer = self.bulk.send(&req).await?;
        match (answer.status, answer.body) {
            (200, Some(body)) if range.is_none() => Some(Ok(body)),
            (206, Some(body)) if range.is_some() => Some(Ok(body)),
            (404, _) => Some(Err(StoreError::NotFound)),
            (status, _) => self.hand_back(http::StatusCode::from_u16(status).ok()?),
        }
    }

    /// HEAD the object at `key`: its size and etag, `Ok(None)` when it is
    /// missing; `None` when the SDK must send the request.
    pub async fn head(&self, key: &str) -> Option<StoreResult<Option<Meta>>> {
        self.within(self.try_head(key)).await
    }

    /// `answer`, or `None` (the SDK's turn) when it takes longer than the timeout.
    async fn within<T>(&self, answer: impl std::future::Future<Output = Option<T>>) -> Option<T> {
        tokio::time::timeout(self.timeout, answer)
            .await
            .ok()
            .flatten()
    }

    async fn try_get(&self, key: &str) -> Direct {
        let res = self.send(http::Method::GET, key).await?;
        match res.status().as_u16() {
            200 => {
                let etag = header(&res, "etag")?.to_string();
                let data = res.into_body().collect().await.ok()?.to_bytes();
                let size = data.len() as u64;
                Some(Ok((data, Meta { size, etag })))
            }
            404 => {
                // Read the error body (kept short), so the connection stays usable.
                let body = http_body_util::Limited::new(res.into_body(), MAX_ERROR_BODY);
                let _ = body.collect().await;
                Some(Err(StoreError::NotFound))
            }
            _ => self.hand_back(res.status()),
        }
    }

    async fn try_head(&self, key: &str) -> Option<StoreResult<Option<Meta>>> {
        let res = self.send(http::Method::HEAD, key).await?;
        match res.status().as_u16() {
            200 => {
                let etag = header(&res, "etag")?.to_string();
                let size = header(&res, "content-length")?.parse().ok()?;
                Some(Ok(Some(Meta { size, etag })))
            }
            404 => Some(Ok(None)),
            _ => self.hand_back(res.status()),
        }
    }

    /// Sign and send a body-less request for `key`; `None` when it failed
    /// before an answer came (the SDK then tries).
    async fn send(
        &self,
        method: http::Method,
        key: &str,
    ) -> Option<http::Response<hyper::body::Incoming>> {
        let mut req = http::Request::builder()
            .method(method)
            .uri(self.url(key))
            .body(Empty::new())
            .ok()?;
        self.sign(&mut req).await?;
        self.http.request(req).await.ok()
    }

    /// The object's URL: the bucket's, then the key percent-encoded.
    fn url(&self, key: &str) -> String {
        format!("{}{}", self.base, utf8_percent_encode(key, KEY))
    }

    /// An answer this path does not take: the SDK sends the request again.
    fn hand_back<T>(&self, status: http::StatusCode) -> Option<T> {
        if status == http::StatusCode::FORBIDDEN {
            // Maybe credentials that changed: fetch them again next time.
            *self.identity.write().ok()? = None;
        }
        None
    }

    /// Sign `req` as the SDK signs S3 requests (SigV4, single encoding, no
    /// path normalisation, `x-amz-content-sha256` of the empty body).
    async fn sign<B>(&self, req: &mut http::Request<B>) -> Option<()> {
        let identity = self.identity().await?;
        let mut settings = SigningSettings::default();
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("s3")
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .ok()?
            .into();
        let uri = req.uri().to_string();
        let signable = SignableRequest::new(
            req.method().as_str(),
            &uri,
            std::iter::empty(),
            SignableBody::Bytes(&[]),
        )
        .ok()?;
        let (instructions, _) = sign(signable, &params).ok()?.into_parts();
        instructions.apply_to_request_http1x(req);
        Some(())
    }

    /// The current credentials, from the SDK's provider chain, kept until
    /// shortly before they expire.
    async fn identity(&self) -> Option<Identity> {
        let fresh = |i: &Identity| {
            i.expiration()
                .is_none_or(|t| t > SystemTime::now() + REFRESH_BEFORE)
        };
        if let Some(i) = self.identity.read().ok()?.as_ref().filter(|i| fresh(i)) {
            return Some(i.clone());
        }
        let identity: Identity = self.credentials.provide_credentials().await.ok()?.into();
        *self.identity.write().ok()? = Some(identity.clone());
        Some(identity)
    }
}
