//! The coordinator's durable state in SQLite (bundled with rusqlite): jobs, their event history
//! (state changes, metrics, notices) and registered workers. Messages are stored as protobuf blobs
//! next to the columns that queries need. WAL mode: a committed write survives a killed process.

use std::collections::HashMap;
use std::path::Path;

use prost::Message;
use rusqlite::{Connection, OptionalExtension, params};
use shoal_common::proto::{Job, JobEvent, WorkerInfo};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {path}: {source}")]
    Open { path: String, source: rusqlite::Error },
    #[error("database query failed: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("database holds a corrupt {what} record: {source}")]
    Decode { what: &'static str, source: prost::DecodeError },
    #[error("database holds a corrupt trial record: {source}")]
    Json { source: serde_json::Error },
    #[error("database schema version {found} is newer than this coordinator understands ({supported})")]
    SchemaTooNew { found: i64, supported: i64 },
}

type Result<T> = std::result::Result<T, StoreError>;

const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jobs (
    id             TEXT PRIMARY KEY,
    seq            INTEGER NOT NULL UNIQUE,
    state          INTEGER NOT NULL,
    body           BLOB NOT NULL,
    resume_from    TEXT NOT NULL DEFAULT '',
    last_checkpoint TEXT NOT NULL DEFAULT '',
    gpus           TEXT NOT NULL DEFAULT '',
    next_event     INTEGER NOT NULL DEFAULT 1,
    holds_worker   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs(state);
CREATE TABLE IF NOT EXISTS job_events (
    job_id  TEXT NOT NULL,
    seq     INTEGER NOT NULL,
    time_ms INTEGER NOT NULL,
    body    BLOB NOT NULL,
    PRIMARY KEY (job_id, seq)
);
CREATE TABLE IF NOT EXISTS trials (
    search_id TEXT NOT NULL,
    idx       INTEGER NOT NULL,
    job_id    TEXT NOT NULL,
    body      TEXT NOT NULL,
    PRIMARY KEY (search_id, idx)
);
CREATE TABLE IF NOT EXISTS workers (
    id            TEXT PRIMARY KEY,
    body          BLOB NOT NULL,
    registered_ms INTEGER NOT NULL,
    last_seen_ms  INTEGER NOT NULL
);
-- The newest report of each worker process that was applied (see WorkerMessage.seq).
CREATE TABLE IF NOT EXISTS report_acks (
    worker_id TEXT PRIMARY KEY,
    boot_id   INTEGER NOT NULL,
    seq       INTEGER NOT NULL
);
";

/// A job as stored: the public record plus what only the coordinator needs.
#[derive(Clone, Debug, PartialEq)]
pub struct JobRow {
    pub job: Job,
    /// Submission order (ties between equal priorities).
    pub seq: u64,
    /// Checkpoint the next attempt resumes from.
    pub resume_from: String,
    /// Newest checkpoint reported by rank 0.
    pub last_checkpoint: String,
    /// GPU indices reserved for each rank on its worker.
    pub gpus: Vec<Vec<u32>>,
    /// Sequence number the next event of this job gets.
    pub next_event: u64,
    /// The job still occupies its worker (it was cancelled but the worker has not confirmed).
    pub holds_worker: bool,
}

/// A registered worker as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkerRow {
    pub id: String,
    pub info: WorkerInfo,
    pub registered_ms: i64,
    pub last_seen_ms: i64,
}

pub struct Store {
    conn: Connection,
}

/// Per-rank GPU lists as text: ranks separated by `;`, indices by `,`.
fn encode_gpus(gpus: &[Vec<u32>]) -> String {
    gpus.iter().map(|g| g.iter().map(u32::to_string).collect::<Vec<_>>().join(",")).collect::<Vec<_>>().join(";")
}

fn decode_gpus(text: &str) -> Vec<Vec<u32>> {
    if text.is_empty() {
        return Vec::new();
    }
    text.split(';').map(|r| r.split(',').filter_map(|g| g.parse().ok()).collect()).collect()
}

fn decode<M: Message + Default>(what: &'static str, bytes: &[u8]) -> Result<M> {
    M::decode(bytes).map_err(|source| StoreError::Decode { what, source })
}

impl Store {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            let _ = std::fs::create_dir_all(parent);
        }
        let conn =
            Connection::open(path).map_err(|source| StoreError::Open { path: path.display().to_string(), source })?;
        Self::init(conn)
    }

    /// A private in-memory database (tests).
    pub fn in_memory() -> Result<Self> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Self> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::SchemaTooNew { found: version, supported: SCHEMA_VERSION });
        }
        conn.execute_batch(SCHEMA)?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        Ok(Self { conn })
    }

    /// Inserts or replaces a job and appends events to its history, atomically.
    pub fn save_job(&mut self, row: &JobRow, events: &[JobEvent]) -> Result<()> {
        // A savepoint, so that it also nests inside a `batch`.
        let tx = self.conn.savepoint()?;
        tx.execute(
            "INSERT INTO jobs (id, seq, state, body, resume_from, last_checkpoint, gpus, next_event, holds_worker)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT(id) DO UPDATE SET state = ?3, body = ?4, resume_from = ?5, last_checkpoint = ?6,
                 gpus = ?7, next_event = ?8, holds_worker = ?9",
            params![
                row.job.job_id,
                row.seq as i64,
                row.job.state,
                row.job.encode_to_vec(),
                row.resume_from,
                row.last_checkpoint,
                encode_gpus(&row.gpus),
                row.next_event as i64,
                row.holds_worker,
            ],
        )?;
        for e in events {
            let time_ms = e.time.as_ref().map_or(0, shoal_common::time::timestamp_to_ms);
            tx.execute(
                "INSERT INTO job_events (job_id, seq, time_ms, body) VALUES (?1, ?2, ?3, ?4)",
                params![e.job_id, e.seq as i64, time_ms, e.encode_to_vec()],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Every job, in submission order.
    pub fn load_jobs(&self) -> Result<Vec<JobRow>> {
        let mut stmt = self.conn.prepare(
            "SELECT body, seq, resume_from, last_checkpoint, gpus, next_event, holds_worker FROM jobs ORDER BY seq",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, bool>(6)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (body, seq, resume_from, last_checkpoint, gpus, next_event, holds_worker) = row?;
            out.push(JobRow {
                job: decode("job", &body)?,
                seq: seq as u64,
                resume_from,
                last_checkpoint,
                gpus: decode_gpus(&gpus),
                next_event: next_event as u64,
                holds_worker,
            });
        }
        Ok(out)
    }

    /// Highest job sequence number used so far.
    pub fn max_job_seq(&self) -> Result<u64> {
        let v: Option<i64> = self.conn.query_row("SELECT MAX(seq) FROM jobs", [], |r| r.get(0))?;
        Ok(v.unwrap_or(0) as u64)
    }

    /// Events of a job with a sequence number above `after`, oldest first.
    pub fn events(&self, job_id: &str, after: u64) -> Result<Vec<JobEvent>> {
        let mut stmt =
            self.conn.prepare_cached("SELECT body FROM job_events WHERE job_id = ?1 AND seq > ?2 ORDER BY seq")?;
        let rows = stmt.query_map(params![job_id, after as i64], |r| r.get::<_, Vec<u8>>(0))?;
        rows.map(|b| decode("event", &b?)).collect()
    }

    pub fn event_count(&self, job_id: &str) -> Result<u64> {
        let n: i64 =
            self.conn.query_row("SELECT COUNT(*) FROM job_events WHERE job_id = ?1", params![job_id], |r| r.get(0))?;
        Ok(n as u64)
    }

    /// Inserts or replaces a search trial (its engine record as JSON).
    pub fn save_trial(&mut self, search_id: &str, trial: &shoal_search::Trial) -> Result<()> {
        let body = serde_json::to_string(trial).map_err(|source| StoreError::Json { source })?;
        self.conn.execute(
            "INSERT INTO trials (search_id, idx, job_id, body) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(search_id, idx) DO UPDATE SET job_id = ?3, body = ?4",
            params![search_id, trial.index as i64, trial.job_id, body],
        )?;
        Ok(())
    }

    /// A search's trials, by index.
    pub fn load_trials(&self, search_id: &str) -> Result<Vec<shoal_search::Trial>> {
        let mut stmt = self.conn.prepare_cached("SELECT body FROM trials WHERE search_id = ?1 ORDER BY idx")?;
        let rows = stmt.query_map(params![search_id], |r| r.get::<_, String>(0))?;
        rows.map(|b| serde_json::from_str(&b?).map_err(|source| StoreError::Json { source })).collect()
    }

    pub fn save_worker(&mut self, w: &WorkerRow) -> Result<()> {
        self.conn.execute(
            "INSERT INTO workers (id, body, registered_ms, last_seen_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(id) DO UPDATE SET body = ?2, last_seen_ms = ?4",
            params![w.id, w.info.encode_to_vec(), w.registered_ms, w.last_seen_ms],
        )?;
        Ok(())
    }

    pub fn load_workers(&self) -> Result<Vec<WorkerRow>> {
        let mut stmt =
            self.conn.prepare("SELECT id, body, registered_ms, last_seen_ms FROM workers ORDER BY registered_ms")?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?, r.get::<_, i64>(2)?, r.get::<_, i64>(3)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, body, registered_ms, last_seen_ms) = row?;
            out.push(WorkerRow { id, info: decode("worker", &body)?, registered_ms, last_seen_ms });
        }
        Ok(out)
    }

    pub fn worker(&self, id: &str) -> Result<Option<WorkerRow>> {
        self.conn
            .query_row("SELECT id, body, registered_ms, last_seen_ms FROM workers WHERE id = ?1", params![id], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?, r.get::<_, i64>(2)?, r.get::<_, i64>(3)?))
            })
            .optional()?
            .map(|(id, body, registered_ms, last_seen_ms)| {
                Ok(WorkerRow { id, info: decode("worker", &body)?, registered_ms, last_seen_ms })
            })
            .transpose()
    }

    /// Opens a transaction that gathers every write until `end_batch`, so they land together or
    /// not at all.
    pub fn begin_batch(&mut self) -> Result<()> {
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        Ok(())
    }

    pub fn end_batch(&mut self) -> Result<()> {
        if !self.conn.is_autocommit() {
            self.conn.execute_batch("COMMIT")?;
        }
        Ok(())
    }

    /// Records that worker `id`'s process `boot_id` had its reports up to `seq` applied.
    pub fn save_ack(&mut self, id: &str, boot_id: u64, seq: u64) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO report_acks (worker_id, boot_id, seq) VALUES (?1, ?2, ?3)
                 ON CONFLICT(worker_id) DO UPDATE SET boot_id = ?2, seq = ?3",
            )?
            .execute(params![id, boot_id as i64, seq as i64])?;
        Ok(())
    }

    /// Every worker's (boot id, applied sequence).
    pub fn load_acks(&self) -> Result<HashMap<String, (u64, u64)>> {
        let mut stmt = self.conn.prepare("SELECT worker_id, boot_id, seq FROM report_acks")?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, (r.get::<_, i64>(1)? as u64, r.get::<_, i64>(2)? as u64)))
        })?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    /// SQLite's integrity check, then Shoal's own: every stored job and worker decodes, every
    /// job's events are numbered 1..next_event without gaps and decode, every search's trials
    /// decode and name stored jobs. Returns the problems found (empty when healthy).
    pub fn check(&self) -> Result<Vec<String>> {
        let mut problems = Vec::new();
        let sqlite = self.integrity_check()?;
        if sqlite != "ok" {
            problems.push(format!("sqlite: {sqlite}"));
        }
        let jobs = self.load_jobs()?;
        let ids: std::collections::HashSet<&str> = jobs.iter().map(|j| j.job.job_id.as_str()).collect();
        for row in &jobs {
            let id = &row.job.job_id;
            let events = self.events(id, 0)?;
            let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
            if seqs != (1..row.next_event).collect::<Vec<_>>() {
                problems.push(format!("job {id}: events numbered {seqs:?}, expected 1..{}", row.next_event));
            }
            if row.job.spec.as_ref().is_some_and(|s| s.search.is_some()) {
                for t in self.load_trials(id)? {
                    if !t.job_id.is_empty() && !ids.contains(t.job_id.as_str()) {
                        problems.push(format!("search {id}: trial {} names unknown job {}", t.index, t.job_id));
                    }
                }
            }
        }
        self.load_workers()?;
        Ok(problems)
    }

    /// SQLite's own consistency check; "ok" when healthy.
    pub fn integrity_check(&self) -> Result<String> {
        Ok(self.conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?)
    }
}

#[cfg(test)]
mod tests {
    use shoal_common::proto::{JobState, Notice, job_event};

    use super::*;

    fn row(id: &str, seq: u64) -> JobRow {
        JobRow {
            job: Job { job_id: id.into(), state: JobState::Queued as i32, ..Default::default() },
            seq,
            resume_from: String::new(),
            last_checkpoint: "/ckpt".into(),
            gpus: vec![vec![0, 2], vec![], vec![1]],
            next_event: 1,
            holds_worker: false,
        }
    }

    fn notice(job: &str, seq: u64) -> JobEvent {
        JobEvent {
            job_id: job.into(),
            seq,
            time: shoal_common::time::ms_to_timestamp(1000 + seq as i64),
            kind: Some(job_event::Kind::Notice(Notice { level: 1, message: format!("n{seq}") })),
        }
    }

    #[test]
    fn the_check_finds_a_missing_event() {
        let mut s = Store::in_memory().expect("store");
        let mut r = row("job-a", 1);
        r.next_event = 4;
        s.save_job(&r, &[notice("job-a", 1), notice("job-a", 2), notice("job-a", 3)]).expect("save");
        assert_eq!(s.check().expect("check"), Vec::<String>::new());
        s.conn.execute("DELETE FROM job_events WHERE seq = 2", []).expect("tamper");
        let problems = s.check().expect("check");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("job job-a: events numbered [1, 3]"), "{problems:?}");
    }

    #[test]
    fn jobs_and_events_persist_across_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.db");
        {
            let mut s = Store::open(&path).expect("open");
            let mut r = row("job-a", 1);
            s.save_job(&r, &[notice("job-a", 1), notice("job-a", 2)]).expect("save");
            r.job.state = JobState::Running as i32;
            r.next_event = 3;
            s.save_job(&r, &[notice("job-a", 3)]).expect("update");
            s.save_job(&row("job-b", 2), &[]).expect("save b");
        }
        let s = Store::open(&path).expect("reopen");
        let jobs = s.load_jobs().expect("load");
        assert_eq!(jobs.len(), 2);
        assert_eq!(jobs[0].job.state, JobState::Running as i32);
        assert_eq!(jobs[0].gpus, vec![vec![0, 2], vec![], vec![1]]);
        assert_eq!(jobs[0].last_checkpoint, "/ckpt");
        assert_eq!(s.max_job_seq().expect("seq"), 2);
        let events = s.events("job-a", 1).expect("events");
        assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![2, 3]);
        assert_eq!(s.integrity_check().expect("check"), "ok");
    }

    #[test]
    fn duplicate_event_sequence_is_rejected_atomically() {
        let mut s = Store::in_memory().expect("open");
        let r = row("job-a", 1);
        s.save_job(&r, &[notice("job-a", 1)]).expect("save");
        let mut changed = r.clone();
        changed.job.reason = "should not stick".into();
        assert!(s.save_job(&changed, &[notice("job-a", 1)]).is_err());
        assert_eq!(s.load_jobs().expect("load")[0].job.reason, "");
    }
}
