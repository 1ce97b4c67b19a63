//! The dashboard's static files, compiled into the binary: its own script and styles, and the
//! vendored chart library (uPlot 1.6.32, MIT; see `vendor/uplot/README.md`).

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// (name, content type, body, whether it may be cached for long).
const FILES: [(&str, &str, &str, bool); 6] = [
    ("errors.js", "text/javascript; charset=utf-8", include_str!("static/errors.js"), false),
    ("dashboard.js", "text/javascript; charset=utf-8", include_str!("static/dashboard.js"), false),
    ("dashboard.css", "text/css; charset=utf-8", include_str!("static/dashboard.css"), false),
    ("uPlot.iife.min.js", "text/javascript; charset=utf-8", include_str!("vendor/uplot/uPlot.iife.min.js"), true),
    ("uPlot.min.css", "text/css; charset=utf-8", include_str!("vendor/uplot/uPlot.min.css"), true),
    ("uPlot.LICENSE", "text/plain; charset=utf-8", include_str!("vendor/uplot/LICENSE"), true),
];

pub async fn serve(Path(name): Path<String>) -> Response {
    match FILES.iter().find(|(n, ..)| *n == name) {
        Some((_, kind, body, vendored)) => {
            let cache = if *vendored { "public, max-age=86400" } else { "no-cache" };
            ([(header::CONTENT_TYPE, *kind), (header::CACHE_CONTROL, cache)], *body).into_response()
        }
        None => (StatusCode::NOT_FOUND, format!("no static file `{name}`")).into_response(),
    }
}
