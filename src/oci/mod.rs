//! The OCI Distribution API (`/v2`) over the registry core.

mod errors;
mod handlers;
mod routes;

use actix_web::web;

pub use errors::OciError;
pub use routes::Route;

/// Mount `/v2` and everything under it.
pub fn configure(cfg: &mut web::ServiceConfig) {
    // A scope's static prefix matches by comparing strings; a `{tail:.*}`
    // route would run a regex on every request. The handler parses the path.
    cfg.service(web::scope("/v2").default_service(web::to(handlers::dispatch)));
}
