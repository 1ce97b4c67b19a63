//! A tower layer on a gRPC server that runs each call's handler inside a span, when this process
//! exports spans: named by the method, a child of the caller's span when the request carries a
//! `traceparent`, and marked as an error when the call fails. When spans are not exported the
//! layer passes calls straight through.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tracing::Instrument as _;

use crate::metrics::rpc::label;

/// Wraps every handler of a gRPC server in an `rpc` span.
#[derive(Clone, Copy, Debug, Default)]
pub struct RpcSpanLayer;

impl<S> tower::Layer<S> for RpcSpanLayer {
    type Service = Spanned<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Spanned { inner }
    }
}

#[derive(Clone)]
pub struct Spanned<S> {
    inner: S,
}

impl<S, B, R> tower::Service<http::Request<B>> for Spanned<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if !super::exporting() {
            return Box::pin(self.inner.call(request));
        }
        let method = label(request.uri().path());
        let span = tracing::info_span!(
            "rpc",
            otel.name = format!("{}/{}", method.service, method.method),
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            rpc.system = "grpc",
            rpc.service = method.service,
            rpc.method = method.method,
            rpc.grpc.status_code = tracing::field::Empty,
        );
        super::context::adopt_from_headers(&span, request.headers());
        let response = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        let recorder = span.clone();
        Box::pin(
            async move {
                let out = response.await;
                if let Ok(response) = &out {
                    // A failed call answers with its status in the headers ("trailers only"); a
                    // successful one puts 0 in trailers this layer does not wait for.
                    let code = response
                        .headers()
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<i64>().ok())
                        .unwrap_or(0);
                    recorder.record("rpc.grpc.status_code", code);
                    if code != 0 {
                        recorder.record("otel.status_code", "ERROR");
                    }
                }
                out
            }
            .instrument(span),
        )
    }
}
