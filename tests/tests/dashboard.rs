//! The web dashboard in a real headless Chromium driven through WebDriver: a wrong token is
//! refused and the right one, typed once, opens every page; a running two-rank job's charts gain
//! points while the test watches; cancel (after its confirmation) stops the job; a search's page
//! draws its leaderboard, parallel coordinates and trial curves with the ASHA rungs; the workers
//! page lists the workers; and no page has a script error. Also over HTTPS with the gRPC port's
//! certificate, and `shoal local --dashboard`.

use std::io::BufRead;
use std::time::Duration;

use serde_json::{Value, json};
use shoal_tests::webdriver::{Browser, chromedriver};
use shoal_tests::{Coordinator, TWO_RANKS, http, job_file, shoal, start_worker, stdout};

const TOKEN: &str = "dashboard-test-token-0123456789";

fn browser(dir: &std::path::Path, insecure_certs: bool) -> anyhow::Result<Option<Browser>> {
    let (Some(driver), Some(chromium)) = (chromedriver(), shoal_tests::browser::browser()) else { return Ok(None) };
    Ok(Some(Browser::start(&driver, &chromium, dir, insecure_certs)?))
}

fn number(v: &Value) -> f64 {
    v.as_f64().or_else(|| v.as_str().and_then(|s| s.parse().ok())).unwrap_or(0.0)
}

fn submit(url: &str, dir: &std::path::Path, name: &str, text: &str) -> anyhow::Result<String> {
    let file = job_file(dir, name, text);
    let out = shoal(url, &["--token", TOKEN, "submit", file.to_str().expect("utf-8")]);
    anyhow::ensure!(out.status.success(), "submit {name}: {}", shoal_tests::stderr(&out));
    Ok(stdout(&out).trim().to_owned())
}

fn job_state(url: &str, id: &str) -> anyhow::Result<String> {
    let out = shoal(url, &["--token", TOKEN, "status", id, "--json"]);
    let v: Value = serde_json::from_str(&stdout(&out))?;
    Ok(v["state"].as_str().unwrap_or_default().to_owned())
}

#[test]
fn a_browser_follows_a_job_and_a_search_and_cancels_a_job() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let Some(b) = browser(dir.path(), false)? else { return Ok(()) };
    let coordinator = Coordinator::start(dir.path(), &dir.path().join("c.db"), &["--client-token", TOKEN])?;
    let base = format!("http://{}", coordinator.http.expect("the HTTP port"));
    let url = coordinator.url();
    let _w1 = start_worker(dir.path(), &url, 1, "dash-w1")?;
    let _w2 = start_worker(dir.path(), &url, 1, "dash-w2")?;
    let long =
        TWO_RANKS.replace("name = \"two-ranks\"", "name = \"watched\"").replace("steps = 1500", "steps = 5000000");
    let job = submit(&url, dir.path(), "watched", &long)?;
    let limit = Duration::from_secs(60);

    // A wrong token is refused; the right one, typed once, opens the jobs page.
    b.goto(&format!("{base}/"))?;
    b.wait_for(limit, "the login page", "return document.body.dataset.page === 'login'")?;
    let field = b.find("#token")?;
    b.type_into(&field, "not-the-token-0123456789")?;
    b.click(&b.find("#login button")?)?;
    let refusal = b.wait_for(limit, "the refusal", "return document.getElementById('refusal')?.dataset.refusal")?;
    assert_eq!(refusal, "wrong");
    assert_eq!(
        b.script("return document.querySelector('#jobs') === null", json!([]))?,
        true,
        "jobs shown to a wrong token"
    );
    b.type_into(&b.find("#token")?, TOKEN)?;
    b.click(&b.find("#login button")?)?;
    b.wait_for(limit, "the jobs page", "return document.body.dataset.page === 'jobs'")?;
    let _ = b.console()?; // the refused loads (401) are logged; what follows must be clean
    b.wait_for(limit, "the job in the list", &format!("return document.body.innerText.includes('{job}')"))?;
    b.assert_no_script_errors("jobs")?;

    // The job's page: both ranks' curves, and the loss chart gains points while we watch.
    b.goto(&format!("{base}/jobs/{job}"))?;
    let script = "return document.querySelector('figure[data-chart=loss]').dataset.points";
    let first = number(&b.wait_for(limit, "the first points", script)?);
    let started = std::time::Instant::now();
    let mut now = first;
    while now <= first && started.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(250));
        now = number(&b.script(script, json!([]))?);
    }
    assert!(now > first, "the loss chart stayed at {first} points");
    b.wait_for(limit, "both ranks", "return document.querySelector('figure[data-chart=loss]').dataset.series >= 2")?;
    b.wait_for(
        limit,
        "the communication share",
        "return document.querySelector('figure[data-chart=comm_share]').dataset.points > 0",
    )?;
    let ranks = b.script("return document.querySelectorAll('#ranks tbody tr').length", json!([]))?;
    assert_eq!(ranks, 2, "two ranks listed");
    b.assert_no_script_errors("job")?;

    // Cancel asks first; declining keeps the job, accepting cancels it.
    b.click(&b.find("h1 button.cancel")?)?;
    let question = b.alert_text().unwrap_or_default();
    assert!(question.contains(&job), "the confirmation names the job: {question:?}");
    b.accept_alert()?;
    b.wait_for(
        limit,
        "the page to show the cancel",
        "return document.querySelector('#facts .state')?.textContent === 'cancelled'",
    )?;
    assert_eq!(job_state(&url, &job)?, "cancelled");
    b.assert_no_script_errors("job after cancel")?;

    // The workers page lists both workers.
    b.goto(&format!("{base}/workers"))?;
    b.wait_for(limit, "two workers", "return document.querySelectorAll('#workers tbody tr').length === 2")?;
    let text = b.script("return document.body.innerText", json!([]))?;
    assert!(text.as_str().is_some_and(|t| t.contains("dash-w1") && t.contains("dash-w2")), "{text}");
    b.assert_no_script_errors("workers")?;

    // A search: leaderboard, parallel coordinates, metric over time, trial curves with rungs.
    let search_text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/digits-search.toml"),
    )?
    .replace("max_trials = 10", "max_trials = 6");
    let search = submit(&url, dir.path(), "search", &search_text)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    while job_state(&url, &search)? != "succeeded" {
        anyhow::ensure!(std::time::Instant::now() < deadline, "the search did not finish");
        std::thread::sleep(Duration::from_millis(500));
    }
    b.goto(&format!("{base}/jobs/{search}"))?;
    b.wait_for(limit, "the search page", "return document.body.dataset.page === 'search'")?;
    let rows = b.script("return document.querySelectorAll('#leaderboard tbody tr').length", json!([]))?;
    assert_eq!(rows, 6, "six trials on the leaderboard");
    let lines =
        b.script("return Number(document.querySelector('svg[data-chart=parallel]').dataset.lines)", json!([]))?;
    assert!(number(&lines) >= 1.0, "parallel coordinates drew {lines} lines");
    b.wait_for(
        limit,
        "trial curves",
        "return document.querySelector('figure[data-chart=trial_curves]').dataset.points > 0",
    )?;
    b.wait_for(
        limit,
        "metric over time",
        "return document.querySelector('figure[data-chart=over_time]').dataset.points > 0",
    )?;
    let rungs =
        b.script("return Number(document.querySelector('figure[data-chart=trial_curves]').dataset.rungs)", json!([]))?;
    assert!(number(&rungs) >= 1.0, "no ASHA rung drawn");
    b.assert_no_script_errors("search")?;

    // Changing something needs the dashboard's header, and an unknown job is a 404 page.
    let http_addr = coordinator.http.expect("the HTTP port");
    let bearer = format!("Bearer {TOKEN}");
    let (status, body) =
        http::request(http_addr, "POST", &format!("/api/jobs/{search}/cancel"), &[("Authorization", &bearer)], None)?;
    assert_eq!(status, 403, "{body}");
    let (status, _) = http::get(http_addr, "/jobs/job-nope", Some(TOKEN))?;
    assert_eq!(status, 404);
    let (status, body) = http::get(http_addr, "/?state=sleeping", Some(TOKEN))?;
    assert_eq!(status, 400);
    assert!(body.contains("state: unknown job state"), "{body}");
    Ok(())
}

#[test]
fn the_dashboard_is_served_over_https_with_the_grpc_ports_certificate() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let Some(b) = browser(dir.path(), true)? else { return Ok(()) };
    let certs = shoal_common::tls::generate(&dir.path().join("tls"), &[], 1).map_err(anyhow::Error::msg)?;
    let p = |path: std::path::PathBuf| path.display().to_string();
    let (cert, key, ca) = (p(certs.node_cert()), p(certs.node_key()), p(certs.ca()));
    let coordinator = Coordinator::start(
        dir.path(),
        &dir.path().join("c.db"),
        &["--tls-cert", &cert, "--tls-key", &key, "--tls-client-ca", &ca, "--http-tls", "server-only"],
    )?;
    let base = format!("https://{}", coordinator.http.expect("the HTTP port"));
    b.goto(&format!("{base}/workers"))?;
    b.wait_for(Duration::from_secs(30), "the workers page", "return document.body.dataset.page === 'workers'")?;
    assert_eq!(b.script("return location.protocol", json!([]))?, "https:");
    b.assert_no_script_errors("workers over https")?;
    // An unknown setting is refused with the choices.
    let out = std::process::Command::new(shoal_tests::bin("shoal-coordinator"))
        .args(["--listen", "127.0.0.1:0", "--http-tls", "sometimes", "--database"])
        .arg(dir.path().join("other.db"))
        .output()?;
    assert_eq!(out.status.code(), Some(2));
    assert!(shoal_tests::stderr(&out).contains("same, server-only, off"), "{}", shoal_tests::stderr(&out));
    // Plain HTTP on the same port gets no page.
    let plain = http::get(coordinator.http.expect("the HTTP port"), "/workers", None);
    assert!(plain.map(|(s, _)| s != 200).unwrap_or(true), "plain HTTP was answered");
    Ok(())
}

/// `shoal local --dashboard` prints the dashboard's address with its token, serves the job's
/// page while it runs, and keeps serving after the job until interrupted.
#[test]
fn shoal_local_dashboard_prints_a_url_that_opens_the_job() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let file = job_file(dir.path(), "local", shoal_tests::DIGITS_JOB);
    let child = std::process::Command::new(shoal_tests::bin("shoal"))
        .args(["local", "--workers", "1", "--dashboard", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg(&file)
        .env("RAYON_NUM_THREADS", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    // Killed if the test fails before it is interrupted.
    let mut run = shoal_tests::Proc { child, log: dir.path().join("data/coordinator.log") };
    let mut lines = std::io::BufReader::new(run.child.stderr.take().expect("stderr")).lines();
    let mut url = None;
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line?;
        seen.push(line.clone());
        if let Some(rest) = line.split("dashboard: ").nth(1) {
            url = Some(rest.trim().to_owned());
        }
        if line.contains("still serving the dashboard") || line.contains("stopped;") {
            break;
        }
    }
    let url = url.ok_or_else(|| anyhow::anyhow!("no dashboard line in {seen:#?}"))?;
    let (addr, token) = url
        .strip_prefix("http://")
        .and_then(|u| u.split_once("/#token="))
        .ok_or_else(|| anyhow::anyhow!("not a dashboard URL: {url}"))?;
    let addr: std::net::SocketAddr = addr.parse()?;
    let (status, body) = http::get(addr, "/", Some(token))?;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("digits-e2e"), "the job is listed: {body}");
    assert!(body.contains("succeeded"), "{body}");
    let (status, _) = http::get(addr, "/", None)?;
    assert_eq!(status, 401, "the dashboard needs the token");
    // SAFETY: kill(2) on the child this test started.
    unsafe { libc::kill(run.child.id() as i32, libc::SIGINT) };
    let status = run.wait_exit(Duration::from_secs(30))?;
    assert_eq!(status.code(), Some(0), "after Ctrl-C: {seen:#?}");
    Ok(())
}

/// `shoal bench dashboard` runs end to end: a page of many points opens, and quiet and watched
/// training runs both report their throughput and the ratio.
#[test]
fn the_dashboard_benchmark_prints_its_lines() -> anyhow::Result<()> {
    let out = std::process::Command::new(shoal_tests::bin("shoal"))
        .args(["bench", "dashboard", "--rounds", "1", "--steps", "60", "--points", "5000"])
        .env("RAYON_NUM_THREADS", "1")
        .output()?;
    assert!(out.status.success(), "{}", shoal_tests::stderr(&out));
    let lines: Vec<Value> = stdout(&out).lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
    let page = lines.iter().find(|l| l["metric"] == "job_page_open_ms").expect("the page line");
    assert_eq!(page["points"], 5000);
    assert!(number(&page["ms"]) > 0.0 && number(&page["bytes"]) > 1000.0, "{page}");
    let runs: Vec<&Value> = lines.iter().filter(|l| l["phase"] == "train").collect();
    assert_eq!(runs.len(), 2, "{lines:?}");
    assert!(runs.iter().all(|r| number(&r["samples_per_s"]) > 0.0), "{runs:?}");
    let summary = lines.iter().find(|l| l["metric"] == "train_samples_per_s_watched_vs_quiet").expect("summary");
    assert!(number(&summary["ratio"]) > 0.0, "{summary}");
    Ok(())
}
