//! The OCI Distribution API (`/v2`) over the registry core.

mod errors;
mod handlers;
mod routes;

use actix_web::web;

pub use errors::OciError;
pub use routes::Route;

/// Mount `/v2` and everything under it.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v2", web::route().to(handlers::dispatch))
        .route("/v2/{tail:.*}", web::route().to(handlers::dispatch));
}
