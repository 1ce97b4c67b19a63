//! The coordinator's HTTP port (`http_listen`): the web dashboard and `/metrics` for Prometheus,
//! behind the same client tokens as the gRPC API (`authorization: Bearer TOKEN`, which Prometheus
//! sends with `authorization.credentials`; the dashboard also takes its cookie). HTTPS with the
//! gRPC port's certificate when TLS is on (`http_tls`); plain HTTP listens on loopback only,
//! unless `insecure_listen`.

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use shoal_common::auth::Tokens;
use shoal_common::metrics::OPENMETRICS;

use crate::state::Coordinator;

/// The routes of the HTTP port.
pub fn router(coordinator: Coordinator, tokens: Tokens) -> axum::Router {
    let dashboard = crate::dashboard::router(coordinator.clone(), tokens.clone());
    axum::Router::new()
        .route(
            "/metrics",
            get(move |headers: HeaderMap| {
                let (coordinator, tokens) = (coordinator.clone(), tokens.clone());
                async move { metrics(&coordinator, &tokens, headers) }
            }),
        )
        .merge(dashboard)
}

fn metrics(coordinator: &Coordinator, tokens: &Tokens, headers: HeaderMap) -> Response {
    if let Err(status) = tokens.check(&tonic::metadata::MetadataMap::from_headers(headers)) {
        return (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], status.message().to_owned())
            .into_response();
    }
    ([(header::CONTENT_TYPE, OPENMETRICS)], coordinator.scrape()).into_response()
}
