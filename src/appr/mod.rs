//! The APPR app-registry API (CoreOS appr 0.7.4, `/cnr/api/v1/...` and the
//! older `/api/v1/...`) over the OCI store: every package release is an OCI
//! index of per-format manifests (see [`artifact`]).

pub mod artifact;
mod errors;
mod handlers;
mod models;
pub mod package;
mod routes;
pub mod semver;
pub mod service;
pub mod stream;

use actix_web::web;

pub use errors::ApprError;
pub use routes::Route;

/// Mount `/cnr/...` and `/api/v1/...`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::scope("/cnr").default_service(web::to(handlers::dispatch)))
        .service(web::scope("/api/v1").default_service(web::to(handlers::dispatch)));
}
