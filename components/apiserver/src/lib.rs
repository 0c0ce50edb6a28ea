//! kubelab's apiserver: the Kubernetes API over etcd. See ARCHITECTURE.md
//! for the path of a request through these modules.

pub mod admission;
pub mod allocator;
pub mod apiservices;
pub mod auth;
pub mod bootstrap;
pub mod componentstatus;
pub mod conversion;
pub mod default_roles;
pub mod discovery;
pub mod endpoints_reconciler;
pub mod eviction;
pub mod fields;
pub mod handlers;
pub mod kubelet;
pub mod limits;
pub mod managed_fields;
pub mod meta;
pub mod openapi;
pub mod patch;
pub mod protobuf;
pub mod registry;
pub mod resources;
pub mod route;
pub mod selectors;
pub mod server;
pub mod shutdown;
pub mod startup;
pub mod status;
pub mod storage;
pub mod strategy;
pub mod table;
pub mod validation;
pub mod watch;
pub mod watch_cache;
pub mod zero_values;

use std::sync::Arc;

use axum::routing::get;
use axum::Router;

pub use handlers::App;

async fn ok() -> &'static str {
    "ok"
}

async fn ready(axum::extract::State(app): axum::extract::State<Arc<App>>) -> axum::response::Response {
    use axum::response::IntoResponse;
    match app.registry.etcd.revision().await {
        Ok(_) => "ok".into_response(),
        Err(e) => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, format!("[-]etcd failed: {e}\nreadyz check failed\n")).into_response(),
    }
}

async fn version() -> axum::response::Response {
    handlers::json_response(axum::http::StatusCode::OK, &discovery::version())
}

/// OpenAPI documents, for authenticated users as upstream serves them.
async fn openapi(request: axum::extract::Request) -> axum::response::Response {
    use axum::response::IntoResponse;
    if request.extensions().get::<Option<auth::User>>().cloned().flatten().is_none() {
        return status::ApiError::unauthorized().into_response();
    }
    let path = request.uri().path().trim_start_matches("/openapi/v3").trim_matches('/');
    let doc = if path.is_empty() { Some(openapi::index()) } else { openapi::group_version(path).cloned() };
    match doc {
        Some(doc) => handlers::json_response(axum::http::StatusCode::OK, &doc),
        None => status::ApiError::no_route().into_response(),
    }
}

/// Every route: health, version, OpenAPI, and the API.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/healthz", get(ok))
        .route("/livez", get(ok))
        .route("/readyz", get(ready))
        .route("/version", get(version))
        .route("/openapi/v3", get(openapi))
        .route("/openapi/v3/{*path}", get(openapi))
        .fallback(handlers::api)
        .with_state(app)
}
