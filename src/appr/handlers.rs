//! Thin handlers: parse the request, call the APPR service, shape the answer.
//! Every answer carries CORS headers like the reference's `flask_cors`.

use actix_web::body::SizedStream;
use actix_web::http::{Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use serde::Serialize;
use serde_json::{json, Map, Value};

use super::errors::ApprError;
use super::models;
use super::routes::Route;
use super::service::{self, Appr, BlobOut, PushRequest};
use super::stream::json_pull_body;
use crate::http::{header, payload_stream, query_pairs, query_value};
use crate::state::AppState;

type Reply = Result<HttpResponse, ApprError>;

/// The version the real CLI expects to talk to.
pub const API_VERSION: &str = "0.7.4";

pub fn json_text<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("response serializes")
}

fn json<T: Serialize>(v: &T) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(json_text(v))
}

pub async fn dispatch(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let route = Route::parse(req.path());
    let mut res = match route {
        None if req.path() == "/cnr" => HttpResponse::MovedPermanently()
            .insert_header(("Location", "/cnr/"))
            .finish(),
        None => ApprError::not_found(req.path()).error_response(),
        Some(route) if req.method() == Method::OPTIONS => preflight(&req, &route),
        Some(route) => {
            let appr = Appr::new(state.registry.clone());
            match handle(&req, payload, &state, &appr, route).await {
                Ok(r) => r,
                Err(e) => e.error_response(),
            }
        }
    };
    if !res.headers().contains_key("access-control-allow-origin") {
        res.headers_mut().insert(
            actix_web::http::header::ACCESS_CONTROL_ALLOW_ORIGIN,
            actix_web::http::header::HeaderValue::from_static("*"),
        );
    }
    res
}

/// `OPTIONS`: the methods, and a CORS preflight answer when asked.
fn preflight(req: &HttpRequest, route: &Route) -> HttpResponse {
    let mut res = HttpResponse::Ok();
    res.insert_header(("Allow", route.allow()));
    if let Some(origin) = header(req, "Origin") {
        res.insert_header(("Access-Control-Allow-Origin", origin))
            .insert_header((
                "Access-Control-Allow-Methods",
                "DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT",
            ))
            .insert_header(("Vary", "Origin"));
        if let Some(h) = header(req, "Access-Control-Request-Headers") {
            res.insert_header(("Access-Control-Allow-Headers", h));
        }
    }
    res.finish()
}

async fn handle(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    appr: &Appr,
    route: Route,
) -> Reply {
    let m = req.method().clone();
    let get = m == Method::GET || m == Method::HEAD;
    let q = query_pairs(req);
    let qv = |k: &str| query_value(&q, k).map(str::to_string);
    let pkg = |ns: &str, name: &str| service::package_name(ns, name);
    let as_json = |json: bool| json || qv("format").as_deref() == Some("json");
    match route {
        Route::Discovery if get => Ok(discovery(req)),
        Route::Version if get => Ok(json(&models::ApiVersion {
            appr_api: API_VERSION,
        })),
        Route::Routes if get => Ok(json(&json!({ "routes": route_list() }))),
        Route::TestError if get => Err(ApprError::new(
            super::errors::Code::InvalidUsage,
            "error message",
            json!({"path": req.path()}),
        )),
        Route::List if get => {
            let media_type = qv("media_type");
            let list = appr
                .list(
                    qv("namespace").as_deref(),
                    qv("query").as_deref(),
                    media_type.as_deref(),
                )
                .await?;
            Ok(json(&list))
        }
        Route::Search if get => {
            let q = qv("q").unwrap_or_else(|| "None".to_string());
            Ok(json(&appr.search(&q).await?))
        }
        Route::Package { ns, name } if get => {
            let p = pkg(&ns, &name)?;
            Ok(json(
                &appr
                    .package_manifests(&p, qv("media_type").as_deref())
                    .await?,
            ))
        }
        Route::Package { ns, name } if m == Method::POST => {
            let package = pkg(&ns, &name)?;
            let body = payload_stream(payload, Some(state.config.max_package_size));
            appr.push(PushRequest {
                package,
                query: q.clone(),
                body,
            })
            .await?;
            Ok(json(&models::Status { status: "ok" }))
        }
        Route::Release { ns, name, release } if get => {
            let p = pkg(&ns, &name)?;
            Ok(json(&appr.release_manifests(&p, &release).await?))
        }
        Route::Manifest {
            ns,
            name,
            release,
            media_type,
        } if get => {
            let p = pkg(&ns, &name)?;
            Ok(json(&appr.show(&p, &release, &media_type).await?))
        }
        Route::Manifest {
            ns,
            name,
            release,
            media_type,
        } if m == Method::DELETE => {
            let package = pkg(&ns, &name)?;
            appr.delete(&package, &release, &media_type).await?;
            Ok(json(&models::ReleaseDeleted {
                status: "deleted",
                package,
                release,
            }))
        }
        Route::Pull {
            ns,
            name,
            release,
            media_type,
            json,
        } if get => {
            let p = pkg(&ns, &name)?;
            let blob = appr.pull(&p, &release, &media_type).await?;
            send_blob(appr, blob, as_json(json)).await
        }
        Route::Blob {
            ns,
            name,
            digest,
            json,
        } if get => {
            let p = pkg(&ns, &name)?;
            let blob = appr.blob(&p, &digest).await?;
            send_blob(appr, blob, as_json(json)).await
        }
        Route::Channels { ns, name } if get => {
            let p = pkg(&ns, &name)?;
            let list: Vec<models::Channel> = appr
                .list_channels(&p)
                .await?
                .into_iter()
                .map(channel_out)
                .collect();
            Ok(json(&list))
        }
        Route::Channel { ns, name, channel } if get => {
            let p = pkg(&ns, &name)?;
            Ok(json(&channel_out(appr.show_channel(&p, &channel).await?)))
        }
        Route::Channel { ns, name, channel } if m == Method::DELETE => {
            let package = pkg(&ns, &name)?;
            appr.channel_delete(&package, &channel).await?;
            Ok(json(&models::ChannelDeleted {
                channel,
                package,
                action: "delete",
            }))
        }
        Route::ChannelRelease {
            ns,
            name,
            channel,
            release,
        } if m == Method::POST => {
            let p = pkg(&ns, &name)?;
            Ok(json(&channel_out(
                appr.channel_add(&p, &channel, &release).await?,
            )))
        }
        Route::ChannelRelease {
            ns,
            name,
            channel,
            release,
        } if m == Method::DELETE => {
            let package = pkg(&ns, &name)?;
            appr.channel_remove(&package, &channel, &release).await?;
            Ok(json(&models::ChannelReleaseDeleted {
                status: "deleted",
                package,
                name: channel,
                release,
            }))
        }
        route => Err(ApprError::method_not_allowed(route.allow())),
    }
}

fn channel_out(c: service::Channel) -> models::Channel {
    models::Channel {
        name: c.name,
        current: c.current,
        releases: c.releases,
    }
}

/// A package blob, raw (`application/x-gzip`) or inside JSON as base64.
async fn send_blob(appr: &Appr, blob: BlobOut, as_json: bool) -> Reply {
    let stream = appr.open(&blob).await?;
    if as_json {
        let mut fields = Map::new();
        fields.insert("package".into(), Value::from(blob.package.clone()));
        fields.insert("release".into(), Value::from(blob.release.clone()));
        if let Some(mt) = &blob.media_type {
            fields.insert("media_type".into(), Value::from(mt.clone()));
        }
        fields.insert("filename".into(), Value::from(blob.filename.clone()));
        let (len, body) = json_pull_body(&fields, stream, blob.size);
        return Ok(HttpResponse::Ok()
            .content_type("application/json")
            .body(SizedStream::new(len, body)));
    }
    Ok(HttpResponse::build(StatusCode::OK)
        .content_type("application/x-gzip")
        .insert_header(("Content-Disposition", blob.filename.as_str()))
        .body(SizedStream::new(blob.size, stream)))
}

/// The reference's discovery page, `//appr/...` and all.
fn discovery(req: &HttpRequest) -> HttpResponse {
    let info = req.connection_info();
    let domain = header(req, "Host").unwrap_or("");
    let root = format!("{}://{}/", info.scheme(), info.host());
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(format!(
            "<meta name=\"appr-package\" content=\"{domain}/{{name}} {root}/appr/api/v1/packages/{{name}}/pull\">"
        ))
}

fn route_list() -> Vec<String> {
    let rows = [
        ("index_discovery", "GET,HEAD,OPTIONS", "/cnr/"),
        ("version", "GET,HEAD,OPTIONS", "/cnr/version"),
        ("routes", "GET,HEAD,OPTIONS", "/cnr/routes"),
        ("test_error", "GET,HEAD,OPTIONS", "/cnr/test_error"),
        ("list_packages", "GET,HEAD,OPTIONS", "/cnr/api/v1/packages"),
        (
            "search_packages",
            "GET,HEAD,OPTIONS",
            "/cnr/api/v1/packages/search",
        ),
        (
            "push",
            "OPTIONS,POST",
            "/cnr/api/v1/packages/<namespace>/<package_name>",
        ),
        (
            "show_package_releases",
            "GET,HEAD,OPTIONS",
            "/cnr/api/v1/packages/<namespace>/<package_name>",
        ),
        (
            "show_package_release_manifests",
            "GET,HEAD,OPTIONS",
            "/cnr/api/v1/packages/<namespace>/<package_name>/<release>",
        ),
        (
            "show_package",
            "GET,HEAD,OPTIONS",
            "/cnr/api/v1/packages/<namespace>/<package_name>/<release>/<media_type>",
        ),
        (
            "delete_package",
            "DELETE,OPTIONS",
            "/cnr/api/v1/packages/<namespace>/<package_name>/<release>/<media_type>",
        ),
        (
            "pull",
            "GET,HEAD,OPTIONS",
            "/cnr/api/v1/packages/<namespace>/<package_name>/<release>/<media_type>/pull",
        ),
        (
            "pull_json",
            "GET,HEAD,OPTIONS",
            "/cnr/api/v1/packages/<namespace>/<package_name>/<release>/<media_type>/pull/json",
        ),
        (
            "blobs",
            "GET,HEAD,OPTIONS",
            "/cnr/api/v1/packages/<namespace>/<package_name>/blobs/sha256/<digest>",
        ),
        (
            "blobs_json",
            "GET,HEAD,OPTIONS",
            "/cnr/api/v1/packages/<namespace>/<package_name>/blobs/sha256/<digest>/json",
        ),
        (
            "list_channels",
            "GET,HEAD,OPTIONS",
            "/cnr/api/v1/packages/<namespace>/<package_name>/channels",
        ),
        (
            "show_channel",
            "GET,HEAD,OPTIONS",
            "/cnr/api/v1/packages/<namespace>/<package_name>/channels/<channel_name>",
        ),
        (
            "delete_channel",
            "DELETE,OPTIONS",
            "/cnr/api/v1/packages/<namespace>/<package_name>/channels/<channel_name>",
        ),
        (
            "add_channel_release",
            "OPTIONS,POST",
            "/cnr/api/v1/packages/<namespace>/<package_name>/channels/<channel_name>/<release>",
        ),
        (
            "delete_channel_release",
            "DELETE,OPTIONS",
            "/cnr/api/v1/packages/<namespace>/<package_name>/channels/<channel_name>/<release>",
        ),
    ];
    rows.iter()
        .map(|(e, m, u)| format!("{e:<50} {m:<20} {u}"))
        .collect()
}
