//! A real headless Chromium driven through its WebDriver (`chromedriver`, W3C protocol over
//! HTTP): open a page, type, click, answer a confirmation, run a script, read the browser's
//! console. Without chromedriver the tests say they are skipped and pass, unless
//! `SHOAL_REQUIRE_BROWSER=1` (CI installs `chromium-driver`). `SHOAL_CHROMEDRIVER` names the
//! driver binary to use instead of `chromedriver` on the path.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::http::request;

/// The W3C name of an element reference in answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A browser session; dropping it closes the browser and stops the driver.
pub struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
    _profile: tempfile::TempDir,
}

/// The driver, or `None` after saying why the test is skipped.
pub fn chromedriver() -> Option<std::path::PathBuf> {
    crate::tool::Tool {
        env: "SHOAL_CHROMEDRIVER",
        names: &["chromedriver"],
        require: "SHOAL_REQUIRE_BROWSER",
        install: "apt-get install chromium-driver",
    }
    .find()
}

impl Browser {
    /// Starts the driver and a headless Chromium (`chromium` is the browser binary). With
    /// `insecure_certs` the browser accepts certificates it cannot verify (test CAs).
    pub fn start(driver: &Path, chromium: &Path, log_dir: &Path, insecure_certs: bool) -> Result<Self> {
        let addr = crate::prometheus::free_addr()?;
        let log = std::fs::File::create(log_dir.join(format!("chromedriver-{}.log", addr.port())))?;
        let mut child = Command::new(driver)
            .arg(format!("--port={}", addr.port()))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .context("start chromedriver")?;
        let started = Instant::now();
        while request(addr, "GET", "/status", &[], None)
            .map(|(s, b)| s != 200 || !b.contains("\"ready\":true"))
            .unwrap_or(true)
        {
            if started.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                bail!("chromedriver did not answer /status within 20 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = tempfile::tempdir()?;
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "acceptInsecureCerts": insecure_certs,
            "unhandledPromptBehavior": "ignore",
            "goog:loggingPrefs": { "browser": "ALL" },
            "goog:chromeOptions": {
                "binary": chromium.display().to_string(),
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--no-first-run", "--window-size=1280,1600",
                         format!("--user-data-dir={}", profile.path().display())],
            },
        }}});
        let (status, body) = request(addr, "POST", "/session", &[], Some(&caps.to_string()))?;
        let answer: Value = serde_json::from_str(&body).with_context(|| format!("session answer {body}"))?;
        let Some(session) = answer["value"]["sessionId"].as_str() else {
            let _ = child.kill();
            bail!("chromedriver refused the session ({status}): {body}");
        };
        let session = session.to_owned();
        Ok(Self { driver: child, addr, session, _profile: profile })
    }

    /// One command of the session; its `value`, or the driver's error.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
        let path = format!("/session/{}{path}", self.session);
        let text = body.map(|b| b.to_string());
        let (status, answer) =
            request(self.addr, method, &path, &[], text.as_deref().or(Some("{}")).filter(|_| method == "POST"))?;
        let value: Value = serde_json::from_str(&answer).with_context(|| format!("{method} {path}: {answer}"))?;
        if status != 200 {
            bail!("{method} {path}: {status} {}", value["value"]);
        }
        Ok(value["value"].clone())
    }

    /// Opens `url` and waits for it to load.
    pub fn goto(&self, url: &str) -> Result<()> {
        self.call("POST", "/url", Some(json!({ "url": url }))).map(|_| ())
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns what it returns.
    pub fn script(&self, script: &str, args: Value) -> Result<Value> {
        self.call("POST", "/execute/sync", Some(json!({ "script": script, "args": args })))
    }

    /// The first element matching `css`.
    pub fn find(&self, css: &str) -> Result<Value> {
        let found = self.call("POST", "/element", Some(json!({ "using": "css selector", "value": css })))?;
        let id = found[ELEMENT].as_str().with_context(|| format!("no element id for {css}: {found}"))?;
        Ok(json!({ ELEMENT: id }))
    }

    fn element_path(element: &Value, what: &str) -> Result<String> {
        Ok(format!("/element/{}/{what}", element[ELEMENT].as_str().context("not an element")?))
    }

    pub fn click(&self, element: &Value) -> Result<()> {
        self.call("POST", &Self::element_path(element, "click")?, Some(json!({}))).map(|_| ())
    }

    /// Types `text` into the element.
    pub fn type_into(&self, element: &Value, text: &str) -> Result<()> {
        self.call("POST", &Self::element_path(element, "value")?, Some(json!({ "text": text }))).map(|_| ())
    }

    /// The text of the open alert or confirmation, if one is open.
    pub fn alert_text(&self) -> Option<String> {
        self.call("GET", "/alert/text", None).ok().and_then(|v| v.as_str().map(str::to_owned))
    }

    /// Accepts the open confirmation.
    pub fn accept_alert(&self) -> Result<()> {
        self.call("POST", "/alert/accept", Some(json!({}))).map(|_| ())
    }

    /// Polls `script` until it returns something truthy (not null, false, 0 or "") within `limit`.
    pub fn wait_for(&self, limit: Duration, what: &str, script: &str) -> Result<Value> {
        let started = Instant::now();
        loop {
            let v = self.script(script, json!([]))?;
            let truthy = match &v {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return Ok(v);
            }
            if started.elapsed() > limit {
                bail!(
                    "{what}: not within {limit:?} (page: {})",
                    self.script("return document.body.innerText.slice(0, 2000)", json!([]))?
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The browser console's entries since the last call, as (level, message).
    pub fn console(&self) -> Result<Vec<(String, String)>> {
        let entries = self.call("POST", "/se/log", Some(json!({ "type": "browser" })))?;
        Ok(entries
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| {
                        (e["level"].as_str().unwrap_or("").to_owned(), e["message"].as_str().unwrap_or("").to_owned())
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Fails if the page reported a script error (its banner) or the console has a SEVERE entry.
    pub fn assert_no_script_errors(&self, page: &str) -> Result<()> {
        let banner = self.script("return document.documentElement.dataset.error || ''", json!([]))?;
        if banner.as_str().is_some_and(|s| !s.is_empty()) {
            bail!("{page}: script error {banner}");
        }
        let severe: Vec<(String, String)> =
            self.console()?.into_iter().filter(|(level, _)| level == "SEVERE").collect();
        if !severe.is_empty() {
            bail!("{page}: console errors {severe:?}");
        }
        Ok(())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = request(self.addr, "DELETE", &format!("/session/{}", self.session), &[], None);
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
