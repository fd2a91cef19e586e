//! Shared actix plumbing: turning request bodies into `Send` byte streams for
//! the storage core, bounded bodies, and small header helpers.

use actix_web::{web, HttpRequest};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::sync::mpsc;

use crate::registry::BodyTooLarge;
use crate::store::ByteStream;

/// Chunks in flight between the connection and the store: the memory bound of
/// a streamed upload is this times the connection's read size.
const IN_FLIGHT: usize = 8;

/// Forward an actix payload (bound to its worker thread) into a `Send`
/// stream, with back-pressure, failing once more than `limit` bytes arrive.
pub fn payload_stream(mut payload: web::Payload, limit: Option<u64>) -> ByteStream {
    let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(IN_FLIGHT);
    actix_web::rt::spawn(async move {
        let mut seen = 0u64;
        while let Some(item) = payload.next().await {
            let item = match item {
                Ok(chunk) => {
                    seen += chunk.len() as u64;
                    match limit {
                        Some(limit) if seen > limit => {
                            Err(std::io::Error::other(BodyTooLarge(limit)))
                        }
                        _ => Ok(chunk),
                    }
                }
                Err(e) => Err(std::io::Error::other(e.to_string())),
            };
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                return;
            }
        }
    });
    Box::pin(tokio_stream_from(rx))
}

fn tokio_stream_from(
    mut rx: mpsc::Receiver<std::io::Result<Bytes>>,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Read a whole (small) body, refusing more than `limit` bytes whatever the
/// framing (chunked bodies have no `Content-Length` to check up front).
pub async fn read_limited(mut payload: web::Payload, limit: usize) -> Result<Bytes, BodyError> {
    let mut buf = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| BodyError::Io(e.to_string()))?;
        if buf.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge(limit as u64));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

#[derive(Debug)]
pub enum BodyError {
    TooLarge(u64),
    Io(String),
}

pub fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Query pairs, keeping repeated keys (`?tag=a&tag=b`).
pub fn query_pairs(req: &HttpRequest) -> Vec<(String, String)> {
    serde_urlencoded::from_str(req.query_string()).unwrap_or_default()
}

pub fn query_value<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}
