//! The HTTP endpoints every binary may open (`/metrics`; the coordinator's dashboard): parsing the
//! listen setting, binding it, and serving an axum router on it until shutdown, in plain HTTP or,
//! given a rustls configuration, HTTPS.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long a client may take over its TLS handshake or its request's header.
const HANDSHAKE: Duration = Duration::from_secs(10);

/// Why an HTTP endpoint could not start; the message names the setting.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{key}: `{addr}` is not an address (host:port): {source}")]
    Address { key: &'static str, addr: String, source: std::net::AddrParseError },
    #[error(
        "{key}: {addr} is not a loopback address; this endpoint has no TLS, so it listens on other \
         addresses only with insecure_listen = true"
    )]
    Insecure { key: &'static str, addr: SocketAddr },
    #[error("{key}: cannot listen on {addr}: {source}")]
    Bind { key: &'static str, addr: SocketAddr, source: std::io::Error },
}

/// Parses the setting `key` = `addr`; a non-loopback address needs `insecure` (plain HTTP).
pub fn parse_listen(key: &'static str, addr: &str, insecure: bool) -> Result<SocketAddr, ServeError> {
    let parsed: SocketAddr =
        addr.parse().map_err(|source| ServeError::Address { key, addr: addr.to_owned(), source })?;
    if !parsed.ip().is_loopback() && !insecure {
        return Err(ServeError::Insecure { key, addr: parsed });
    }
    Ok(parsed)
}

/// Binds `addr` and serves `router` in plain HTTP on a task until `shutdown`; the address bound
/// (its real port when `addr` asked for port 0).
pub async fn serve(
    key: &'static str,
    addr: SocketAddr,
    router: axum::Router,
    shutdown: CancellationToken,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), ServeError> {
    serve_with(key, addr, router, None, shutdown).await
}

/// [`serve`], in HTTPS when `tls` is given.
pub async fn serve_with(
    key: &'static str,
    addr: SocketAddr,
    router: axum::Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: CancellationToken,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), ServeError> {
    let listener = TcpListener::bind(addr).await.map_err(|source| ServeError::Bind { key, addr, source })?;
    let local = listener.local_addr().map_err(|source| ServeError::Bind { key, addr, source })?;
    let task = match tls {
        None => tokio::spawn(async move {
            let served = axum::serve(listener, router).with_graceful_shutdown(shutdown.cancelled_owned()).await;
            if let Err(e) = served {
                tracing::error!(error = %e, %local, "{key} server failed");
            }
        }),
        Some(tls) => tokio::spawn(accept_tls(key, listener, router, tokio_rustls::TlsAcceptor::from(tls), shutdown)),
    };
    Ok((local, task))
}

/// Accepts connections until `shutdown`, each on its own task: the TLS handshake (with a
/// deadline), then HTTP/1.1 until the client closes or shutdown comes.
async fn accept_tls(
    key: &'static str,
    listener: TcpListener,
    router: axum::Router,
    acceptor: tokio_rustls::TlsAcceptor,
    shutdown: CancellationToken,
) {
    let connections = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "{key}: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (acceptor, router, stop) = (acceptor.clone(), router.clone(), shutdown.clone());
        connections.spawn(async move {
            if let Err(reason) = connection(stream, acceptor, router, stop).await {
                tracing::debug!(%peer, %reason, "{key}: connection ended");
            }
        });
    }
    connections.close();
    connections.wait().await;
}

async fn connection(
    stream: TcpStream,
    acceptor: tokio_rustls::TlsAcceptor,
    router: axum::Router,
    shutdown: CancellationToken,
) -> Result<(), String> {
    let tls = tokio::time::timeout(HANDSHAKE, acceptor.accept(stream))
        .await
        .map_err(|_| format!("no TLS handshake within {HANDSHAKE:?}"))?
        .map_err(|e| format!("TLS handshake: {e}"))?;
    let service = TowerToHyperService::new(router);
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HANDSHAKE)
        .serve_connection(TokioIo::new(tls), service);
    tokio::pin!(served);
    tokio::select! {
        done = served.as_mut() => done.map_err(|e| e.to_string()),
        _ = shutdown.cancelled() => {
            served.as_mut().graceful_shutdown();
            served.await.map_err(|e| e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_addresses_need_the_insecure_flag() {
        assert!(parse_listen("metrics_listen", "127.0.0.1:0", false).is_ok());
        let err = parse_listen("metrics_listen", "0.0.0.0:9464", false).expect_err("insecure");
        assert!(err.to_string().starts_with("metrics_listen: 0.0.0.0:9464 is not a loopback"), "{err}");
        assert!(parse_listen("metrics_listen", "0.0.0.0:9464", true).is_ok());
        let err = parse_listen("http_listen", "nowhere", false).expect_err("bad");
        assert!(err.to_string().starts_with("http_listen: `nowhere` is not an address"), "{err}");
    }
}
