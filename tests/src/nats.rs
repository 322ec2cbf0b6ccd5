//! A JetStream server for cluster mode's tests: Debian's `nats-server` on 127.0.0.1, on a port it
//! picks itself, with its storage in a temporary directory; killed on drop. Only the client port
//! is opened (no monitoring, gateway or leafnode port; a route port only in a NATS cluster,
//! [`Nats::cluster`]). Plus a way to start lanchat nodes that join it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Instant;

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
    /// Flags beyond the usual ones (a cluster member's name and routes).
    extra: Vec<String>,
    /// A cluster member's monitoring port (for `/healthz`).
    monitor: Option<u16>,
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
        Nats::spawned(prefix, address, Vec::new())
    }

    /// [`Nats::start`] with `extra` flags (`--user U --pass P`...).
    pub fn start_with(extra: &[&str]) -> Nats {
        Nats::spawned(
            &[],
            "127.0.0.1",
            extra.iter().map(|s| s.to_string()).collect(),
        )
    }

    fn spawned(prefix: &[&str], address: &str, extra: Vec<String>) -> Nats {
        let monitor = extra
            .iter()
            .position(|a| a == "-m")
            .and_then(|i| extra.get(i + 1))
            .and_then(|p| p.parse().ok());
        let store = TempDir::new("nats");
        let (child, port) = spawn(prefix, address, store.path(), "-1", &extra);
        Nats {
            child: Some(child),
            url: format!("nats://{address}:{port}"),
            port,
            address: address.to_owned(),
            prefix: prefix.iter().map(|s| s.to_string()).collect(),
            extra,
            monitor,
            store,
        }
    }

    /// A NATS cluster of `size` JetStream servers on 127.0.0.1 (routes between them on ports
    /// picked free just before), returned once every one of them knows the JetStream
    /// metadata leader: streams with up to `size` replicas can be made.
    pub fn cluster(size: usize) -> Vec<Nats> {
        let ports: Vec<u16> = (0..2 * size)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a free port"))
            .collect::<Vec<_>>()
            .iter()
            .map(|l| l.local_addr().expect("its port").port())
            .collect();
        let (routes, monitors) = ports.split_at(size);
        let all = routes
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let servers: Vec<Nats> = routes
            .iter()
            .enumerate()
            .map(|(i, port)| {
                let extra = [
                    "-m".to_owned(),
                    monitors[i].to_string(),
                    "--name".to_owned(),
                    format!("n{i}"),
                    "--cluster_name".to_owned(),
                    "lanchat_test".to_owned(),
                    "--cluster".to_owned(),
                    format!("nats://127.0.0.1:{port}"),
                    "--routes".to_owned(),
                    all.clone(),
                ];
                Nats::spawned(&[], "127.0.0.1", extra.to_vec())
            })
            .collect();
        for server in &servers {
            server.wait_healthy();
        }
        servers
    }

    /// Wait (at most 3 x [`WAIT`]) until a cluster member's `/healthz` says ok: it knows the
    /// JetStream metadata leader and its copies of streams are current (after a restart: caught
    /// up). Only for members of [`Nats::cluster`].
    pub fn wait_healthy(&self) {
        let port = self
            .monitor
            .expect("a cluster member (with a monitoring port)");
        let deadline = Instant::now() + 3 * WAIT;
        let mut last = String::new();
        while Instant::now() < deadline {
            last = http_get(port, "/healthz").unwrap_or_else(|e| e.to_string());
            if last.contains(r#""status":"ok""#) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("nats-server on {} never healthy: {last}", self.url);
    }

    /// Every server's client URL, comma-separated (a `--cluster` value).
    pub fn urls(servers: &[Nats]) -> String {
        let urls: Vec<&str> = servers.iter().map(|s| s.url.as_str()).collect();
        urls.join(",")
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
        let (child, _) = spawn(
            &prefix,
            &self.address,
            self.store.path(),
            &port,
            &self.extra,
        );
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

/// The body of `GET path` from 127.0.0.1:`port` (HTTP/1.0: the server closes when done).
fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(WAIT))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response)
}

/// `$LANCHAT_NATS_SERVER` when set, else Debian's.
fn nats_server() -> std::path::PathBuf {
    std::env::var_os("LANCHAT_NATS_SERVER").map_or_else(|| NATS_SERVER.into(), Into::into)
}

/// Start `nats-server` (behind `prefix`) with its store under `dir` on `address` and `port`
/// (`-1`: any), plus `extra` flags, and wait until it says it is ready; returns it and the port
/// it listens on.
fn spawn(prefix: &[&str], address: &str, dir: &Path, port: &str, extra: &[String]) -> (Child, u16) {
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
        .args(extra)
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
