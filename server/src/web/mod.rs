//! The web side of the chat port (issue 18): the first bytes that tell an HTTP request from a
//! JSON line, the web app's files (built into the binary), and the `/ws` upgrade to a
//! WebSocket session ([`ws`]), over plain TCP or inside TLS alike. `--no-web` turns it off.
//!
//! Every request gets one answer and the connection closes (`Connection: close`): the app is
//! three small files, and the WebSocket is the one long-lived connection. A request head must
//! arrive within the hello timeout and fit in 8 KiB (else 431); GET and HEAD only (else 405).
//! The upgrade checks `Origin` ([`origin_allowed`]) before anything else reaches the session,
//! so that a page on another site cannot chat in its visitor's name on a LAN server it can reach.

pub mod http;
pub mod ws;

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use self::http::Head;
use crate::{logsafe, session, Peer, Shared};

/// The path of the WebSocket endpoint.
pub const WS_PATH: &str = "/ws";
/// The longest an answer may take to write.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// A file of the web app: its path, its `Content-Type`, its bytes.
type File = (&'static str, &'static str, &'static [u8]);

/// The web app, built into the binary by build.rs (every file under `server/web/`, `index.html`
/// as `/`): nothing is read from disk at run time.
const FILES: &[File] = include!(concat!(env!("OUT_DIR"), "/web_files.rs"));

/// Request methods whose request line marks a connection as HTTP. Only GET and HEAD are served;
/// the others are told 405 rather than taken for a bad JSON line. A JSON line starts with `{`.
const METHODS: [&[u8]; 9] = [
    b"GET ",
    b"HEAD ",
    b"POST ",
    b"PUT ",
    b"DELETE ",
    b"OPTIONS ",
    b"PATCH ",
    b"CONNECT ",
    b"TRACE ",
];

/// What the first bytes of a connection say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniff {
    Http,
    NotHttp,
    /// A prefix of a method: read on.
    Undecided,
}

/// Classify the first bytes of a connection.
pub fn classify(first: &[u8]) -> Sniff {
    let mut undecided = false;
    for method in METHODS {
        let n = first.len().min(method.len());
        if first[..n] == method[..n] {
            if n == method.len() {
                return Sniff::Http;
            }
            undecided = true;
        }
    }
    if undecided {
        Sniff::Undecided
    } else {
        Sniff::NotHttp
    }
}

/// Whether a connection starting with this byte may be HTTP (and worth reading on for).
pub fn may_be_http(first: u8) -> bool {
    classify(&[first]) != Sniff::NotHttp
}

/// Read the first bytes of a connection into `buf` until they tell whether it is HTTP. Not HTTP
/// as well when the peer closes or goes quiet past `deadline`, or on shutdown: the session then
/// ends it as it ends any such connection.
pub async fn sniff<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
    deadline: Instant,
    shutdown: &CancellationToken,
) -> bool {
    loop {
        match classify(buf) {
            Sniff::Http => return true,
            Sniff::NotHttp => return false,
            Sniff::Undecided => {}
        }
        buf.reserve(512);
        let read = tokio::select! {
            _ = shutdown.cancelled() => return false,
            r = tokio::time::timeout_at(deadline, reader.read_buf(buf)) => r,
        };
        if !matches!(read, Ok(Ok(n)) if n > 0) {
            return false;
        }
    }
}

/// Whether a WebSocket upgrade from `origin` may go on: no `Origin` (only browsers send one, and
/// they always do), the page's own origin (the `Host` it asked for, with this connection's
/// scheme), or one listed with `--web-origin`.
pub fn origin_allowed(
    origin: Option<&str>,
    host: Option<&str>,
    secure: bool,
    allowed: &[String],
) -> bool {
    let Some(origin) = origin else {
        return true;
    };
    let origin = origin.trim_end_matches('/');
    let scheme = if secure { "https://" } else { "http://" };
    let same = host.is_some_and(|host| {
        let (Some(start), Some(rest)) = (origin.get(..scheme.len()), origin.get(scheme.len()..))
        else {
            return false;
        };
        start.eq_ignore_ascii_case(scheme) && rest.eq_ignore_ascii_case(host)
    });
    same || allowed.iter().any(|a| a.eq_ignore_ascii_case(origin))
}

/// Check an `--web-origin` value and give its canonical form: `scheme://host[:port]`, lowercase,
/// no path.
pub fn parse_origin(text: &str) -> Result<String, String> {
    let origin = text.trim().trim_end_matches('/').to_ascii_lowercase();
    let rest = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .ok_or_else(|| format!("{text:?}: an origin starts with http:// or https://"))?;
    let valid = |c: char| c.is_ascii_alphanumeric() || "-.:[]_".contains(c);
    if rest.is_empty() || !rest.chars().all(valid) {
        return Err(format!(
            "{text:?}: an origin is scheme://host[:port], without a path"
        ));
    }
    Ok(origin)
}

/// One HTTP connection, after its first bytes (in `buf`) said it is HTTP.
pub struct Http<'a> {
    pub peer: Peer,
    pub shared: &'a Shared,
    /// Inside TLS: the page is `https://`, its WebSocket `wss://`.
    pub secure: bool,
    pub deadline: Instant,
}

impl Http<'_> {
    /// Read the request and answer it. Returns the bytes read past the head when the request
    /// upgraded to a WebSocket (the `101` is written): the caller starts the session. Otherwise
    /// the answer is written and the connection is closed.
    pub async fn serve<S>(&self, stream: &mut S, mut buf: BytesMut) -> Option<BytesMut>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let peer = self.peer;
        let (answer, upgrade) = match http::read_head(stream, &mut buf, self.deadline).await {
            Head::Request(req) => self.answer(&req),
            Head::TooLarge => (http::text(431, &[], "request head too large", false), false),
            Head::Malformed => (http::text(400, &[], "bad request", false), false),
            Head::Gone => return None,
        };
        let written = tokio::time::timeout(WRITE_TIMEOUT, async {
            stream.write_all(&answer).await?;
            stream.flush().await
        })
        .await;
        if !matches!(written, Ok(Ok(()))) {
            debug!(%peer, "HTTP answer not written");
            return None;
        }
        if upgrade {
            return Some(buf);
        }
        let _ = tokio::time::timeout(WRITE_TIMEOUT, stream.shutdown()).await;
        // The peer may have sent more than we read: closing now could reset the connection and
        // destroy the answer on its way.
        session::linger(stream).await;
        None
    }

    /// The answer to a request, and whether it is a WebSocket upgrade.
    fn answer(&self, req: &http::Request) -> (Vec<u8>, bool) {
        let head_only = req.method == "HEAD";
        let (peer, path) = (self.peer, logsafe::field(&req.path));
        debug!(%peer, method = %logsafe::field(&req.method), %path, "HTTP request");
        if !head_only && req.method != "GET" {
            let allow = [("Allow", "GET, HEAD")];
            return (http::text(405, &allow, "GET or HEAD only", false), false);
        }
        if self.shared.config.require_tls && !self.secure {
            let message = "this server accepts TLS only: open it with https:// (and check the \
                           certificate's SHA-256 fingerprint)";
            return (http::text(403, &[], message, head_only), false);
        }
        if req.path == WS_PATH {
            return self.upgrade(req, head_only);
        }
        let path = if req.path == "/index.html" {
            "/"
        } else {
            &req.path
        };
        let found = FILES.iter().find(|(p, ..)| *p == path);
        match found {
            Some((_, content_type, body)) => (
                http::response(200, &[], content_type, body, head_only),
                false,
            ),
            None => (http::text(404, &[], "no such page", head_only), false),
        }
    }

    /// Check a WebSocket upgrade request (RFC 6455, 4.2.1) and answer it.
    fn upgrade(&self, req: &http::Request, head_only: bool) -> (Vec<u8>, bool) {
        let refuse = |status, extra: &[(&str, &str)], message| {
            (http::text(status, extra, message, head_only), false)
        };
        if head_only {
            return refuse(405, &[("Allow", "GET")], "a WebSocket opens with GET");
        }
        let upgrade = [("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13")];
        if !req.has_token("upgrade", "websocket") || !req.has_token("connection", "upgrade") {
            return refuse(426, &upgrade, "this is lanchat's WebSocket: open it as one");
        }
        if req.header("sec-websocket-version") != Some("13") {
            return refuse(426, &upgrade, "WebSocket version 13 only");
        }
        let key = req.header("sec-websocket-key").unwrap_or("");
        let decoded = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, key);
        if req.version != 1 || !matches!(decoded, Ok(k) if k.len() == 16) {
            return refuse(400, &[], "bad WebSocket handshake");
        }
        let origin = req.header("origin");
        let allowed = &self.shared.config.web_origins;
        if !origin_allowed(origin, req.header("host"), self.secure, allowed) {
            info!(
                peer = %self.peer,
                origin = %logsafe::field(origin.unwrap_or("")),
                "WebSocket refused: foreign origin (allow it with --web-origin)"
            );
            return refuse(
                403,
                &[],
                "this page's origin may not open lanchat's WebSocket",
            );
        }
        let accept = ws::accept_key(key);
        let answer = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {accept}\r\n\r\n"
        );
        (answer.into_bytes(), true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_bytes_tell_http_from_json_lines() {
        assert_eq!(classify(b"GET / HTTP/1.1"), Sniff::Http);
        assert_eq!(classify(b"HEAD "), Sniff::Http);
        assert_eq!(classify(b"OPTIONS /ws"), Sniff::Http);
        assert_eq!(classify(b"GE"), Sniff::Undecided);
        assert_eq!(classify(b"P"), Sniff::Undecided);
        assert_eq!(classify(b""), Sniff::Undecided);
        assert_eq!(classify(b"{\"type\":\"hello\"}"), Sniff::NotHttp);
        assert_eq!(classify(b"GET/"), Sniff::NotHttp);
        assert_eq!(classify(b"get / HTTP/1.1"), Sniff::NotHttp);
        assert!(may_be_http(b'G') && may_be_http(b'H') && !may_be_http(b'{'));
        assert!(!may_be_http(b' ') && !may_be_http(0x16));
    }

    #[test]
    fn the_origin_must_be_the_page_s_own_or_listed() {
        let none: &[String] = &[];
        let host = Some("chat.lan:7878");
        assert!(origin_allowed(None, host, false, none));
        assert!(origin_allowed(
            Some("http://chat.lan:7878"),
            host,
            false,
            none
        ));
        assert!(origin_allowed(
            Some("HTTP://Chat.LAN:7878"),
            host,
            false,
            none
        ));
        assert!(origin_allowed(
            Some("https://chat.lan:7878"),
            host,
            true,
            none
        ));
        assert!(!origin_allowed(
            Some("https://chat.lan:7878"),
            host,
            false,
            none
        ));
        assert!(!origin_allowed(
            Some("http://chat.lan:7879"),
            host,
            false,
            none
        ));
        assert!(!origin_allowed(
            Some("http://evil.example"),
            host,
            false,
            none
        ));
        assert!(!origin_allowed(Some("null"), host, false, none));
        assert!(!origin_allowed(
            Some("http://chat.lan:7878"),
            None,
            false,
            none
        ));
        assert!(!origin_allowed(Some("http://é"), Some("x"), false, none));
        assert!(!origin_allowed(Some("http:/éx"), Some("x"), false, none));
        assert!(!origin_allowed(Some("http:/"), Some(""), false, none));
        let listed = [parse_origin("https://Intranet.example/").unwrap()];
        assert!(origin_allowed(
            Some("https://intranet.example"),
            host,
            false,
            &listed
        ));
    }

    #[test]
    fn web_origins_are_checked() {
        assert_eq!(parse_origin("http://a.lan:80").unwrap(), "http://a.lan:80");
        assert!(parse_origin("a.lan").is_err());
        assert!(parse_origin("http://a.lan/path").is_err());
        assert!(parse_origin("http://").is_err());
        assert!(parse_origin("ftp://a.lan").is_err());
    }

    #[test]
    fn the_web_app_is_built_in() {
        let paths: Vec<&str> = FILES.iter().map(|(p, ..)| *p).collect();
        for path in ["/", "/app.js", "/app.css"] {
            assert!(paths.contains(&path), "{path} missing from {paths:?}");
        }
        let (_, content_type, page) = FILES.iter().find(|(p, ..)| *p == "/").unwrap();
        assert_eq!(*content_type, "text/html; charset=utf-8");
        assert!(page.starts_with(b"<!doctype html>") || page.starts_with(b"<!DOCTYPE html>"));
    }
}
