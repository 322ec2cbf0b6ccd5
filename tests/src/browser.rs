//! A headless Chromium for the web chat's end-to-end tests, driven over WebDriver (`fantoccini`).
//!
//! [`Browser`] starts Debian's `chromedriver` on a free 127.0.0.1 port (chromedriver accepts
//! connections from the local host only unless given `--allowed-ips`) and kills it on drop, with
//! every Chromium it started: each [`Page`] is one browser session with its own fresh profile, so
//! two pages are two users (separate localStorage). Chromium is started with the background
//! networking switched off, so it talks to nobody but the test's loopback servers.
//!
//! Missing packages fail the test with the line that installs them (scripts/test runs it as
//! root): a browser test that cannot run must not pass.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

use crate::{TempDir, WAIT};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
pub const INSTALL: &str = "sudo apt-get update && sudo apt-get install -y chromium chromium-driver";

/// A running chromedriver, and the profiles of the browsers it started.
pub struct Browser {
    driver: Child,
    url: String,
    profiles: Vec<TempDir>,
}

impl Browser {
    /// Start chromedriver; panics with the install line when Chromium or chromedriver is missing.
    pub fn start() -> Browser {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(bin).exists(),
                "{bin} is missing: the browser tests need Debian's chromium and chromium-driver; run:\n  {INSTALL}"
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let mut driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        // chromedriver says so on stdout once it listens.
        let (tx, rx) = mpsc::channel();
        let stdout = driver.stdout.take().expect("piped stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains("started successfully") => break,
                Ok(_) => continue,
                Err(_) => {
                    let _ = driver.kill();
                    let _ = driver.wait();
                    panic!("chromedriver did not start on 127.0.0.1:{port} within {WAIT:?}");
                }
            }
        }
        Browser {
            driver,
            url: format!("http://127.0.0.1:{port}"),
            profiles: Vec::new(),
        }
    }

    /// A new browser window (its own Chromium and profile) of `width` x `height` CSS pixels.
    pub async fn page(&mut self, width: u32, height: u32) -> Page {
        let profile = TempDir::new("chromium");
        let args = vec![
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--no-default-browser-check".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-extensions".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--hide-scrollbars".to_owned(),
            "--force-device-scale-factor=1".to_owned(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        self.profiles.push(profile);
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
            // A dialog (alert) must not be silently dismissed: the page tests look for it.
            "unhandledPromptBehavior": "ignore",
        });
        let caps = match caps {
            Value::Object(m) => m,
            _ => unreachable!(),
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = tokio::time::timeout(
            WAIT * 3,
            ClientBuilder::new(connector)
                .capabilities(caps)
                .connect(&self.url),
        )
        .await
        .expect("a Chromium session within 30 s")
        .expect("a Chromium session");
        let page = Page { client };
        page.fit_viewport(width, height).await;
        page
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        // The Chromiums chromedriver started outlive it: end those running on our profiles.
        for profile in &self.profiles {
            for pid in pids_with_arg(&profile.path().display().to_string()) {
                // SAFETY: kill(2) on a process whose command line names our own temp profile.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
    }
}

/// Processes whose command line contains `needle` (this process excluded).
fn pids_with_arg(needle: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    c.split(|&b| b == 0)
                        .any(|a| String::from_utf8_lossy(a).contains(needle))
                })
                .unwrap_or(false)
        })
        .collect()
}

/// One browser window; every wait is a poll of a condition bounded by [`WAIT`].
pub struct Page {
    pub client: Client,
}

impl Page {
    /// Resize the window so that the page's viewport (not the window) is `width` x `height`.
    async fn fit_viewport(&self, width: u32, height: u32) {
        for _ in 0..3 {
            let v = self
                .eval("return [window.innerWidth, window.innerHeight]")
                .await;
            let (w, h) = (v[0].as_u64().unwrap_or(0), v[1].as_u64().unwrap_or(0));
            if (w, h) == (width as u64, height as u64) {
                return;
            }
            let (ow, oh) = self
                .client
                .get_window_size()
                .await
                .expect("get window size");
            let nw = (ow as i64 + width as i64 - w as i64).max(100) as u32;
            let nh = (oh as i64 + height as i64 - h as i64).max(100) as u32;
            self.client
                .set_window_size(nw, nh)
                .await
                .expect("set window size");
        }
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("navigate");
    }

    /// Run `script` (a function body; `arguments` holds `args`) and return its result.
    pub async fn eval_with(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    pub async fn eval(&self, script: &str) -> Value {
        self.eval_with(script, Vec::new()).await
    }

    /// Wait until `script` returns something truthy, and return it; panics with `what` and the
    /// last value after [`WAIT`].
    pub async fn wait_for(&self, what: &str, script: &str, args: Vec<Value>) -> Value {
        self.wait_for_within(WAIT, what, script, args).await
    }

    /// [`Page::wait_for`] with another bound than [`WAIT`].
    pub async fn wait_for_within(
        &self,
        limit: Duration,
        what: &str,
        script: &str,
        args: Vec<Value>,
    ) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let v = self.eval_with(script, args.clone()).await;
            let truthy = match &v {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return v;
            }
            if Instant::now() > deadline {
                let shot = self.save_failure_screenshot(what).await;
                panic!("waited {limit:?} for {what}; last value {v}; screenshot {shot}");
            }
            // Polling interval of the condition, not a synchronisation: the loop above decides.
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
    }

    /// The element matching a CSS selector, waiting for it to exist.
    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element {css} within {WAIT:?}: {e}"))
    }

    /// Type `keys` into the element matching `css` (WebDriver key codes allowed).
    pub async fn type_into(&self, css: &str, keys: &str) {
        self.find(css)
            .await
            .send_keys(keys)
            .await
            .unwrap_or_else(|e| panic!("typing into {css}: {e}"));
    }

    pub async fn click(&self, css: &str) {
        self.find(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("clicking {css}: {e}"));
    }

    /// A PNG of the viewport.
    pub async fn screenshot(&self) -> Vec<u8> {
        self.client.screenshot().await.expect("screenshot")
    }

    /// Save a screenshot under the target directory for a failed wait; returns its path.
    async fn save_failure_screenshot(&self, what: &str) -> String {
        let Ok(png) = self.client.screenshot().await else {
            return "(none)".to_owned();
        };
        let name: String = what
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .take(60)
            .collect();
        let path = crate::target_dir().join(format!("browser-failure-{name}.png"));
        match std::fs::write(&path, png) {
            Ok(()) => path.display().to_string(),
            Err(_) => "(not written)".to_owned(),
        }
    }

    /// End the session (Chromium exits).
    pub async fn close(self) {
        let _ = self.client.close().await;
    }
}
