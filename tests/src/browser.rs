//! Report pages checked in a real headless browser: Chromium loads a page from a file, runs its
//! script, and dumps the DOM, whose `<html>` element carries the script's verdict
//! (`data-report`, `data-charts`, `data-empty-charts`, `data-error`).
//!
//! Without Chromium the tests say they are skipped and pass, unless `SHOAL_REQUIRE_BROWSER=1`
//! (CI sets it, after installing Chromium). `SHOAL_CHROMIUM` names the browser binary to use
//! instead of `chromium` on the path; `SHOAL_REPORT_DIR` keeps the pages (and the dumped DOMs) in
//! that folder, to look at, instead of a temporary one.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long one page may take to load and dump before the browser is killed.
const DEADLINE: Duration = Duration::from_secs(60);
/// One browser at a time: the machine is small and each instance is heavy.
static BROWSER: Mutex<()> = Mutex::new(());

/// The browser to use, or `None` after saying why the test is skipped (a failure when
/// `SHOAL_REQUIRE_BROWSER=1`).
pub fn browser() -> Option<PathBuf> {
    crate::tool::Tool {
        env: "SHOAL_CHROMIUM",
        names: &["chromium", "chromium-browser"],
        require: "SHOAL_REQUIRE_BROWSER",
        install: "apt-get install chromium",
    }
    .find()
}

/// Where the pages go: `SHOAL_REPORT_DIR`, or a temporary folder removed when the guard drops.
pub fn folder(test: &str) -> (PathBuf, Option<tempfile::TempDir>) {
    match std::env::var_os("SHOAL_REPORT_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir).join(test);
            std::fs::create_dir_all(&dir).expect("SHOAL_REPORT_DIR");
            (dir, None)
        }
        None => {
            let temp = tempfile::tempdir().expect("temp dir");
            (temp.path().to_path_buf(), Some(temp))
        }
    }
}

/// The DOM of `page` after Chromium has loaded it from a file in `dir` and run its scripts.
pub fn dump(browser: &Path, dir: &Path, name: &str, html: &str) -> String {
    let _one = BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let page = dir.join(format!("{name}.html"));
    std::fs::write(&page, html).expect("write the page");
    let (out, err) = (dir.join(format!("{name}.dom")), dir.join(format!("{name}.stderr")));
    let mut child = Command::new(browser)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage"])
        .arg(format!("--user-data-dir={}", dir.join(format!("{name}.profile")).display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).expect("dom file"))
        .stderr(std::fs::File::create(&err).expect("stderr file"))
        .spawn()
        .expect("start chromium");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll chromium") {
            break status;
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium took over {DEADLINE:?} on {name}; stderr in {}", err.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = std::fs::read_to_string(&err).unwrap_or_default();
    assert!(status.success(), "chromium failed on {name} ({status}): {stderr}");
    std::fs::read_to_string(&out).expect("read the dom")
}

/// Attribute `name` of the dumped document's `<html>` tag.
pub fn root_attr(dom: &str, name: &str) -> Option<String> {
    let start = dom.find("<html")?;
    let tag = &dom[start..start + dom[start..].find('>')?];
    let key = format!(" {name}=\"");
    let at = tag.find(&key)? + key.len();
    Some(tag[at..at + tag[at..].find('"')?].to_owned())
}

/// Asserts the page's script ran to the end without errors and saw its `charts` charts, among
/// them one of each of `kinds`.
pub fn assert_ok(dom: &str, charts: usize, kinds: &[&str]) {
    assert_eq!(root_attr(dom, "data-error"), None, "script error");
    assert_eq!(root_attr(dom, "data-report").as_deref(), Some("ok"));
    assert_eq!(root_attr(dom, "data-charts"), Some(charts.to_string()));
    assert_eq!(root_attr(dom, "data-empty-charts").as_deref(), Some("0"));
    for kind in kinds {
        assert!(dom.contains(&format!("data-chart=\"{kind}\"")), "no {kind} chart in the dom");
    }
}
