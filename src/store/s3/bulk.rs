//! Streamed GETs of blobs on plain HTTP/1.1 connections, read in large steps.
//!
//! Why not hyper: a blob read through a general client wakes apprd for every
//! few dozen KiB the store sends (through the SDK, 25K epoll waits and 10K
//! reads per GiB from Garage; about 2K and 2.5K here), and on a small VM each
//! wakeup of an idle vCPU costs the waker too: the store then moves fewer
//! bytes per second (`bench/results/s3.md`). This reader
//! asks the kernel, with `SO_RCVLOWAT`, to report the socket readable only
//! once 256 KiB have come (or the rest of the body, which it knows from
//! `Content-Length`: it never waits for bytes that will not come). A general
//! client cannot do that, as only the body's parser knows what is left.
//!
//! It speaks just enough HTTP/1.1: one GET, a response head parsed by
//! `httparse`, a body of known length. Chunked bodies, a head over 64 KiB or
//! anything unexpected give no answer, and the caller hands the request to
//! the SDK. Connections are kept for the next read once a body has been read
//! to its end.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::super::ByteStream;

/// Bytes the kernel gathers before it wakes the reader.
const LOW_WATER: usize = 256 * 1024;
/// The most one read takes (and so one chunk holds).
const MAX_READ: usize = 512 * 1024;
/// The largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Idle connections kept, and for how long.
const MAX_IDLE: usize = 16;
const IDLE_FOR: Duration = Duration::from_secs(10);

/// Kept connections, each with the time it was put back.
type Idle = Arc<Mutex<Vec<(TcpStream, Instant)>>>;

/// Connections to one store endpoint.
pub struct Bulk {
    /// As the URL names it (and the signature signs it), for `Host`.
    authority: String,
    /// `host:port`, the port filled in (80) where the URL leaves it out.
    address: String,
    idle: Idle,
    /// The longest wait for the next bytes of a body.
    stall: Duration,
}

/// A response: its status and, for a 2xx, its body.
pub struct Answer {
    pub status: u16,
    pub body: Option<ByteStream>,
}

impl Bulk {
    /// Connections to the plain-HTTP endpoint `authority` (`host[:port]`).
    pub fn new(authority: &http::uri::Authority, stall: Duration) -> Self {
        Bulk {
            authority: authority.to_string(),
            address: format!(
                "{}:{}",
                authority.host(),
                authority.port_u16().unwrap_or(80)
            ),
            idle: Arc::new(Mutex::new(Vec::new())),
            stall,
        }
    }

    /// Send the body-less `req` (origin-form URI, signed headers; `Host` is
    /// added here). `None` when no usable answer came.
    pub async fn send(&self, req: &http::Request<()>) -> Option<Answer> {
        let wire = self.serialise(req);
        if let Some(conn) = self.reuse() {
            // A kept connection the store may have closed meanwhile: one more try on a new one.
            if let Ok(answer) = self.exchange(conn, &wire).await {
                return Some(answer);
            }
        }
        let conn = TcpStream::connect(&self.address).await.ok()?;
        conn.set_nodelay(true).ok()?;
        self.exchange(conn, &wire).await.ok()
    }

    fn reuse(&self) -> Option<TcpStream> {
        let mut idle = self.idle.lock().ok()?;
        idle.retain(|(_, since)| since.elapsed() < IDLE_FOR);
        idle.pop().map(|(conn, _)| conn)
    }

    fn serialise(&self, req: &http::Request<()>) -> Vec<u8> {
        let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let mut wire = format!(
            "{} {target} HTTP/1.1\r\nhost: {}\r\n",
            req.method(),
            self.authority
        )
        .into_bytes();
        for (name, value) in req.headers() {
            wire.extend_from_slice(name.as_str().as_bytes());
            wire.extend_from_slice(b": ");
            wire.extend_from_slice(value.as_bytes());
            wire.extend_from_slice(b"\r\n");
        }
        wire.extend_from_slice(b"\r\n");
        wire
    }

    async fn exchange(&self, mut conn: TcpStream, wire: &[u8]) -> io::Result<Answer> {
        set_low_water(&conn, 1)?;
        conn.write_all(wire).await?;
        let mut buf = BytesMut::with_capacity(16 * 1024);
        let head = loop {
            if conn.read_buf(&mut buf).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            if let Some(head) = parse_head(&buf)? {
                break head;
            }
            if buf.len() > MAX_HEAD {
                return Err(invalid("response head too large"));
            }
        };
        if !(200..300).contains(&head.status) {
            return Ok(Answer {
                status: head.status,
                body: None,
            });
        }
        let first = buf.split_off(head.len).freeze();
        let Some(remaining) = head.length.and_then(|n| n.checked_sub(first.len() as u64)) else {
            return Err(invalid("no usable content-length"));
        };
        let body = Body {
            conn,
            first: (!first.is_empty()).then_some(first),
            remaining,
            low_water: 1,
            keep: head.keep_alive.then(|| self.idle.clone()),
            stall: self.stall,
        };
        Ok(Answer {
            status: head.status,
            body: Some(body.into_stream()),
        })
    }
}

struct Head {
    status: u16,
    /// Bytes of the head itself.
    len: usize,
    /// `Content-Length`; `None` also when the body is chunked.
    length: Option<u64>,
    keep_alive: bool,
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// The response head at the start of `buf`, `None` while it is incomplete.
fn parse_head(buf: &[u8]) -> io::Result<Option<Head>> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut res = httparse::Response::new(&mut headers);
    let len = match res.parse(buf).map_err(|e| invalid(&e.to_string()))? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return Ok(None),
    };
    let value = |name: &str| {
        res.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
    };
    let chunked = value("transfer-encoding").is_some();
    Ok(Some(Head {
        status: res.code.unwrap_or(0),
        len,
        length: value("content-length")
            .and_then(|v| v.trim().parse().ok())
            .filter(|_| !chunked),
        keep_alive: res.version == Some(1)
            && !value("connection").is_some_and(|v| v.eq_ignore_ascii_case("close")),
    }))
}

/// `SO_RCVLOWAT`: the socket reads as ready once `bytes` have come (or it closed).
fn set_low_water(conn: &TcpStream, bytes: usize) -> io::Result<()> {
    let value = bytes as libc::c_int;
    // SAFETY: a valid socket and a c_int option value of the size given.
    let rc = unsafe {
        libc::setsockopt(
            conn.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVLOWAT,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A body being read: what came with the head, then the socket.
struct Body {
    conn: TcpStream,
    first: Option<Bytes>,
    remaining: u64,
    low_water: usize,
    /// Where the connection goes once the body is read (keep-alive).
    keep: Option<Idle>,
    stall: Duration,
}

impl Body {
    fn into_stream(self) -> ByteStream {
        Box::pin(futures_util::stream::try_unfold(self, |mut b| async move {
            if let Some(first) = b.first.take() {
                return Ok(Some((first, b)));
            }
            if b.remaining == 0 {
                b.keep_connection();
                return Ok(None);
            }
            let chunk = b.read().await?;
            Ok(Some((chunk, b)))
        }))
    }

    async fn read(&mut self) -> io::Result<Bytes> {
        let want = self.remaining.min(LOW_WATER as u64) as usize;
        if want != self.low_water {
            set_low_water(&self.conn, want)?;
            self.low_water = want;
        }
        let most = self.remaining.min(MAX_READ as u64) as usize;
        let mut buf = BytesMut::with_capacity(most);
        let n = tokio::time::timeout(self.stall, self.conn.read_buf(&mut (&mut buf).limit(most)))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "s3 store stalled mid-body"))??;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "s3 store closed the connection mid-body",
            ));
        }
        self.remaining -= n as u64;
        Ok(buf.freeze())
    }

    fn keep_connection(self) {
        let Some(keep) = self.keep else { return };
        let Ok(mut idle) = keep.lock() else { return };
        if idle.len() < MAX_IDLE {
            idle.push((self.conn, Instant::now()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(url: &str) -> Bulk {
        let uri: http::Uri = url.parse().unwrap();
        Bulk::new(uri.authority().unwrap(), Duration::from_secs(1))
    }

    #[test]
    fn connects_to_port_80_when_the_url_names_none() {
        let b = bulk("http://s3.example/bucket/");
        assert_eq!(
            (b.authority.as_str(), b.address.as_str()),
            ("s3.example", "s3.example:80")
        );
        let b = bulk("http://[::1]:3900/bucket/");
        assert_eq!(
            (b.authority.as_str(), b.address.as_str()),
            ("[::1]:3900", "[::1]:3900")
        );
    }

    #[test]
    fn sends_the_signed_headers_and_the_url_host() {
        let b = bulk("http://bucket.s3.example:9000/");
        let req = http::Request::get("/a%20b?x=1")
            .header("x-amz-date", "20261203T000000Z")
            .header("range", "bytes=0-9")
            .body(())
            .unwrap();
        let wire = String::from_utf8(b.serialise(&req)).unwrap();
        assert_eq!(
            wire,
            "GET /a%20b?x=1 HTTP/1.1\r\nhost: bucket.s3.example:9000\r\n\
             x-amz-date: 20261203T000000Z\r\nrange: bytes=0-9\r\n\r\n"
        );
    }

    #[test]
    fn reads_a_head_of_known_length_only() {
        let head = b"HTTP/1.1 206 Partial Content\r\nContent-Length: 10\r\n\r\n0123";
        let h = parse_head(head).unwrap().unwrap();
        assert_eq!(
            (h.status, h.len, h.length, h.keep_alive),
            (206, head.len() - 4, Some(10), true)
        );
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Le")
            .unwrap()
            .is_none());
        let chunked = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n";
        assert_eq!(parse_head(chunked).unwrap().unwrap().length, None);
        let close = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        assert!(!parse_head(close).unwrap().unwrap().keep_alive);
        assert!(parse_head(b"garbage\r\n\r\n").is_err());
    }
}
