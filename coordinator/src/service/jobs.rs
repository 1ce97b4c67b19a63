//! `JobService`: the client API.

use std::pin::Pin;

use shoal_common::proto::job_service_server::JobService;
use shoal_common::proto::{
    CancelJobRequest, GetJobRequest, Job, JobEvent, JobState, ListJobsRequest, ListJobsResponse, ListTrialsRequest,
    ListTrialsResponse, ListWorkersRequest, ListWorkersResponse, SubmitJobRequest, SubmitJobResponse, WatchJobRequest,
};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::error::CoordinatorError;
use crate::state::{Coordinator, is_terminal_event};

/// Events buffered per watcher between the coordinator and the network.
const WATCH_QUEUE: usize = 64;

pub struct JobApi {
    coordinator: Coordinator,
    shutdown: CancellationToken,
}

impl JobApi {
    pub fn new(coordinator: Coordinator, shutdown: CancellationToken) -> Self {
        Self { coordinator, shutdown }
    }
}

fn required_id(id: &str) -> Result<&str, Status> {
    if id.trim().is_empty() {
        return Err(CoordinatorError::invalid("job_id", "required").into());
    }
    Ok(id.trim())
}

type EventStream = Pin<Box<dyn Stream<Item = Result<JobEvent, Status>> + Send>>;

#[tonic::async_trait]
impl JobService for JobApi {
    async fn submit_job(&self, req: Request<SubmitJobRequest>) -> Result<Response<SubmitJobResponse>, Status> {
        let job = self.coordinator.lock().submit(req.into_inner().spec)?;
        Ok(Response::new(SubmitJobResponse { job_id: job.job_id.clone(), job: Some(job) }))
    }

    async fn get_job(&self, req: Request<GetJobRequest>) -> Result<Response<Job>, Status> {
        let req = req.into_inner();
        Ok(Response::new(self.coordinator.lock().get(required_id(&req.job_id)?)?))
    }

    async fn list_jobs(&self, req: Request<ListJobsRequest>) -> Result<Response<ListJobsResponse>, Status> {
        let req = req.into_inner();
        let mut states = Vec::with_capacity(req.states.len());
        for (i, s) in req.states.iter().enumerate() {
            match JobState::try_from(*s) {
                Ok(JobState::Unspecified) | Err(_) => {
                    return Err(
                        CoordinatorError::invalid(format!("states[{i}]"), format!("unknown job state {s}")).into()
                    );
                }
                Ok(state) => states.push(state),
            }
        }
        let jobs = self.coordinator.lock().list(&states, req.limit as usize);
        Ok(Response::new(ListJobsResponse { jobs }))
    }

    async fn list_trials(&self, req: Request<ListTrialsRequest>) -> Result<Response<ListTrialsResponse>, Status> {
        let req = req.into_inner();
        Ok(Response::new(self.coordinator.lock().trials(required_id(&req.job_id)?)?))
    }

    async fn cancel_job(&self, req: Request<CancelJobRequest>) -> Result<Response<Job>, Status> {
        let req = req.into_inner();
        Ok(Response::new(self.coordinator.lock().cancel(required_id(&req.job_id)?, &req.reason)?))
    }

    type WatchJobStream = EventStream;

    async fn watch_job(&self, req: Request<WatchJobRequest>) -> Result<Response<Self::WatchJobStream>, Status> {
        let req = req.into_inner();
        let job_id = required_id(&req.job_id)?.to_owned();
        let sub = self.coordinator.lock().subscribe(&job_id, req.after_seq)?;
        let (tx, rx) = mpsc::channel(WATCH_QUEUE);
        let coordinator = self.coordinator.clone();
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let mut last = req.after_seq;
            let mut live = sub.live;
            let mut pending = sub.history;
            let mut done = false;
            loop {
                for e in pending.drain(..) {
                    if e.seq <= last {
                        continue;
                    }
                    last = e.seq;
                    let terminal = is_terminal_event(&e);
                    if tx.send(Ok(e)).await.is_err() {
                        return;
                    }
                    done |= terminal;
                }
                if done || sub.finished {
                    return;
                }
                tokio::select! {
                    _ = shutdown.cancelled() => {
                        let _ = tx.send(Err(CoordinatorError::WatchInterrupted { job_id }.into())).await;
                        return;
                    }
                    _ = tx.closed() => return,
                    received = live.recv() => match received {
                        Ok(e) => pending.push(e),
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            // Fell behind the live feed: catch up from the database.
                            let caught_up = coordinator.lock().events_after(&job_id, last);
                            match caught_up {
                                Ok(events) => pending = events,
                                Err(e) => {
                                    let _ = tx.send(Err(e.into())).await;
                                    return;
                                }
                            }
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn list_workers(&self, _req: Request<ListWorkersRequest>) -> Result<Response<ListWorkersResponse>, Status> {
        Ok(Response::new(ListWorkersResponse { workers: self.coordinator.lock().list_workers() }))
    }
}
