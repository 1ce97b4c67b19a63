//! `WorkerService`: registration and the per-worker session stream.

use std::pin::Pin;
use std::time::Duration;

use shoal_common::proto::worker_service_server::WorkerService;
use shoal_common::proto::{CoordinatorMessage, RegisterRequest, RegisterResponse, WorkerMessage, worker_message};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use crate::error::CoordinatorError;
use crate::state::Coordinator;

/// How long a new session may take to say hello.
const HELLO_DEADLINE: Duration = Duration::from_secs(10);

pub struct WorkerApi {
    coordinator: Coordinator,
    shutdown: CancellationToken,
}

impl WorkerApi {
    pub fn new(coordinator: Coordinator, shutdown: CancellationToken) -> Self {
        Self { coordinator, shutdown }
    }
}

type SessionStream = Pin<Box<dyn Stream<Item = Result<CoordinatorMessage, Status>> + Send>>;

#[tonic::async_trait]
impl WorkerService for WorkerApi {
    async fn register(&self, req: Request<RegisterRequest>) -> Result<Response<RegisterResponse>, Status> {
        Ok(Response::new(self.coordinator.lock().register(req.into_inner())?))
    }

    type SessionStream = SessionStream;

    async fn session(&self, req: Request<Streaming<WorkerMessage>>) -> Result<Response<Self::SessionStream>, Status> {
        let mut inbound = req.into_inner();
        let first = tokio::time::timeout(HELLO_DEADLINE, inbound.message())
            .await
            .map_err(|_| CoordinatorError::NoHello { waited: HELLO_DEADLINE })??;
        let hello = match first.and_then(|m| m.kind) {
            Some(worker_message::Kind::Hello(h)) => h,
            _ => {
                return Err(CoordinatorError::invalid("kind", "the first session message must be `hello`").into());
            }
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let (worker, epoch) = self.coordinator.lock().open_session(hello, tx)?;
        let coordinator = self.coordinator.clone();
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let why = loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break "coordinator shutting down".to_owned(),
                    msg = inbound.message() => match msg {
                        Ok(Some(m)) => coordinator.lock().on_message(&worker, epoch, m),
                        Ok(None) => break "the worker closed it".to_owned(),
                        Err(status) => break format!("stream error: {}", status.message()),
                    },
                }
            };
            coordinator.lock().close_session(&worker, epoch, &why);
        });
        Ok(Response::new(Box::pin(UnboundedReceiverStream::new(rx))))
    }
}
