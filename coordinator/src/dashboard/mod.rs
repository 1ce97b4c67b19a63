//! The web dashboard on the coordinator's HTTP port: server-rendered pages (jobs, a job, a
//! search, workers) with a little plain JavaScript that keeps them live, and the JSON they poll.
//! Everything but the static files sits behind the client tokens (see [`auth`]).
//!
//! Routes: `/` jobs, `/jobs/ID` a job or a search, `/workers`, `/api/jobs/ID/updates?after=SEQ`
//! (what a job page lacks), `/api/jobs/ID/search` (a search page's data), `POST
//! /api/jobs/ID/cancel`, `/static/NAME`.

mod assets;
mod auth;
mod curves;
mod html;
mod job;
mod jobs;
mod login;
mod search;
mod workers;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use shoal_common::auth::Tokens;
use shoal_common::proto::Job;

use crate::error::CoordinatorError;
use crate::state::Coordinator;

use auth::ACTION_HEADER;

/// What every handler needs.
#[derive(Clone)]
struct Dashboard {
    coordinator: Coordinator,
    tokens: Tokens,
}

/// The dashboard's routes.
pub fn router(coordinator: Coordinator, tokens: Tokens) -> axum::Router {
    axum::Router::new()
        .route("/", get(jobs_page))
        .route("/jobs/{id}", get(job_page))
        .route("/workers", get(workers_page))
        .route("/api/jobs/{id}/updates", get(updates))
        .route("/api/jobs/{id}/search", get(search_data))
        .route("/api/jobs/{id}/cancel", post(cancel))
        .route("/static/{name}", get(assets::serve))
        .with_state(Dashboard { coordinator, tokens })
}

/// A page answer, or the login page in its place.
fn page_or_login(d: &Dashboard, headers: &HeaderMap, render: impl FnOnce() -> Result<String, Failure>) -> Response {
    if let Err(refusal) = auth::check(&d.tokens, headers) {
        return (StatusCode::UNAUTHORIZED, no_store(), Html(login::page(&refusal))).into_response();
    }
    match render() {
        Ok(body) => (no_store(), Html(body)).into_response(),
        Err(f) => (f.status, no_store(), Html(login::problem(f.status, &f.message))).into_response(),
    }
}

/// A JSON answer, or 401 with the reason.
fn json_or_refusal<T: serde::Serialize>(
    d: &Dashboard,
    headers: &HeaderMap,
    answer: impl FnOnce() -> Result<T, Failure>,
) -> Response {
    if let Err(refusal) = auth::check(&d.tokens, headers) {
        return Failure { status: StatusCode::UNAUTHORIZED, message: refusal.message().into() }.into_response();
    }
    match answer() {
        Ok(value) => (no_store(), Json(value)).into_response(),
        Err(f) => f.into_response(),
    }
}

fn no_store() -> [(header::HeaderName, &'static str); 1] {
    [(header::CACHE_CONTROL, "no-store")]
}

/// A request that could not be answered: its HTTP status and why.
#[derive(Debug)]
struct Failure {
    status: StatusCode,
    message: String,
}

impl From<CoordinatorError> for Failure {
    fn from(e: CoordinatorError) -> Self {
        let status = tonic::Status::from(e);
        let code = match status.code() {
            tonic::Code::NotFound => StatusCode::NOT_FOUND,
            tonic::Code::InvalidArgument => StatusCode::BAD_REQUEST,
            tonic::Code::FailedPrecondition => StatusCode::CONFLICT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Failure { status: code, message: status.message().to_owned() }
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.status, no_store(), Json(serde_json::json!({ "error": self.message }))).into_response()
    }
}

async fn jobs_page(State(d): State<Dashboard>, headers: HeaderMap, Query(filter): Query<jobs::Filter>) -> Response {
    page_or_login(&d, &headers, || {
        let states = jobs::states(&filter).map_err(|message| Failure { status: StatusCode::BAD_REQUEST, message })?;
        let all = d.coordinator.lock().list(&states, 1000);
        Ok(jobs::page(&jobs::matching(all, &filter), &filter))
    })
}

async fn job_page(State(d): State<Dashboard>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    page_or_login(&d, &headers, || {
        let state = d.coordinator.lock();
        let job = state.get(&id)?;
        if job.spec.as_ref().is_some_and(|s| s.search.is_some()) {
            let snapshot = search::SearchSnapshot::of(&job, &state.trials(&id)?, &state.search_curves(&id)?);
            return Ok(search::page(&job, &snapshot));
        }
        let events = state.events_after(&id, 0)?;
        drop(state);
        Ok(job::page(&job, &events))
    })
}

async fn workers_page(State(d): State<Dashboard>, headers: HeaderMap) -> Response {
    page_or_login(&d, &headers, || Ok(workers::page(&d.coordinator.lock().list_workers())))
}

#[derive(Debug, Deserialize)]
struct After {
    #[serde(default)]
    after: u64,
}

/// Points kept per series in one update (a page that fell far behind gets a thinned catch-up).
const UPDATE_POINTS: usize = 5000;

async fn updates(
    State(d): State<Dashboard>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(after): Query<After>,
) -> Response {
    json_or_refusal(&d, &headers, || {
        let (job, events) = {
            let state = d.coordinator.lock();
            (state.get(&id)?, state.events_after(&id, after.after)?)
        };
        Ok(job::Snapshot::of(&job, &events, after.after, UPDATE_POINTS))
    })
}

async fn search_data(State(d): State<Dashboard>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    json_or_refusal(&d, &headers, || {
        let state = d.coordinator.lock();
        let job = state.get(&id)?;
        Ok(search::SearchSnapshot::of(&job, &state.trials(&id)?, &state.search_curves(&id)?))
    })
}

/// What a cancel answers: the job as it is now.
#[derive(Debug, serde::Serialize)]
struct Cancelled {
    job_id: String,
    state: &'static str,
    reason: String,
}

async fn cancel(State(d): State<Dashboard>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if !auth::is_action(&headers) {
        let message = format!("{ACTION_HEADER}: required on requests that change something (the dashboard sends it)");
        return Failure { status: StatusCode::FORBIDDEN, message }.into_response();
    }
    json_or_refusal(&d, &headers, || {
        let job: Job = d.coordinator.lock().cancel(&id, "cancelled from the dashboard")?;
        Ok(Cancelled { state: job.state().label(), job_id: job.job_id, reason: job.reason })
    })
}
