//! Checking a package (a gzip-compressed tar) as its bytes go by: it must be
//! valid gzip holding a readable tar, its APPR digest is the SHA-256 of the
//! *uncompressed* tar (`appr/pack.py`), and the chart's `Chart.yaml` is kept
//! for the Helm OCI config. Nothing is buffered but small tar members.

use std::io::{self, Write};

use flate2::write::MultiGzDecoder;
use sha2::{Digest as _, Sha256};

const BLOCK: usize = 512;
/// Largest member we keep in memory (long names, pax headers, Chart.yaml).
const CAPTURE_LIMIT: usize = 1024 * 1024;

/// What a valid package turned out to be.
#[derive(Debug, Clone)]
pub struct Inspected {
    /// Hex SHA-256 of the uncompressed tar: the APPR digest.
    pub appr_digest: String,
    /// The first `<dir>/Chart.yaml` member, if any.
    pub chart_yaml: Option<Vec<u8>>,
}

#[derive(Debug, thiserror::Error)]
#[error("blob is not a gzip-compressed tar: {0}")]
pub struct InvalidPackage(pub String);

/// Feed it the .tar.gz bytes in order, then call [`Inspector::finish`].
pub struct Inspector {
    gz: MultiGzDecoder<TarSink>,
    seen: u64,
}

impl Default for Inspector {
    fn default() -> Self {
        Inspector {
            gz: MultiGzDecoder::new(TarSink::default()),
            seen: 0,
        }
    }
}

impl Inspector {
    pub fn update(&mut self, data: &[u8]) -> Result<(), InvalidPackage> {
        self.seen += data.len() as u64;
        self.gz.write_all(data).map_err(|e| self.error(e))
    }

    fn error(&mut self, e: io::Error) -> InvalidPackage {
        match self.gz.get_mut().error.take() {
            Some(tar) => InvalidPackage(tar),
            None => InvalidPackage(e.to_string()),
        }
    }

    pub fn finish(mut self) -> Result<Inspected, InvalidPackage> {
        if self.seen == 0 {
            return Err(InvalidPackage("empty blob".into()));
        }
        self.gz.try_finish().map_err(|e| self.error(e))?;
        let sink = self
            .gz
            .finish()
            .map_err(|e| InvalidPackage(e.to_string()))?;
        sink.tar.finish()?;
        Ok(Inspected {
            appr_digest: hex::encode(sink.hash.finalize()),
            chart_yaml: sink.tar.chart_yaml,
        })
    }
}

/// The APPR digest of a whole package held in memory (small charts pushed
/// through `/v2`, whose manifests do not carry it).
pub fn inspect(data: &[u8]) -> Result<Inspected, InvalidPackage> {
    let mut i = Inspector::default();
    for chunk in data.chunks(64 * 1024) {
        i.update(chunk)?;
    }
    i.finish()
}

#[derive(Default)]
struct TarSink {
    hash: Sha256,
    tar: Tar,
    error: Option<String>,
}

impl Write for TarSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.hash.update(buf);
        if let Err(e) = self.tar.feed(buf) {
            self.error = Some(e.0.clone());
            return Err(io::Error::new(io::ErrorKind::InvalidData, e.0));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keep {
    Nothing,
    LongName,
    Pax,
    ChartYaml,
}

/// A streaming reader of tar headers (ustar, GNU long names, pax paths).
#[derive(Default)]
struct Tar {
    header: Vec<u8>,
    /// Bytes of the current member still to come (data, then padding).
    data_left: u64,
    padding_left: u64,
    keep: Option<Keep>,
    kept: Vec<u8>,
    long_name: Option<String>,
    pax_path: Option<String>,
    members: u64,
    ended: bool,
    chart_yaml: Option<Vec<u8>>,
}

fn octal(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        // GNU base-256 for large sizes.
        let mut v: u64 = u64::from(field[0] & 0x7f);
        for b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(*b))?;
        }
        return Some(v);
    }
    let s: String = field
        .iter()
        .take_while(|b| **b != 0)
        .map(|b| *b as char)
        .collect();
    let s = s.trim();
    if s.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(s, 8).ok()
}

fn text(field: &[u8]) -> String {
    let end = field.iter().position(|b| *b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

fn checksum_ok(h: &[u8]) -> bool {
    let Some(stored) = octal(&h[148..156]) else {
        return false;
    };
    let unsigned: u64 = h
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u64::from(*b)
            }
        })
        .sum();
    let signed: i64 = h
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                i64::from(*b as i8)
            }
        })
        .sum();
    stored == unsigned || stored as i64 == signed
}

/// `pax` records: `"<len> path=<value>\n"`.
fn pax_path(data: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(data);
    text.lines()
        .filter_map(|l| l.split_once(' ').map(|(_, kv)| kv))
        .find_map(|kv| kv.strip_prefix("path=").map(str::to_string))
}

impl Tar {
    fn feed(&mut self, mut buf: &[u8]) -> Result<(), InvalidPackage> {
        while !buf.is_empty() {
            if self.ended {
                return Ok(());
            }
            if self.data_left > 0 {
                let n = (self.data_left as usize).min(buf.len());
                if matches!(self.keep, Some(k) if k != Keep::Nothing) {
                    if self.kept.len() + n <= CAPTURE_LIMIT {
                        self.kept.extend_from_slice(&buf[..n]);
                    } else {
                        self.keep = Some(Keep::Nothing);
                        self.kept.clear();
                    }
                }
                self.data_left -= n as u64;
                buf = &buf[n..];
                if self.data_left == 0 {
                    self.member_done()?;
                }
                continue;
            }
            if self.padding_left > 0 {
                let n = (self.padding_left as usize).min(buf.len());
                self.padding_left -= n as u64;
                buf = &buf[n..];
                continue;
            }
            let n = (BLOCK - self.header.len()).min(buf.len());
            self.header.extend_from_slice(&buf[..n]);
            buf = &buf[n..];
            if self.header.len() == BLOCK {
                let h = std::mem::take(&mut self.header);
                self.header_block(&h)?;
            }
        }
        Ok(())
    }

    fn header_block(&mut self, h: &[u8]) -> Result<(), InvalidPackage> {
        if h.iter().all(|b| *b == 0) {
            self.ended = true;
            return Ok(());
        }
        if !checksum_ok(h) {
            // Like Python's tarfile: a bad first header is an error, a bad
            // later one ends the archive.
            if self.members == 0 {
                return Err(InvalidPackage("invalid tar header".into()));
            }
            self.ended = true;
            return Ok(());
        }
        self.members += 1;
        let size = octal(&h[124..136]).ok_or_else(|| InvalidPackage("bad size field".into()))?;
        let kind = h[156];
        let mut name = text(&h[0..100]);
        if &h[257..262] == b"ustar" {
            let prefix = text(&h[345..500]);
            if !prefix.is_empty() && &h[257..263] == b"ustar\0" {
                name = format!("{prefix}/{name}");
            }
        }
        let keep = match kind {
            b'L' => Keep::LongName,
            b'x' => Keep::Pax,
            b'g' | b'K' => Keep::Nothing,
            _ => {
                let path = self
                    .pax_path
                    .take()
                    .or(self.long_name.take())
                    .unwrap_or(name);
                let path = path.trim_start_matches("./");
                let is_chart = path.matches('/').count() == 1 && path.ends_with("/Chart.yaml");
                if is_chart && self.chart_yaml.is_none() && matches!(kind, b'0' | 0 | b'7') {
                    Keep::ChartYaml
                } else {
                    Keep::Nothing
                }
            }
        };
        // Python's tarfile skips data only for regular files and unknown types.
        let has_data = !matches!(kind, b'1' | b'2' | b'3' | b'4' | b'5' | b'6');
        let size = if has_data { size } else { 0 };
        self.keep = Some(keep);
        self.kept.clear();
        self.data_left = size;
        self.padding_left = (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64;
        if size == 0 {
            self.member_done()?;
        }
        Ok(())
    }

    fn member_done(&mut self) -> Result<(), InvalidPackage> {
        let kept = std::mem::take(&mut self.kept);
        match self.keep.take() {
            Some(Keep::LongName) => {
                self.long_name = Some(text(&kept));
            }
            Some(Keep::Pax) => self.pax_path = pax_path(&kept),
            Some(Keep::ChartYaml) => self.chart_yaml = Some(kept),
            _ => {}
        }
        Ok(())
    }

    fn finish(&self) -> Result<(), InvalidPackage> {
        if self.members == 0 && !self.ended {
            return Err(InvalidPackage("empty tar".into()));
        }
        if self.data_left > 0 || (!self.ended && !self.header.is_empty()) {
            return Err(InvalidPackage("unexpected end of data".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A .tar.gz with the given (path, content) members.
    pub fn targz(files: &[(&str, &[u8])]) -> Vec<u8> {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let mut tar = tar::Builder::new(gz);
        for (path, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            tar.append_data(&mut h, path, *data).unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap()
    }

    fn gunzip(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(data), &mut out).unwrap();
        out
    }

    #[test]
    fn digest_is_of_uncompressed_tar_and_finds_chart() {
        let long = format!("mychart/{}/x.txt", "d".repeat(120));
        let pkg = targz(&[
            ("mychart/values.yaml", b"a: 1\n"),
            (&long, b"x"),
            ("mychart/Chart.yaml", b"name: mychart\nversion: 1.0.0\n"),
            ("mychart/charts/sub/Chart.yaml", b"name: sub\n"),
        ]);
        let mut i = Inspector::default();
        for c in pkg.chunks(7) {
            i.update(c).unwrap();
        }
        let got = i.finish().unwrap();
        assert_eq!(got.appr_digest, hex::encode(Sha256::digest(gunzip(&pkg))));
        assert_eq!(
            got.chart_yaml.as_deref(),
            Some(&b"name: mychart\nversion: 1.0.0\n"[..])
        );
    }

    #[test]
    fn rejects_what_is_not_a_tar_gz() {
        assert!(inspect(b"").is_err());
        assert!(inspect(b"hello world").is_err());
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&[7u8; 600]).unwrap();
        assert!(inspect(&gz.finish().unwrap()).is_err(), "gzip but not tar");
        let pkg = targz(&[("a/b", &[1u8; 2000])]);
        assert!(inspect(&pkg[..pkg.len() - 10]).is_err(), "truncated gzip");
        let raw = gunzip(&pkg);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&raw[..1000]).unwrap();
        assert!(inspect(&gz.finish().unwrap()).is_err(), "truncated tar");
        assert!(inspect(&pkg).is_ok());
    }
}
