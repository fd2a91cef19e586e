//! Domain errors of the registry core. HTTP-free: each API maps them to its
//! own error catalogue.

use crate::digest::{Digest, DigestError};
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid repository name {0:?}")]
    NameInvalid(String),
    #[error("repository {0:?} is not known")]
    NameUnknown(String),
    #[error("invalid tag {0:?}")]
    TagInvalid(String),
    #[error("invalid digest: {0}")]
    DigestInvalid(String),
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("blob {0} is not known")]
    BlobUnknown(Digest),
    #[error("upload session is not known")]
    UploadUnknown,
    #[error("invalid upload: {0}")]
    UploadInvalid(String),
    /// A chunk that does not start where the upload ends; the session is intact.
    #[error("chunk out of order: upload has {size} bytes")]
    ChunkOutOfOrder { size: u64 },
    #[error("range not satisfiable for a blob of {size} bytes")]
    RangeNotSatisfiable { size: u64 },
    #[error("manifest {0} is not known")]
    ManifestUnknown(String),
    #[error("invalid manifest: {0}")]
    ManifestInvalid(String),
    #[error("manifest references unknown blob {0}")]
    ManifestBlobUnknown(Digest),
    #[error("body is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("invalid size: {0}")]
    SizeInvalid(String),
    #[error("request body: {0}")]
    Body(String),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Body(e) => match e.get_ref().and_then(|i| i.downcast_ref::<BodyTooLarge>())
            {
                Some(BodyTooLarge(limit)) => Error::TooLarge { limit: *limit },
                None => Error::Body(e.to_string()),
            },
            other => Error::Store(other),
        }
    }
}

impl From<DigestError> for Error {
    fn from(e: DigestError) -> Self {
        match e {
            DigestError::Unsupported(a) => Error::Unsupported(format!("digest algorithm {a:?}")),
            DigestError::Malformed => Error::DigestInvalid(e.to_string()),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Raised inside a body stream that went past its size limit.
#[derive(Debug, thiserror::Error)]
#[error("body is larger than the limit of {0} bytes")]
pub struct BodyTooLarge(pub u64);
