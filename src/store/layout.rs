//! Every storage key apprd writes is built here, and only here.
//!
//! ```text
//! blobs/<alg>/<hh>/<hex>                          blob bytes (layers, configs, manifests), global
//! repositories/<repo>/_blobs/<alg>/<hex>          link: the repository may read this blob
//! repositories/<repo>/_manifests/<alg>/<hex>      link: manifest revision {mediaType,size,subject}
//! repositories/<repo>/_tags/<tag>                 pointer: tag -> manifest digest
//! repositories/<repo>/_referrers/<alg>/<hex>/<alg>-<hex>  descriptor of a referrer of subject <alg>:<hex>
//! repositories/<repo>/_appr/channels/<channel>    APPR channel record
//! catalog/<repo>/_repo                            marker: the repository exists
//! uploads/<id>/session                            upload session record (offset, hash state)
//! uploads/<id>/data                               staged upload bytes (backend-managed)
//! uploads/<id>/data._stage                        S3: staging record (multipart id, part etags, tail)
//! uploads/<id>/data._tail/<uuid>                  S3: staged bytes past the last full part
//! _health/<probe>                                 readiness probe object
//! ```
//!
//! Repository names, tags and ids are validated before they reach this module,
//! so none of them can contain `..` or an empty component.

use crate::digest::Digest;

pub fn blob(d: &Digest) -> String {
    format!(
        "blobs/{}/{}/{}",
        d.algorithm().as_str(),
        &d.hex()[..2],
        d.hex()
    )
}

/// Whether `key` is a blob: written once, whole, under its digest, and never
/// changed in place afterwards (only deleted).
pub fn is_blob(key: &str) -> bool {
    key.starts_with("blobs/")
}

fn repo(repo: &str) -> String {
    format!("repositories/{repo}")
}

pub fn blob_link(repo_name: &str, d: &Digest) -> String {
    format!(
        "{}/_blobs/{}/{}",
        repo(repo_name),
        d.algorithm().as_str(),
        d.hex()
    )
}

pub fn manifest_link(repo_name: &str, d: &Digest) -> String {
    format!(
        "{}/_manifests/{}/{}",
        repo(repo_name),
        d.algorithm().as_str(),
        d.hex()
    )
}

pub fn manifest_links(repo_name: &str) -> String {
    format!("{}/_manifests/", repo(repo_name))
}

/// Parse a key from [`manifest_links`] back into its digest.
pub fn manifest_link_digest(key: &str) -> Option<Digest> {
    let rest = key.rsplit_once("/_manifests/")?.1;
    let (alg, hex) = rest.split_once('/')?;
    format!("{alg}:{hex}").parse().ok()
}

pub fn tag(repo_name: &str, tag: &str) -> String {
    format!("{}/_tags/{tag}", repo(repo_name))
}

pub fn tags(repo_name: &str) -> String {
    format!("{}/_tags/", repo(repo_name))
}

pub fn referrers(repo_name: &str, subject: &Digest) -> String {
    format!(
        "{}/_referrers/{}/{}/",
        repo(repo_name),
        subject.algorithm().as_str(),
        subject.hex()
    )
}

pub fn referrer(repo_name: &str, subject: &Digest, referrer: &Digest) -> String {
    format!(
        "{}{}-{}",
        referrers(repo_name, subject),
        referrer.algorithm().as_str(),
        referrer.hex()
    )
}

pub fn channel(repo_name: &str, channel: &str) -> String {
    format!("{}/_appr/channels/{channel}", repo(repo_name))
}

pub fn channels(repo_name: &str) -> String {
    format!("{}/_appr/channels/", repo(repo_name))
}

pub fn catalog_marker(repo_name: &str) -> String {
    format!("catalog/{repo_name}/_repo")
}

pub const CATALOG: &str = "catalog/";

/// Parse a key from [`CATALOG`] back into its repository name.
pub fn catalog_repo(key: &str) -> Option<&str> {
    key.strip_prefix(CATALOG)?.strip_suffix("/_repo")
}

pub const UPLOADS: &str = "uploads/";

pub fn upload_session(id: &str) -> String {
    format!("{UPLOADS}{id}/session")
}

pub fn upload_data(id: &str) -> String {
    format!("{UPLOADS}{id}/data")
}

/// The record a backend keeps beside a staged object (S3: multipart state).
pub fn stage_record(staged: &str) -> String {
    format!("{staged}._stage")
}

/// A fresh key for bytes staged beside `staged` (S3: the tail past the last part).
pub fn stage_tail(staged: &str) -> String {
    format!("{}{}", stage_tail_dir(staged), uuid::Uuid::new_v4())
}

pub fn stage_tail_dir(staged: &str) -> String {
    format!("{staged}._tail/")
}

pub fn health_probe() -> String {
    format!("_health/{}", uuid::Uuid::new_v4())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let d = Digest::sha256_of(b"x");
        assert_eq!(
            manifest_link_digest(&manifest_link("a/b", &d)),
            Some(d.clone())
        );
        assert_eq!(catalog_repo(&catalog_marker("a/b")), Some("a/b"));
        assert!(blob(&d).starts_with("blobs/sha256/"));
    }
}
