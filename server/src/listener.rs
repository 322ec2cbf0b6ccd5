//! Listening sockets and their accept loops: admission (connection caps) and a back-off when
//! `accept` fails, so running out of file descriptors never becomes a busy loop or a crash.
//! An admitted TCP connection goes to [`port::serve_tcp`] (TLS, HTTP or JSON lines by its first bytes); a
//! Unix socket connection is always plain (its file mode protects it), `--require-tls` or not.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UnixListener};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use lanchat_protocol::{ByeReason, ErrorCode};

use crate::admission::Source;
use crate::{port, session};
use crate::{Peer, Shared};

/// A bound listening socket.
pub enum Listener {
    Tcp(TcpListener),
    /// A Unix socket and its path, removed when the listener is dropped.
    Unix(UnixListener, UnixSocketFile),
}

impl Listener {
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        match self {
            Listener::Tcp(l) => l.local_addr().ok(),
            Listener::Unix(..) => None,
        }
    }

    /// What the server prints once ready: `listening <addr>` or `listening unix:<path>`.
    pub fn describe(&self) -> String {
        match self {
            Listener::Tcp(l) => match l.local_addr() {
                Ok(a) => a.to_string(),
                Err(_) => "?".into(),
            },
            Listener::Unix(_, f) => format!("unix:{}", f.0.display()),
        }
    }
}

/// Bind a TCP listener the way a server should: SO_REUSEADDR, IPv6 sockets IPv6-only (so
/// `[::]:P` and `0.0.0.0:P` can both be bound), a deep backlog.
pub fn bind_tcp(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// A Unix socket path that is removed on drop.
pub struct UnixSocketFile(pub PathBuf);

impl Drop for UnixSocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Bind a Unix socket, replacing a stale socket file but never one a live server is using, and
/// give it `mode` (connecting takes write permission), whatever the umask made of it.
///
/// The mode is set right after `bind`: for that instant the socket has the umask's mode, before
/// the server prints `listening` and accepts anything. For a socket no other user may ever
/// reach, put it in a directory that is not theirs.
pub fn bind_unix(path: PathBuf, mode: u32) -> std::io::Result<Listener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    if let Ok(meta) = std::fs::symlink_metadata(&path) {
        if !meta.file_type().is_socket() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
        if std::os::unix::net::UnixStream::connect(&path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("{} is in use by a running server", path.display()),
            ));
        }
        std::fs::remove_file(&path)?;
    }
    let listener = UnixListener::bind(&path)?;
    // Removes the socket file if the mode cannot be set.
    let file = UnixSocketFile(path);
    std::fs::set_permissions(&file.0, std::fs::Permissions::from_mode(mode))?;
    Ok(Listener::Unix(listener, file))
}

/// Accept until shutdown, starting one session task per admitted connection.
pub async fn accept_loop(
    listener: Listener,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let mut backoff = Duration::from_millis(10);
    // Made once: a cancellation future registers with the token when first polled and leaves
    // when dropped, each under the token's lock.
    let cancelled = shutdown.cancelled();
    tokio::pin!(cancelled);
    loop {
        let accepted = tokio::select! {
            _ = &mut cancelled => return,
            a = accept(&listener) => a,
        };
        match accepted {
            Ok(conn) => {
                backoff = Duration::from_millis(10);
                start_session(conn, &shared, &shutdown, &tracker);
            }
            Err(e) if is_per_connection_error(&e) => debug!(error = %e, "accept: peer gone"),
            Err(e) => {
                // Most likely out of file descriptors: wait for sessions to end rather than spin.
                warn!(error = %e, retry_in = ?backoff, "accept failed");
                tokio::select! {
                    _ = &mut cancelled => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

enum Accepted {
    Tcp(tokio::net::TcpStream, SocketAddr),
    Unix(tokio::net::UnixStream),
}

async fn accept(listener: &Listener) -> std::io::Result<Accepted> {
    match listener {
        Listener::Tcp(l) => {
            let (s, a) = l.accept().await?;
            Ok(Accepted::Tcp(s, a))
        }
        Listener::Unix(l, _) => {
            let (s, _) = l.accept().await?;
            Ok(Accepted::Unix(s))
        }
    }
}

fn is_per_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused
    )
}

fn start_session(
    conn: Accepted,
    shared: &Arc<Shared>,
    shutdown: &CancellationToken,
    tracker: &TaskTracker,
) {
    let (peer, source) = match &conn {
        Accepted::Tcp(_, a) => (Peer(Some(*a)), Source::Ip(a.ip())),
        // Unix socket peers are told apart by their user id (SO_PEERCRED).
        Accepted::Unix(s) => (
            Peer(None),
            s.peer_cred()
                .map_or(Source::Unknown, |c| Source::Uid(c.uid())),
        ),
    };
    let permit = shared.admit(source);
    let (shared, shutdown) = (shared.clone(), shutdown.clone());
    match (conn, permit) {
        (Accepted::Tcp(stream, _), Ok(permit)) => {
            let sessions = tracker.clone();
            tracker.spawn(port::serve_tcp(
                stream, peer, shared, shutdown, permit, sessions,
            ));
        }
        (Accepted::Unix(stream), Ok(permit)) => {
            let (r, w) = stream.into_split();
            tracker.spawn(session::serve(r, w, peer, shared, shutdown, permit));
        }
        (conn, Err(why)) => {
            debug!(%peer, %source, why, "refusing connection");
            tracker.spawn(async move {
                // A TLS client sees these plain lines as a failed handshake: taking a handshake
                // for every connection over the caps would make a flood cost far more.
                let (code, reason) = (ErrorCode::ServerFull, ByeReason::ServerFull);
                match conn {
                    Accepted::Tcp(s, _) => session::refuse(s, code, reason, why).await,
                    Accepted::Unix(s) => session::refuse(s, code, reason, why).await,
                }
            });
        }
    }
}
