//! Connecting to the coordinator with deadlines on every request.

use std::time::Duration;

use shoal_common::proto::job_service_client::JobServiceClient;
use tonic::transport::Channel;

use crate::error::CliError;

/// Where the coordinator is and how long to wait for it.
#[derive(Clone, Debug)]
pub struct Target {
    pub url: String,
    pub timeout: Duration,
    /// Bearer token for the coordinator's client API; empty = none.
    pub token: String,
    pub tls: shoal_common::tls::ClientTls,
}

impl Target {
    pub fn new(url: &str, timeout_s: u64) -> Result<Self, CliError> {
        if timeout_s == 0 {
            return Err(CliError::usage("--timeout must be > 0"));
        }
        let url = if url.contains("://") { url.to_owned() } else { format!("http://{url}") };
        url.parse::<tonic::transport::Uri>()
            .map_err(|e| CliError::usage(format!("--coordinator `{url}` is not a URL: {e}")))?;
        Ok(Self { url, timeout: Duration::from_secs(timeout_s), token: String::new(), tls: Default::default() })
    }

    pub fn with_token(mut self, token: &str) -> Self {
        self.token = token.to_owned();
        self
    }

    /// Talk TLS (when `tls` is enabled): the URL turns https.
    pub fn with_tls(mut self, tls: shoal_common::tls::ClientTls) -> Self {
        self.url = tls.url(&self.url);
        self.tls = tls;
        self
    }

    pub async fn connect(&self) -> Result<JobServiceClient<Channel>, CliError> {
        let endpoint = self
            .tls
            .endpoint(&self.url)
            .map_err(|e| CliError::usage(format!("--coordinator: {e}")))?
            .connect_timeout(self.timeout)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(20));
        let channel = tokio::time::timeout(self.timeout, endpoint.connect())
            .await
            .map_err(|_| {
                CliError::unavailable(format!("cannot reach the coordinator at {} within {:?}", self.url, self.timeout))
            })?
            .map_err(|e| CliError::unavailable(format!("cannot reach the coordinator at {}: {e}", self.url)))?;
        Ok(JobServiceClient::new(channel))
    }

    /// A request with this target's deadline.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(message);
        r.set_timeout(self.timeout);
        shoal_common::auth::attach(&mut r, &self.token);
        r
    }
}
