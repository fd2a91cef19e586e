//! Load driver of `bench/run.sh`. Speaks plain OCI Distribution HTTP, so the
//! same calls go to apprd and to its peers; every command prints one JSON
//! object on stdout for the harness to collect. Big-blob pushes and pulls are
//! left to curl and manifest load to wrk: this covers what they can't do.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context, Result};
use clap::{Parser, Subcommand};
use futures_util::{stream, StreamExt, TryStreamExt};
use reqwest::{header, Client, StatusCode};
use serde_json::json;
use sha2::{Digest, Sha256};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

#[derive(Parser)]
#[command(about = "apprd benchmark load driver")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Poll URL until it answers; print the ms since --since-ns (a
    /// `date +%s%N` taken just before the server was started).
    Ready {
        #[arg(long)]
        url: String,
        #[arg(long)]
        since_ns: u128,
        #[arg(long, default_value_t = 60)]
        timeout_s: u64,
    },
    /// Push one image to REPO and tag it N times (t00000, t00001, ...).
    SeedTags {
        #[arg(long)]
        url: String,
        #[arg(long)]
        repo: String,
        #[arg(long)]
        tags: usize,
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
    },
    /// Create N repositories PREFIX/r00000... each holding one tagged image,
    /// its blobs cross-mounted from the first one.
    SeedRepos {
        #[arg(long)]
        url: String,
        #[arg(long)]
        prefix: String,
        #[arg(long)]
        repos: usize,
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
    },
    /// Walk a paginated list (tags/list or _catalog) as clients do: `?n=PAGE`,
    /// then each `Link: <...>; rel="next"` until there is none.
    List {
        #[arg(long)]
        url: String,
        /// e.g. /v2/_catalog or /v2/bench/tags/tags/list
        #[arg(long)]
        path: String,
        #[arg(long, default_value_t = 1000)]
        page: usize,
        /// Fail unless at least this many entries come back.
        #[arg(long, default_value_t = 0)]
        expect: usize,
    },
    /// Push FILE as one blob, streamed from disk: one PUT (monolithic), or
    /// PATCHes of CHUNK_MIB with Content-Range and Content-Length as docker
    /// and containerd send them, then the closing PUT. Prints MiB/s.
    Push {
        #[arg(long)]
        url: String,
        #[arg(long)]
        repo: String,
        #[arg(long)]
        file: std::path::PathBuf,
        /// sha256:... of FILE (computed outside the timed part)
        #[arg(long)]
        digest: String,
        #[arg(long)]
        chunk_mib: Option<u64>,
    },
    /// Push N small images (config + 2 layers + manifest, fresh bytes each
    /// run) into REPO from C concurrent clients, each blob the way docker and
    /// oras do it: HEAD, POST, PUT.
    SmallImages {
        #[arg(long)]
        url: String,
        #[arg(long)]
        repo: String,
        #[arg(long, default_value_t = 200)]
        images: usize,
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
    },
    /// Keep C requests in flight against URL for SECONDS; print requests per
    /// second and latency percentiles. (wrk can't: it waits for a body after
    /// HEAD.) Every answer must be 200.
    Load {
        #[arg(long)]
        url: String,
        #[arg(long, default_value = "GET")]
        method: String,
        #[arg(long, default_value = OCI_MANIFEST)]
        accept: String,
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
    },
    /// Single-core SHA-256 throughput of this machine (the sha2 crate apprd
    /// uses), over MIB MiB hashed in 1 MiB updates.
    Sha256 {
        #[arg(long, default_value_t = 1024)]
        mib: usize,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let out = rt.block_on(run(cli.command))?;
    println!("{out}");
    Ok(())
}

async fn run(command: Command) -> Result<serde_json::Value> {
    // No per-request timeout: its timer costs a tenth of a small request.
    let client = Client::builder().pool_max_idle_per_host(256).build()?;
    match command {
        Command::Ready {
            url,
            since_ns,
            timeout_s,
        } => ready(&client, &url, since_ns, timeout_s).await,
        Command::SeedTags {
            url,
            repo,
            tags,
            concurrency,
        } => seed_tags(&client, &url, &repo, tags, concurrency).await,
        Command::SeedRepos {
            url,
            prefix,
            repos,
            concurrency,
        } => seed_repos(&client, &url, &prefix, repos, concurrency).await,
        Command::List {
            url,
            path,
            page,
            expect,
        } => list(&client, &url, &path, page, expect).await,
        Command::Push {
            url,
            repo,
            file,
            digest,
            chunk_mib,
        } => push_file(&client, &url, &repo, &file, &digest, chunk_mib).await,
        Command::SmallImages {
            url,
            repo,
            images,
            concurrency,
        } => small_images(&client, &url, &repo, images, concurrency).await,
        Command::Load {
            url,
            method,
            accept,
            concurrency,
            seconds,
        } => load(&url, &method, &accept, concurrency, seconds).await,
        Command::Sha256 { mib } => Ok(sha256_limit(mib)),
    }
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

async fn ready(
    client: &Client,
    url: &str,
    since_ns: u128,
    timeout_s: u64,
) -> Result<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(timeout_s);
    loop {
        if let Ok(resp) = client.get(url).send().await {
            if resp.status().is_success() {
                let ms = (now_ns().saturating_sub(since_ns)) as f64 / 1e6;
                return Ok(json!({ "ms": ms }));
            }
        }
        ensure!(
            Instant::now() < deadline,
            "{url} did not answer in {timeout_s} s"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Deterministic bytes that don't compress or repeat between seeds.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn absolute(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        location.to_string()
    } else {
        format!("{base}{location}")
    }
}

/// HEAD, then (if absent) POST + monolithic PUT, as docker and oras push.
async fn push_blob(client: &Client, url: &str, repo: &str, bytes: &[u8]) -> Result<String> {
    let digest = digest_of(bytes);
    let head = client
        .head(format!("{url}/v2/{repo}/blobs/{digest}"))
        .send()
        .await?;
    if head.status() == StatusCode::OK {
        return Ok(digest);
    }
    let location = start_upload(client, url, repo).await?;
    close_upload(
        client,
        &location,
        &digest,
        bytes.len() as u64,
        bytes.to_vec().into(),
    )
    .await?;
    Ok(digest)
}

/// Cross-repo mount; falls back to a plain push if the registry refuses it.
async fn mount_blob(
    client: &Client,
    url: &str,
    repo: &str,
    from: &str,
    bytes: &[u8],
) -> Result<()> {
    let digest = digest_of(bytes);
    let resp = client
        .post(format!(
            "{url}/v2/{repo}/blobs/uploads/?mount={digest}&from={from}"
        ))
        .header(header::CONTENT_LENGTH, "0")
        .send()
        .await?;
    if resp.status() != StatusCode::CREATED {
        push_blob(client, url, repo, bytes).await?;
    }
    Ok(())
}

fn manifest(config: &[u8], layers: &[&[u8]]) -> Vec<u8> {
    let descriptor = |media: &str, b: &[u8]| json!({"mediaType": media, "digest": digest_of(b), "size": b.len()});
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, config),
        "layers": layers.iter().map(|l| descriptor(OCI_LAYER, l)).collect::<Vec<_>>(),
    }))
    .expect("a manifest serialises")
}

async fn put_manifest(
    client: &Client,
    url: &str,
    repo: &str,
    reference: &str,
    body: &[u8],
) -> Result<()> {
    let resp = client
        .put(format!("{url}/v2/{repo}/manifests/{reference}"))
        .header(header::CONTENT_TYPE, OCI_MANIFEST)
        .body(body.to_vec())
        .send()
        .await?;
    let status = resp.status();
    if status != StatusCode::CREATED {
        bail!(
            "PUT manifest {repo}:{reference}: {status} {}",
            resp.text().await.unwrap_or_default()
        );
    }
    Ok(())
}

/// A tiny image: a JSON config and one layer, unique to `seed`.
fn tiny_image(seed: u64) -> (Vec<u8>, Vec<u8>) {
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}},"seed":{seed}}}"#
    );
    (config.into_bytes(), noise(seed, 1024))
}

async fn run_all<F>(count: usize, concurrency: usize, f: impl Fn(usize) -> F) -> Result<f64>
where
    F: std::future::Future<Output = Result<()>>,
{
    let t0 = Instant::now();
    stream::iter((0..count).map(f))
        .buffer_unordered(concurrency)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(t0.elapsed().as_secs_f64())
}

async fn seed_tags(
    client: &Client,
    url: &str,
    repo: &str,
    tags: usize,
    concurrency: usize,
) -> Result<serde_json::Value> {
    let (config, layer) = tiny_image(1);
    push_blob(client, url, repo, &config).await?;
    push_blob(client, url, repo, &layer).await?;
    let body = manifest(&config, &[&layer]);
    let body = &body;
    let seconds = run_all(tags, concurrency, |i| async move {
        put_manifest(client, url, repo, &format!("t{i:05}"), body).await
    })
    .await?;
    Ok(json!({ "seconds": seconds, "tags": tags }))
}

async fn seed_repos(
    client: &Client,
    url: &str,
    prefix: &str,
    repos: usize,
    concurrency: usize,
) -> Result<serde_json::Value> {
    let (config, layer) = tiny_image(2);
    let first = format!("{prefix}/r00000");
    push_blob(client, url, &first, &config).await?;
    push_blob(client, url, &first, &layer).await?;
    let body = manifest(&config, &[&layer]);
    let (config, layer, body, first) = (&config, &layer, &body, &first);
    let seconds = run_all(repos, concurrency, |i| async move {
        let repo = format!("{prefix}/r{i:05}");
        mount_blob(client, url, &repo, first, config).await?;
        mount_blob(client, url, &repo, first, layer).await?;
        put_manifest(client, url, &repo, "latest", body).await
    })
    .await?;
    Ok(json!({ "seconds": seconds, "repos": repos }))
}

/// The target of a `Link: <...>; rel="next"` header, if any.
fn next_link(headers: &header::HeaderMap) -> Option<String> {
    let link = headers.get(header::LINK)?.to_str().ok()?;
    if !link.contains("rel=\"next\"") {
        return None;
    }
    let start = link.find('<')? + 1;
    let end = link[start..].find('>')? + start;
    Some(link[start..end].to_string())
}

async fn list(
    client: &Client,
    url: &str,
    path: &str,
    page: usize,
    expect: usize,
) -> Result<serde_json::Value> {
    let t0 = Instant::now();
    let mut next = Some(format!("{path}?n={page}"));
    let (mut entries, mut pages) = (0usize, 0usize);
    while let Some(target) = next.take() {
        let resp = client.get(absolute(url, &target)).send().await?;
        ensure!(
            resp.status() == StatusCode::OK,
            "GET {target}: {}",
            resp.status()
        );
        next = next_link(resp.headers());
        let body: serde_json::Value = serde_json::from_slice(&resp.bytes().await?)?;
        let items = body
            .get("tags")
            .or_else(|| body.get("repositories"))
            .and_then(|v| v.as_array())
            .map_or(0, |a| a.len());
        entries += items;
        pages += 1;
        ensure!(pages < 100_000, "pagination does not end");
    }
    ensure!(
        entries >= expect,
        "{path}: {entries} entries, expected {expect}"
    );
    Ok(json!({ "seconds": t0.elapsed().as_secs_f64(), "entries": entries, "pages": pages }))
}

async fn small_images(
    client: &Client,
    url: &str,
    repo: &str,
    images: usize,
    concurrency: usize,
) -> Result<serde_json::Value> {
    // Fresh content each run, so no run finds the previous run's blobs.
    let nonce = (now_ns() as u64) << 16;
    let seconds = run_all(images, concurrency, |i| async move {
        let seed = nonce + i as u64 * 4;
        let config =
            format!(r#"{{"architecture":"amd64","os":"linux","seed":{seed}}}"#).into_bytes();
        let layer_a = noise(seed + 1, 32 * 1024);
        let layer_b = noise(seed + 2, 128 * 1024);
        for blob in [&config, &layer_a, &layer_b] {
            push_blob(client, url, repo, blob).await?;
        }
        put_manifest(
            client,
            url,
            repo,
            &format!("i{seed}"),
            &manifest(&config, &[&layer_a, &layer_b]),
        )
        .await
    })
    .await?;
    Ok(json!({ "seconds": seconds, "images": images, "images_per_s": images as f64 / seconds }))
}

fn sha256_limit(mib: usize) -> serde_json::Value {
    let block = noise(3, 1 << 20);
    let t0 = Instant::now();
    let mut hasher = Sha256::new();
    for _ in 0..mib {
        hasher.update(&block);
    }
    let digest = hasher.finalize();
    let seconds = t0.elapsed().as_secs_f64();
    json!({ "mib_per_s": mib as f64 / seconds, "digest": hex::encode(digest) })
}

/// One raw HTTP/1.1 connection per worker, straight on hyper: reqwest's
/// pool and header handling cost the client as much as a small request costs
/// the server, and at concurrency 1 the client's time is in every figure.
async fn load(
    url: &str,
    method: &str,
    accept: &str,
    concurrency: usize,
    seconds: f64,
) -> Result<serde_json::Value> {
    use http_body_util::{BodyExt, Empty};
    let uri: hyper::Uri = url.parse()?;
    let authority = uri.authority().context("URL without host")?.to_string();
    let method = hyper::Method::from_bytes(method.as_bytes())?;
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs_f64(seconds);
    let workers = (0..concurrency).map(|_| {
        let (method, uri, authority) = (method.clone(), uri.clone(), authority.clone());
        async move {
            let stream = tokio::net::TcpStream::connect(&authority).await?;
            stream.set_nodelay(true)?;
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
            tokio::task::spawn_local(conn);
            let mut latencies_us: Vec<u32> = Vec::with_capacity(1 << 16);
            while Instant::now() < deadline {
                let start = Instant::now();
                let req = hyper::Request::builder()
                    .method(method.clone())
                    .uri(uri.path_and_query().map_or("/", |p| p.as_str()))
                    .header(hyper::header::HOST, &authority)
                    .header(hyper::header::ACCEPT, accept)
                    .body(Empty::<bytes_::Bytes>::new())?;
                let resp = sender.send_request(req).await?;
                ensure!(
                    resp.status() == StatusCode::OK,
                    "{method} {uri}: {}",
                    resp.status()
                );
                resp.into_body().collect().await?;
                latencies_us.push(start.elapsed().as_micros().min(u32::MAX as u128) as u32);
            }
            Ok::<_, anyhow::Error>(latencies_us)
        }
    });
    let local = tokio::task::LocalSet::new();
    let mut all: Vec<u32> = local
        .run_until(futures_util::future::try_join_all(workers))
        .await?
        .into_iter()
        .flatten()
        .collect();
    let elapsed = t0.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| {
        let i = ((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1));
        all.get(i).copied().unwrap_or(0) as f64 / 1000.0
    };
    Ok(json!({
        "requests": all.len(),
        "rps": all.len() as f64 / elapsed,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
    }))
}

/// A streaming request body of `len` bytes of `file` from `offset`.
async fn file_body(file: &std::path::Path, offset: u64, len: u64) -> Result<reqwest::Body> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut f = tokio::fs::File::open(file).await?;
    f.seek(std::io::SeekFrom::Start(offset)).await?;
    let stream = tokio_util::io::ReaderStream::with_capacity(f.take(len), 256 * 1024);
    Ok(reqwest::Body::wrap_stream(stream))
}

async fn push_file(
    client: &Client,
    url: &str,
    repo: &str,
    file: &std::path::Path,
    digest: &str,
    chunk_mib: Option<u64>,
) -> Result<serde_json::Value> {
    let total = tokio::fs::metadata(file).await?.len();
    let t0 = Instant::now();
    let mut location = start_upload(client, url, repo).await?;
    let mut offset = 0;
    if let Some(mib) = chunk_mib {
        while offset < total {
            let n = (mib << 20).min(total - offset);
            let resp = client
                .patch(&location)
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .header(header::CONTENT_LENGTH, n)
                .header(
                    header::CONTENT_RANGE,
                    format!("{offset}-{}", offset + n - 1),
                )
                .body(file_body(file, offset, n).await?)
                .send()
                .await?;
            ensure!(
                resp.status() == StatusCode::ACCEPTED,
                "PATCH at {offset}: {}",
                resp.status()
            );
            location = location_of(url, &resp)?;
            offset += n;
        }
    }
    let rest = total - offset;
    close_upload(
        client,
        &location,
        digest,
        rest,
        file_body(file, offset, rest).await?,
    )
    .await?;
    let seconds = t0.elapsed().as_secs_f64();
    Ok(json!({ "seconds": seconds, "mib_per_s": total as f64 / 1048576.0 / seconds }))
}

/// POST a new upload session; its absolute URL.
async fn start_upload(client: &Client, url: &str, repo: &str) -> Result<String> {
    let post = client
        .post(format!("{url}/v2/{repo}/blobs/uploads/"))
        .header(header::CONTENT_LENGTH, "0")
        .send()
        .await?;
    ensure!(
        post.status() == StatusCode::ACCEPTED,
        "POST upload: {}",
        post.status()
    );
    location_of(url, &post)
}

/// The closing PUT of an upload, with the last `len` bytes in `body`.
async fn close_upload(
    client: &Client,
    location: &str,
    digest: &str,
    len: u64,
    body: reqwest::Body,
) -> Result<()> {
    let sep = if location.contains('?') { '&' } else { '?' };
    let put = client
        .put(format!("{location}{sep}digest={digest}"))
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, len)
        .body(body)
        .send()
        .await?;
    let status = put.status();
    ensure!(
        status == StatusCode::CREATED,
        "PUT blob: {status} {}",
        put.text().await.unwrap_or_default()
    );
    Ok(())
}

fn location_of(url: &str, resp: &reqwest::Response) -> Result<String> {
    let location = resp
        .headers()
        .get(header::LOCATION)
        .context("no Location header")?
        .to_str()?;
    Ok(absolute(url, location))
}
