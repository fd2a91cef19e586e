//! Thin handlers: parse the request, call the registry core, shape the answer.

use actix_web::body::SizedStream;
use actix_web::http::{Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse, HttpResponseBuilder};
use serde_json::json;

use super::errors::OciError;
use super::routes::Route;
use crate::digest::{Algorithm, Digest, DigestError};
use crate::http::{header, payload_stream, query_pairs, query_value, read_limited};
use crate::registry::names::ReferenceError;
use crate::registry::{
    media, Error, ManifestInfo, Page, PutManifest, Reference, Registry, SMALL_BLOB,
};
use crate::state::AppState;
use crate::store::ByteRange;

type Reply = Result<HttpResponse, OciError>;

fn ok(status: StatusCode) -> HttpResponseBuilder {
    let mut b = HttpResponse::build(status);
    b.insert_header(("Docker-Distribution-API-Version", "registry/2.0"));
    b
}

fn parse_digest(s: &str) -> Result<Digest, OciError> {
    s.parse::<Digest>()
        .map_err(|e| OciError::from(Error::from(e)))
}

fn range_header(size: u64) -> String {
    if size == 0 {
        "0-0".to_string()
    } else {
        format!("0-{}", size - 1)
    }
}

pub async fn dispatch(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Reply {
    let rest = req.path().strip_prefix("/v2").unwrap_or("");
    let route = Route::parse(rest).ok_or_else(OciError::not_found)?;
    let reg = &state.registry;
    let m = req.method().clone();
    match route {
        Route::Base if m == Method::GET || m == Method::HEAD => {
            Ok(ok(StatusCode::OK).json(json!({})))
        }
        Route::Catalog if m == Method::GET => catalog(&req, reg).await,
        Route::Tags { repo } if m == Method::GET => tags(&req, reg, &repo).await,
        Route::Manifest { repo, reference } => match m {
            Method::GET | Method::HEAD => get_manifest(&req, reg, &repo, &reference).await,
            Method::PUT => put_manifest(&req, payload, reg, &repo, &reference).await,
            Method::DELETE => delete_manifest(reg, &repo, &reference).await,
            _ => Err(OciError::unsupported("method not allowed")),
        },
        Route::Blob { repo, digest } => match m {
            Method::GET | Method::HEAD => get_blob(&req, &state, &repo, &digest).await,
            Method::DELETE => {
                reg.delete_blob(&repo, &parse_digest(&digest)?).await?;
                Ok(ok(StatusCode::ACCEPTED).finish())
            }
            _ => Err(OciError::unsupported("method not allowed")),
        },
        Route::UploadStart { repo } if m == Method::POST => {
            start_upload(&req, payload, reg, &repo).await
        }
        Route::Upload { repo, id } => match m {
            Method::GET => {
                let up = reg.upload_status(&repo, &id).await?;
                Ok(upload_reply(StatusCode::NO_CONTENT, &repo, &up.id, up.size))
            }
            Method::PATCH => {
                let range = content_range(&req)?;
                let body = payload_stream(payload, None);
                let up = reg
                    .append_upload(&repo, &id, range, body, content_length(&req))
                    .await
                    .map_err(|e| with_location(e, &repo, &id))?;
                Ok(upload_reply(StatusCode::ACCEPTED, &repo, &up.id, up.size))
            }
            Method::PUT => finish_upload(&req, payload, reg, &repo, &id).await,
            Method::DELETE => {
                reg.cancel_upload(&repo, &id).await?;
                Ok(ok(StatusCode::NO_CONTENT).finish())
            }
            _ => Err(OciError::unsupported("method not allowed")),
        },
        Route::Referrers { repo, digest } if m == Method::GET => {
            referrers(&req, reg, &repo, &digest).await
        }
        _ => Err(OciError::unsupported("method not allowed")),
    }
}

/// A HEAD answer's body: the length of the real one, no bytes.
fn head_body(
    len: u64,
) -> SizedStream<futures_util::stream::Empty<Result<bytes::Bytes, std::io::Error>>> {
    SizedStream::new(len, futures_util::stream::empty())
}

fn upload_location(repo: &str, id: &str) -> String {
    format!("/v2/{repo}/blobs/uploads/{id}")
}

fn upload_reply(status: StatusCode, repo: &str, id: &str, size: u64) -> HttpResponse {
    ok(status)
        .insert_header(("Location", upload_location(repo, id)))
        .insert_header(("Range", range_header(size)))
        .insert_header(("Docker-Upload-UUID", id))
        .finish()
}

/// An out-of-order chunk leaves the session usable: tell the client where it is.
fn with_location(e: Error, repo: &str, id: &str) -> OciError {
    let keep = matches!(e, Error::ChunkOutOfOrder { .. });
    let err = OciError::from(e);
    if keep {
        err.with_header("Location", upload_location(repo, id))
    } else {
        err
    }
}

fn blob_created(repo: &str, digest: &Digest) -> HttpResponse {
    ok(StatusCode::CREATED)
        .insert_header(("Location", format!("/v2/{repo}/blobs/{digest}")))
        .insert_header(("Docker-Content-Digest", digest.to_string()))
        .finish()
}

/// `Content-Range: <start>-<end>` of a chunk (inclusive), if given.
fn content_range(req: &HttpRequest) -> Result<Option<(u64, u64)>, OciError> {
    let Some(v) = header(req, "Content-Range") else {
        return Ok(None);
    };
    let v = v
        .trim()
        .trim_start_matches("bytes ")
        .trim_start_matches("bytes=");
    let parsed = v
        .split_once('-')
        .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)));
    match parsed {
        Some(r) => Ok(Some(r)),
        None => Err(OciError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "BLOB_UPLOAD_INVALID",
            format!("bad Content-Range {v:?}"),
        )),
    }
}

fn content_length(req: &HttpRequest) -> Option<u64> {
    header(req, "Content-Length").and_then(|v| v.trim().parse().ok())
}

fn has_body(req: &HttpRequest) -> bool {
    match content_length(req) {
        Some(len) => len != 0,
        None => header(req, "Transfer-Encoding").is_some(),
    }
}

async fn start_upload(
    req: &HttpRequest,
    payload: web::Payload,
    reg: &Registry,
    repo: &str,
) -> Reply {
    let q = query_pairs(req);
    if let Some(mount) = query_value(&q, "mount") {
        let digest = parse_digest(mount)?;
        if reg
            .mount_blob(repo, &digest, query_value(&q, "from"))
            .await?
        {
            return Ok(blob_created(repo, &digest));
        }
    } else if let Some(d) = query_value(&q, "digest") {
        let digest = parse_digest(d)?;
        let body = payload_stream(payload, None);
        reg.put_blob(repo, Some(&digest), body, content_length(req))
            .await?;
        return Ok(blob_created(repo, &digest));
    }
    let alg = match query_value(&q, "digest-algorithm") {
        Some(a) => Some(
            Algorithm::parse(a)
                .ok_or_else(|| OciError::from(Error::from(DigestError::Unsupported(a.into()))))?,
        ),
        None => None,
    };
    let up = reg.start_upload(repo, alg).await?;
    Ok(upload_reply(StatusCode::ACCEPTED, repo, &up.id, 0))
}

async fn finish_upload(
    req: &HttpRequest,
    payload: web::Payload,
    reg: &Registry,
    repo: &str,
    id: &str,
) -> Reply {
    let q = query_pairs(req);
    let digest = parse_digest(
        query_value(&q, "digest")
            .ok_or_else(|| OciError::digest_invalid("digest parameter missing"))?,
    )?;
    let range = content_range(req)?;
    if range.is_none() && content_length(req).is_some_and(|n| n > 0 && n <= SMALL_BLOB) {
        // The whole blob in one small request (docker, oras, crane): no staging.
        let data = read_limited(payload, SMALL_BLOB as usize).await?;
        reg.finish_upload_with(repo, id, &digest, data).await?;
        return Ok(blob_created(repo, &digest));
    }
    if has_body(req) || range.is_some() {
        let body = payload_stream(payload, None);
        reg.append_upload(repo, id, range, body, content_length(req))
            .await
            .map_err(|e| with_location(e, repo, id))?;
    } else {
        reg.upload_status(repo, id).await?;
    }
    reg.finish_upload(repo, id, &digest).await?;
    Ok(blob_created(repo, &digest))
}

/// Parse `Range: bytes=a-b | a- | -n` against a blob of `size` bytes.
fn byte_range(v: &str, size: u64) -> Result<ByteRange, Error> {
    let bad = Error::RangeNotSatisfiable { size };
    let spec = v
        .trim()
        .strip_prefix("bytes=")
        .ok_or(Error::RangeNotSatisfiable { size })?;
    if spec.contains(',') {
        return Err(bad);
    }
    let (a, b) = spec
        .split_once('-')
        .ok_or(Error::RangeNotSatisfiable { size })?;
    let num = |s: &str| {
        s.trim()
            .parse::<u64>()
            .map_err(|_| Error::RangeNotSatisfiable { size })
    };
    let (start, end) = match (a.trim().is_empty(), b.trim().is_empty()) {
        (true, false) => {
            let n = num(b)?.min(size);
            if n == 0 {
                return Err(bad);
            }
            (size - n, size - 1)
        }
        (false, true) => (num(a)?, size.saturating_sub(1)),
        (false, false) => (num(a)?, num(b)?.min(size.saturating_sub(1))),
        (true, true) => return Err(bad),
    };
    if start >= size || end < start {
        return Err(bad);
    }
    Ok(ByteRange { start, end })
}

async fn get_blob(req: &HttpRequest, state: &AppState, repo: &str, digest: &str) -> Reply {
    let reg = &state.registry;
    let digest = parse_digest(digest)?;
    let size = reg.stat_blob(repo, &digest).await?;
    let head = req.method() == Method::HEAD;
    if !head {
        if let Some(url) = state.blob_redirect(&digest).await {
            return Ok(ok(StatusCode::TEMPORARY_REDIRECT)
                .insert_header(("Location", url))
                .insert_header(("Docker-Content-Digest", digest.to_string()))
                .finish());
        }
    }
    let range = match header(req, "Range") {
        Some(v) if !head => Some(byte_range(v, size)?),
        _ => None,
    };
    let (status, len) = match range {
        Some(r) => (StatusCode::PARTIAL_CONTENT, r.end - r.start + 1),
        None => (StatusCode::OK, size),
    };
    let mut res = ok(status);
    res.insert_header(("Content-Type", "application/octet-stream"))
        .insert_header(("Docker-Content-Digest", digest.to_string()))
        .insert_header(("Accept-Ranges", "bytes"))
        .insert_header(("ETag", format!("\"{digest}\"")));
    if let Some(r) = range {
        res.insert_header((
            "Content-Range",
            format!("bytes {}-{}/{}", r.start, r.end, size),
        ));
    }
    if head {
        return Ok(res.body(head_body(len)));
    }
    let stream = reg.open_blob(&digest, range).await?;
    Ok(res.body(SizedStream::new(len, stream)))
}

/// Which stored manifest to answer with, given what the client accepts.
fn accepts(req: &HttpRequest, media_type: &str) -> bool {
    let accept: Vec<&str> = req
        .headers()
        .get_all("Accept")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.split(';').next().unwrap_or("").trim())
        .filter(|v| !v.is_empty())
        .collect();
    accept.is_empty()
        || accept
            .iter()
            .any(|a| *a == media_type || *a == "*/*" || *a == "application/json")
}

fn manifest_reference(reference: &str, for_write: bool) -> Result<Reference, OciError> {
    match Reference::parse(reference) {
        Ok(r) => Ok(r),
        Err(ReferenceError::Digest(e)) => Err(Error::from(e).into()),
        // An invalid tag names nothing: reads answer 404, writes 400.
        Err(ReferenceError::Invalid) if for_write => {
            Err(Error::TagInvalid(reference.into()).into())
        }
        Err(ReferenceError::Invalid) => Err(Error::ManifestUnknown(reference.into()).into()),
    }
}

async fn get_manifest(req: &HttpRequest, reg: &Registry, repo: &str, reference: &str) -> Reply {
    reg.check_repo(repo)?;
    let reference = manifest_reference(reference, false)?;
    let mut info = reg.stat_manifest(repo, &reference).await?;
    // A client that cannot take an index gets the index's entry it can use.
    if media::is_index(&info.media_type) && !accepts(req, &info.media_type) {
        if let Some(child) = reg
            .negotiate_child(repo, &info, |mt| accepts(req, mt))
            .await?
        {
            info = child;
        }
    }
    let mut res = manifest_headers(StatusCode::OK, &info);
    if req.method() == Method::HEAD {
        return Ok(res.body(head_body(info.size)));
    }
    let bytes = reg.manifest_bytes(&info).await?;
    Ok(res.body(bytes))
}

fn manifest_headers(status: StatusCode, info: &ManifestInfo) -> HttpResponseBuilder {
    let mut res = ok(status);
    res.insert_header(("Content-Type", info.media_type.as_str()))
        .insert_header(("Docker-Content-Digest", info.digest.to_string()))
        .insert_header(("ETag", format!("\"{}\"", info.digest)));
    res
}

async fn put_manifest(
    req: &HttpRequest,
    payload: web::Payload,
    reg: &Registry,
    repo: &str,
    reference: &str,
) -> Reply {
    reg.check_repo(repo)?;
    let reference = manifest_reference(reference, true)?;
    let body = read_limited(payload, reg.max_manifest_size()).await?;
    let q = query_pairs(req);
    let tags: Vec<String> = q
        .iter()
        .filter(|(k, _)| k == "tag")
        .map(|(_, v)| v.clone())
        .collect();
    let info = reg
        .put_manifest(PutManifest {
            repo,
            reference: &reference,
            content_type: header(req, "Content-Type"),
            body,
            tags: &tags,
        })
        .await?;
    let mut res = ok(StatusCode::CREATED);
    res.insert_header(("Location", format!("/v2/{repo}/manifests/{}", info.digest)))
        .insert_header(("Docker-Content-Digest", info.digest.to_string()));
    if let Some(subject) = &info.subject {
        res.insert_header(("OCI-Subject", subject.to_string()));
    }
    for t in &tags {
        res.append_header(("OCI-Tag", t.as_str()));
    }
    Ok(res.finish())
}

async fn delete_manifest(reg: &Registry, repo: &str, reference: &str) -> Reply {
    reg.check_repo(repo)?;
    let reference = manifest_reference(reference, false)?;
    reg.delete_manifest(repo, &reference).await?;
    Ok(ok(StatusCode::ACCEPTED).finish())
}

fn page_params(req: &HttpRequest) -> Result<(Option<usize>, Option<String>), OciError> {
    let q = query_pairs(req);
    let n = match query_value(&q, "n") {
        Some(n) => Some(n.parse::<usize>().map_err(|_| {
            OciError::new(
                StatusCode::BAD_REQUEST,
                "PAGINATION_NUMBER_INVALID",
                "n must be a number",
            )
        })?),
        None => None,
    };
    Ok((n, query_value(&q, "last").map(str::to_string)))
}

fn paged(
    mut res: HttpResponseBuilder,
    path: &str,
    n: Option<usize>,
    page: &Page,
) -> HttpResponseBuilder {
    if let (Some(n), Some(last)) = (n, &page.next_last) {
        let last = serde_urlencoded::to_string([("last", last)]).unwrap_or_default();
        res.insert_header(("Link", format!("<{path}?n={n}&{last}>; rel=\"next\"")));
    }
    res
}

async fn tags(req: &HttpRequest, reg: &Registry, repo: &str) -> Reply {
    let (n, last) = page_params(req)?;
    let page = reg.list_tags(repo, n, last.as_deref()).await?;
    let res = paged(
        ok(StatusCode::OK),
        &format!("/v2/{repo}/tags/list"),
        n,
        &page,
    );
    Ok({ res }.json(json!({"name": repo, "tags": page.items})))
}

async fn catalog(req: &HttpRequest, reg: &Registry) -> Reply {
    let (n, last) = page_params(req)?;
    let page = reg.catalog(n, last.as_deref()).await?;
    let res = paged(ok(StatusCode::OK), "/v2/_catalog", n, &page);
    Ok({ res }.json(json!({"repositories": page.items})))
}

async fn referrers(req: &HttpRequest, reg: &Registry, repo: &str, digest: &str) -> Reply {
    let digest = digest
        .parse::<Digest>()
        .map_err(|e| OciError::digest_invalid(e.to_string()))?;
    let q = query_pairs(req);
    let artifact_type = query_value(&q, "artifactType");
    let list = reg.referrers(repo, &digest, artifact_type).await?;
    let mut res = ok(StatusCode::OK);
    res.insert_header(("Content-Type", media::OCI_INDEX));
    if artifact_type.is_some() {
        res.insert_header(("OCI-Filters-Applied", "artifactType"));
    }
    let body = json!({"schemaVersion": 2, "mediaType": media::OCI_INDEX, "manifests": list});
    Ok(res.body(serde_json::to_vec(&body).expect("index serializes")))
}

#[cfg(test)]
mod tests {
    use super::byte_range;
    use crate::store::ByteRange;

    #[test]
    fn ranges() {
        let r = |s, size| byte_range(s, size).ok();
        assert_eq!(
            r("bytes=500-1499", 2048),
            Some(ByteRange {
                start: 500,
                end: 1499
            })
        );
        assert_eq!(
            r("bytes=500-", 2048),
            Some(ByteRange {
                start: 500,
                end: 2047
            })
        );
        assert_eq!(
            r("bytes=-500", 2048),
            Some(ByteRange {
                start: 1548,
                end: 2047
            })
        );
        assert_eq!(
            r("bytes=2000-5000", 2048),
            Some(ByteRange {
                start: 2000,
                end: 2047
            })
        );
        assert_eq!(r("bytes=500-0", 2048), None);
        assert_eq!(r("bytes=5000-10000", 2048), None);
        assert_eq!(r("items=1-2", 2048), None);
    }
}
