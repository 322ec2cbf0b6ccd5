//! A JetStream server for cluster mode's tests: Debian's `nats-server` on 127.0.0.1, on a port it
//! picks itself, with its storage in a temporary directory; killed on drop. Only the client port
//! is opened (no monitoring, cluster, gateway or leafnode port). Plus a way to start lanchat
//! nodes that join it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use crate::{ServerProcess, TempDir, WAIT};

/// Where Debian installs the server (not on a non-root user's PATH).
pub const NATS_SERVER: &str = "/usr/sbin/nats-server";
/// What to run when it is missing.
pub const INSTALL: &str = "sudo apt-get update && sudo apt-get install -y nats-server";

/// A running `nats-server -js`, killed on drop (its store directory with it).
pub struct Nats {
    child: Option<Child>,
    /// `nats://ADDRESS:PORT`.
    pub url: String,
    port: u16,
    address: String,
    prefix: Vec<String>,
    store: TempDir,
}

impl Nats {
    /// Start a JetStream server on a port of its choosing; panics with the install line when
    /// `nats-server` is missing, and with its output when it does not get ready in [`WAIT`].
    pub fn start() -> Nats {
        Nats::start_in(&[], "127.0.0.1")
    }

    /// [`Nats::start`] with its command run behind `prefix` (`ip netns exec NS`: inside a
    /// network namespace a test made) and listening on `address` there.
    pub fn start_in(prefix: &[&str], address: &str) -> Nats {
        assert!(
            Path::new(&nats_server()).exists(),
            "{NATS_SERVER} is missing: the cluster tests need Debian's nats-server; run:\n  {INSTALL}"
        );
        let store = TempDir::new("nats");
        let (child, port) = spawn(prefix, address, store.path(), "-1");
        Nats {
            child: Some(child),
            url: format!("nats://{address}:{port}"),
            port,
            address: address.to_owned(),
            prefix: prefix.iter().map(|s| s.to_string()).collect(),
            store,
        }
    }

    /// SIGKILL the server (its stored streams stay on disk).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start it again on the same port over the same store, after [`Nats::kill`].
    pub fn restart(&mut self) {
        self.kill();
        let prefix: Vec<&str> = self.prefix.iter().map(String::as_str).collect();
        let port = self.port.to_string();
        let (child, _) = spawn(&prefix, &self.address, self.store.path(), &port);
        self.child = Some(child);
    }

    /// A lanchat node joined to this server as cluster `name` (plus `extra` flags), on
    /// 127.0.0.1:0 without announcing or TLS.
    pub fn node(&self, name: &str, extra: &[&str]) -> ServerProcess {
        let mut args = vec!["--no-tls", "--cluster", &self.url, "--cluster-name", name];
        args.extend_from_slice(extra);
        ServerProcess::start(&args)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `$LANCHAT_NATS_SERVER` when set, else Debian's.
fn nats_server() -> std::path::PathBuf {
    std::env::var_os("LANCHAT_NATS_SERVER").map_or_else(|| NATS_SERVER.into(), Into::into)
}

/// Start `nats-server` (behind `prefix`) with its store under `dir` on `address` and `port`
/// (`-1`: any) and wait until it says it is ready; returns it and the port it listens on.
fn spawn(prefix: &[&str], address: &str, dir: &Path, port: &str) -> (Child, u16) {
    let mut cmd = match prefix.split_first() {
        Some((first, rest)) => {
            let mut cmd = Command::new(first);
            cmd.args(rest).arg(nats_server());
            cmd
        }
        None => Command::new(nats_server()),
    };
    let mut child = cmd
        .args(["-js", "-a", address, "-p", port, "-sd"])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start nats-server");
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().expect("piped stderr");
    std::thread::spawn(move || {
        // Read to the end, or a chatty server would block on a full pipe.
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    let mut listening = None;
    loop {
        let Ok(line) = rx.recv_timeout(WAIT) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("nats-server did not get ready:\n{}", seen.join("\n"))
        };
        if let Some((_, addr)) = line.split_once("Listening for client connections on ") {
            listening = addr.trim().rsplit(':').next().and_then(|p| p.parse().ok());
        }
        let ready = line.contains("Server is ready");
        seen.push(line);
        if ready {
            let port =
                listening.unwrap_or_else(|| panic!("no client port in:\n{}", seen.join("\n")));
            return (child, port);
        }
    }
}
