//! What every request handler shares.

use std::sync::Arc;

use crate::config::Config;
use crate::digest::Digest;
use crate::registry::Registry;

pub struct AppState {
    pub config: Arc<Config>,
    pub registry: Registry,
}

impl AppState {
    pub fn new(config: Arc<Config>, registry: Registry) -> Self {
        AppState { config, registry }
    }

    /// A direct download URL for a blob, when the backend offers one and it is enabled.
    pub async fn blob_redirect(&self, digest: &Digest) -> Option<String> {
        if !self.config.s3.redirect {
            return None;
        }
        self.registry
            .store()
            .presign_get(&self.registry.blob_key(digest))
            .await
    }
}
