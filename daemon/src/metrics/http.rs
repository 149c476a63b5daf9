//! `GET /metrics` and `GET /healthz`, on their own listener (`--metrics-listen`, which may
//! face a scraper on another host: it serves nothing else) and inside the local endpoint.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::exposition::{CONTENT_TYPE, render};
use super::gather::Sources;

pub fn metrics(sources: &Sources) -> Response {
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        render(&sources.families()),
    )
        .into_response()
}

/// 200 while the daemon serves; 503 once it is stopping, so a probe takes it out early.
pub fn healthz(sources: &Sources) -> Response {
    let h = sources.health();
    let status = if h.status == "ok" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::to_string(&h).unwrap_or_default();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Serves the two routes (and 404 for anything else) until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    sources: Arc<Sources>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(|State(s): State<Arc<Sources>>| async move { metrics(&s) }),
        )
        .route(
            "/healthz",
            axum::routing::get(|State(s): State<Arc<Sources>>| async move { healthz(&s) }),
        )
        .with_state(sources);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
