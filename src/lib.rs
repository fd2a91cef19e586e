//! apprd: a small registry serving the OCI Distribution API and the APPR
//! app-registry API over one content-addressed store.

pub mod appr;
pub mod config;
pub mod digest;
pub mod http;
pub mod oci;
pub mod ops;
pub mod registry;
pub mod server;
pub mod state;
pub mod store;
