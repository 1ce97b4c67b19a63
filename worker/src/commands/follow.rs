//! A folder watched for window files: each `*.csv` file is handed out once, in name order, when
//! it has stopped changing (the same size and modification time on two reads of the folder a poll
//! apart), so that a file still being written is not judged half-way. Writers that rename a
//! finished file into the folder are never seen half-way at all.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use shoal_worker::analysis::Failure;

/// What a file looked like on the last read of the folder.
type Seen = (u64, Option<SystemTime>);

pub struct Folder {
    dir: PathBuf,
    poll: Duration,
    /// Files handed out already.
    done: BTreeSet<PathBuf>,
    /// Files waiting to stop changing, as last seen.
    pending: BTreeMap<PathBuf, Seen>,
}

impl Folder {
    /// A folder that exists, read every `poll`.
    pub fn open(dir: &Path, poll: Duration) -> Result<Self, Failure> {
        if !dir.is_dir() {
            return Err(Failure::usage("--follow", format!("{} is not a folder", dir.display())));
        }
        Ok(Folder { dir: dir.to_path_buf(), poll, done: BTreeSet::new(), pending: BTreeMap::new() })
    }

    /// The next finished window file, waiting for one; `None` once `idle` has passed without one.
    pub fn next(&mut self, idle: Option<Duration>) -> Result<Option<PathBuf>, Failure> {
        let start = Instant::now();
        loop {
            if let Some(p) = self.scan()? {
                return Ok(Some(p));
            }
            if idle.is_some_and(|d| start.elapsed() >= d) {
                return Ok(None);
            }
            std::thread::sleep(self.poll);
        }
    }

    /// Reads the folder once: the first file, by name, that looks as it did on the last read.
    fn scan(&mut self) -> Result<Option<PathBuf>, Failure> {
        let entries = std::fs::read_dir(&self.dir).map_err(|source| Failure::Output { field: "--follow", source })?;
        let mut now: BTreeMap<PathBuf, Seen> = BTreeMap::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "csv") || self.done.contains(&path) {
                continue;
            }
            if let Ok(meta) = entry.metadata()
                && meta.is_file()
            {
                now.insert(path, (meta.len(), meta.modified().ok()));
            }
        }
        let ready = now.iter().find(|(p, seen)| self.pending.get(*p) == Some(seen)).map(|(p, _)| p.clone());
        self.pending = now;
        if let Some(p) = &ready {
            self.pending.remove(p);
            self.done.insert(p.clone());
        }
        Ok(ready)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_out_each_finished_file_once_in_name_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("b.csv"), "x\n1\n").expect("write");
        std::fs::write(dir.path().join("a.csv"), "x\n1\n").expect("write");
        std::fs::write(dir.path().join("c.tmp"), "x\n1\n").expect("write");
        let mut f = Folder::open(dir.path(), Duration::from_millis(10)).expect("open");
        // The first read only notes the files; they are handed out once seen unchanged.
        assert_eq!(f.scan().expect("scan"), None);
        assert_eq!(f.scan().expect("scan"), Some(dir.path().join("a.csv")));
        // A file still growing waits.
        std::fs::write(dir.path().join("a2.csv"), "x\n").expect("write");
        assert_eq!(f.scan().expect("scan"), Some(dir.path().join("b.csv")));
        std::fs::write(dir.path().join("a2.csv"), "x\n1\n2\n").expect("write");
        assert_eq!(f.scan().expect("scan"), None);
        assert_eq!(f.next(Some(Duration::from_secs(5))).expect("next"), Some(dir.path().join("a2.csv")));
        assert_eq!(f.next(Some(Duration::from_millis(50))).expect("next"), None);
        assert!(Folder::open(&dir.path().join("nope"), Duration::from_millis(10)).is_err());
    }
}
