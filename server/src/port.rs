//! One TCP port, three ways in: TLS, HTTP (the web app and its WebSocket) and JSON lines, told
//! apart by a connection's first bytes, and HTTP or JSON lines again inside TLS.
//!
//! [`serve_tcp`] peeks at the first byte within the hello timeout. 0x16 (a TLS handshake record,
//! when TLS is on) starts a handshake bounded by what is left of the hello timeout. A byte that
//! may begin an HTTP method (`G` of `GET `, `H` of `HEAD `...) is read on until the request line
//! says HTTP or not (see [`web::classify`]); a JSON line starts with `{`. Anything else is the
//! plain session, or with `--require-tls` an `error` and a `bye` `tls_required` (an HTTP request
//! gets a 403 telling to use `https://`). Inside TLS the first decrypted bytes are read the same
//! way. Bytes read to decide go to whatever serves the connection, so nothing is lost; with
//! `--no-web` and without TLS nothing is read before the session, as before either existed.
//!
//! Every session (JSON lines or WebSocket) runs as a task of its own on the tracker, started
//! once this is decided: a connection's memory for its whole life is the session's future alone.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use lanchat_protocol::{ByeReason, ErrorCode, LineCodec};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use crate::admission::Permit;
use crate::session::{self, Ready, Transport};
use crate::tls::{Tls, HANDSHAKE_RECORD};
use crate::web::{self, ws::WsCodec};
use crate::{Peer, Shared};

/// What a session needs besides its streams and its permit.
struct Conn {
    peer: Peer,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    hello_deadline: Instant,
}

impl Conn {
    /// Start the session on its own task, `prefix` (bytes already read) first.
    fn session<R, C, W>(self, prefix: BytesMut, reader: R, codec: C, writer: W, permit: Permit)
    where
        R: Ready,
        C: Transport,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let reader = Prefixed::new(&prefix, reader);
        let (tracker, start) = self.start(permit);
        tracker.spawn(session::serve_until(reader, codec, writer, start));
    }

    /// Start a plain TCP session (JSON lines or WebSocket) on its own task, `prefix` first: its
    /// lines are written by the server's flusher (see `session::serve_plain`).
    fn plain<C: Transport>(
        self,
        prefix: BytesMut,
        reader: OwnedReadHalf,
        codec: C,
        writer: OwnedWriteHalf,
        permit: Permit,
    ) {
        let reader = Prefixed::new(&prefix, reader);
        let (tracker, start) = self.start(permit);
        tracker.spawn(session::serve_plain(reader, codec, writer, start));
    }

    fn start(self, permit: Permit) -> (TaskTracker, session::Start) {
        let start = session::Start {
            peer: self.peer,
            shared: self.shared,
            shutdown: self.shutdown,
            permit,
            hello_deadline: self.hello_deadline,
        };
        (self.tracker, start)
    }

    fn lines(&self) -> LineCodec {
        LineCodec::new(self.shared.config.limits.max_line)
    }

    fn websocket(&self) -> WsCodec {
        WsCodec::new(self.shared.config.limits.max_line)
    }

    fn http(&self, secure: bool) -> web::Http<'_> {
        web::Http {
            peer: self.peer,
            shared: &self.shared,
            secure,
            deadline: self.hello_deadline,
        }
    }
}

/// A session's reader: the bytes read to decide the transport, then the socket's.
pub struct Prefixed<R> {
    /// Boxed, and only while it lasts: the reader sits in the session's future for its whole
    /// life, and most prefixes are empty (or a hello line, read at once).
    prefix: Option<Box<Bytes>>,
    inner: R,
}

impl<R> Prefixed<R> {
    pub fn new(prefix: &[u8], inner: R) -> Prefixed<R> {
        // A copy of the bytes, not the buffer they were read into (an idle WebSocket would
        // otherwise hold its upgrade's read buffer).
        let prefix = (!prefix.is_empty()).then(|| Box::new(Bytes::copy_from_slice(prefix)));
        Prefixed { prefix, inner }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Prefixed<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if let Some(prefix) = &mut this.prefix {
            let n = prefix.len().min(buf.remaining());
            buf.put_slice(&prefix[..n]);
            prefix.advance(n);
            if prefix.is_empty() {
                this.prefix = None;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<R: Ready> Ready for Prefixed<R> {
    const WAITS: bool = R::WAITS;

    fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        match self.prefix {
            Some(_) => Poll::Ready(()),
            None => self.inner.poll_ready(cx),
        }
    }
}

/// Serve one admitted TCP connection: TLS, HTTP or JSON lines by its first bytes (see the
/// module's doc). The permit was taken before anything was read, so connections mid-handshake
/// count against the caps on connections that have not said hello, as idle ones do.
pub async fn serve_tcp(
    stream: TcpStream,
    peer: Peer,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    permit: Permit,
    tracker: TaskTracker,
) {
    let _ = stream.set_nodelay(true);
    let hello_deadline = Instant::now() + shared.config.hello_timeout;
    let web = shared.config.web;
    let tls = shared.config.tls.clone();
    let conn = Conn {
        peer,
        shared,
        shutdown,
        tracker,
        hello_deadline,
    };
    let plain = |conn: Conn, stream: TcpStream, permit| {
        let (reader, writer) = stream.into_split();
        let codec = conn.lines();
        conn.plain(BytesMut::new(), reader, codec, writer, permit);
    };
    if tls.is_none() && !web {
        return plain(conn, stream, permit);
    }
    let mut first = [0u8; 1];
    let peeked = tokio::select! {
        _ = conn.shutdown.cancelled() => None,
        p = tokio::time::timeout_at(hello_deadline, stream.peek(&mut first)) => Some(p),
    };
    let tls = match peeked {
        Some(Ok(Ok(1))) if first[0] == HANDSHAKE_RECORD && tls.is_some() => tls,
        Some(Ok(Err(e))) => {
            return debug!(%peer, error = %e, "connection lost before its first byte")
        }
        Some(Ok(Ok(1))) if web && web::may_be_http(first[0]) => {
            // On the heap, and only while it runs: the HTTP exchange is rare and short.
            return Box::pin(sniff_plain(conn, stream, permit)).await;
        }
        Some(Ok(Ok(1))) if conn.shared.config.require_tls => {
            return Box::pin(refuse_plain(stream, peer, permit)).await;
        }
        // Plain, an end of stream, nothing within the hello timeout, or a shutdown before the
        // first byte: the plain session ends these exactly as it always has (`bye
        // hello_timeout`, `bye shutting_down`).
        _ => return plain(conn, stream, permit),
    };
    let Some(tls) = tls else { return };
    // On the heap, and only while it runs.
    Box::pin(handshake(conn, &tls, stream, permit)).await
}

/// A TLS handshake, bounded by what is left of the hello timeout, then [`serve_tls`].
async fn handshake(conn: Conn, tls: &Tls, stream: TcpStream, permit: Permit) {
    let (peer, hello_deadline) = (conn.peer, conn.hello_deadline);
    if !conn
        .shared
        .admission
        .handshake_allowed(permit.source(), std::time::Instant::now())
    {
        // Closed unanswered: a client sees a failed handshake, and reconnects later.
        return debug!(%peer, "TLS handshake refused: too many from this address");
    }
    let mut handshake = Box::pin(tls.acceptor().accept(stream));
    let done = tokio::select! {
        _ = conn.shutdown.cancelled() => None,
        // Boxed at once: a TLS stream held by value here would sit in this future.
        r = tokio::time::timeout_at(hello_deadline, &mut handshake) => {
            Some(r.map(|done| done.map(Box::new)))
        }
    };
    match done {
        Some(Ok(Ok(stream))) => {
            drop(handshake);
            Box::pin(serve_tls(conn, stream, permit)).await
        }
        Some(Ok(Err(e))) => debug!(%peer, error = %e, "TLS handshake failed"),
        Some(Err(_)) => {
            debug!(%peer, "no TLS handshake within the hello timeout");
            // The slot is free before the socket closes: whoever sees the close may connect again.
            drop(permit);
            drop(handshake);
        }
        None => {}
    }
}

type TlsStream = tokio_rustls::server::TlsStream<TcpStream>;

/// After the handshake: HTTPS (the web app, `wss://`) or JSON lines, by the first bytes.
async fn serve_tls(conn: Conn, mut stream: Box<TlsStream>, permit: Permit) {
    let mut buf = BytesMut::new();
    let web = conn.shared.config.web;
    if web && web::sniff(&mut *stream, &mut buf, conn.hello_deadline, &conn.shutdown).await {
        let Some(rest) = conn.http(true).serve(&mut *stream, buf).await else {
            return;
        };
        let (reader, writer) = tokio::io::split(*stream);
        let codec = conn.websocket();
        return conn.session(rest, reader, codec, writer, permit);
    }
    let (reader, writer) = tokio::io::split(*stream);
    let codec = conn.lines();
    conn.session(buf, reader, codec, writer, permit);
}

/// A plain connection whose first byte may begin an HTTP request: read on and serve it as what
/// it turns out to be.
async fn sniff_plain(conn: Conn, mut stream: TcpStream, permit: Permit) {
    let mut buf = BytesMut::new();
    if web::sniff(&mut stream, &mut buf, conn.hello_deadline, &conn.shutdown).await {
        let Some(rest) = conn.http(false).serve(&mut stream, buf).await else {
            return;
        };
        let (reader, writer) = stream.into_split();
        let codec = conn.websocket();
        return conn.plain(rest, reader, codec, writer, permit);
    }
    if conn.shared.config.require_tls {
        return refuse_plain(stream, conn.peer, permit).await;
    }
    let (reader, writer) = stream.into_split();
    let codec = conn.lines();
    conn.plain(buf, reader, codec, writer, permit);
}

/// `--require-tls` and a plain connection: `error` and `bye` `tls_required`, then close.
async fn refuse_plain(stream: TcpStream, peer: Peer, permit: Permit) {
    debug!(%peer, "plain connection refused: TLS required");
    let message = "this server accepts TLS only: connect with TLS and check the certificate's \
                   SHA-256 (tls_sha256 in its beacons)";
    let (mut reader, writer) = stream.into_split();
    session::refuse(
        writer,
        ErrorCode::TlsRequired,
        ByeReason::TlsRequired,
        message,
    )
    .await;
    // The client has sent at least a byte we will not read: closing now could reset the
    // connection and destroy the bye on its way.
    session::linger(&mut reader).await;
    drop(permit);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every TCP connection starts as one such future, freed once its session (a task of its
    /// own, below 2 KiB: see session.rs) starts; the handshake's and the HTTP exchange's state
    /// are on the heap meanwhile.
    #[tokio::test]
    async fn the_connection_future_stays_small() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let shared = Shared::new(crate::Config::default());
        let permit = shared.admit(crate::admission::Source::Unknown).unwrap();
        let tracker = TaskTracker::new();
        let token = CancellationToken::new();
        let fut = serve_tcp(client, Peer(None), shared, token, permit, tracker);
        let size = std::mem::size_of_val(&fut);
        assert!(size < 1024, "connection future is {size} bytes");
        eprintln!("connection future: {size} bytes");
    }

    #[tokio::test]
    async fn the_prefix_comes_first_then_the_socket() {
        use tokio::io::AsyncReadExt;
        let mut reader = Prefixed::new(b"GE", &b"T /"[..]);
        let mut first = [0u8; 1];
        reader.read_exact(&mut first).await.unwrap();
        let mut rest = String::new();
        reader.read_to_string(&mut rest).await.unwrap();
        assert_eq!((first[0], rest.as_str()), (b'G', "ET /"));
        let mut empty = Prefixed::new(b"", &b"x"[..]);
        assert!(empty.prefix.is_none(), "nothing allocated");
        let mut all = Vec::new();
        empty.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"x");
    }
}
