//! HTTP/1.1 on the chat port, as little of it as the web app needs: one request head per
//! connection (parsed with `httparse`, at most [`MAX_HEAD`] bytes, by a deadline), and one
//! response with the security headers every answer carries, then `Connection: close`.

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

/// The longest request head (request line and headers) read.
pub const MAX_HEAD: usize = 8 * 1024;
/// Most headers in a request head.
const MAX_HEADERS: usize = 64;

/// What the web app may load and connect to: its own files, and its own origin for the
/// WebSocket (CSP level 3 lets `'self'` match `ws:`/`wss:` on the page's host and port).
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                       img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
                       form-action 'none'; frame-ancestors 'none'";

/// A request head, owned: the connection's buffer goes on to the WebSocket session.
#[derive(Debug)]
pub struct Request {
    pub method: String,
    /// The path without its query.
    pub path: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    headers: Vec<(String, Vec<u8>)>,
}

impl Request {
    /// The first value of a header, when it is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
            .map(str::trim)
    }

    /// Whether a comma-separated header (`Connection`, `Upgrade`) holds `token`.
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .filter_map(|(_, v)| std::str::from_utf8(v).ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }
}

/// How reading a request head ended.
#[derive(Debug)]
pub enum Head {
    /// A request; the bytes after its head stay in the buffer.
    Request(Request),
    /// Longer than [`MAX_HEAD`], or too many headers: 431.
    TooLarge,
    /// Not HTTP: 400.
    Malformed,
    /// The peer closed, the read failed, or the deadline passed: nothing to answer.
    Gone,
}

/// Parse a complete head at the start of `buf`, if there is one.
fn parse(buf: &mut BytesMut) -> Option<Head> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return None,
        Err(httparse::Error::TooManyHeaders) => return Some(Head::TooLarge),
        Err(_) => return Some(Head::Malformed),
    };
    let target = req.path.unwrap_or("/");
    let path = target.split(['?', '#']).next().unwrap_or("/").to_owned();
    let request = Request {
        method: req.method.unwrap_or("").to_owned(),
        path,
        version: req.version.unwrap_or(1),
        headers: req
            .headers
            .iter()
            .map(|h| (h.name.to_owned(), h.value.to_owned()))
            .collect(),
    };
    buf.advance(len);
    Some(Head::Request(request))
}

/// Read a request head into `buf` (which may hold its first bytes already) by `deadline`.
pub async fn read_head<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
    deadline: Instant,
) -> Head {
    loop {
        if let Some(head) = parse(buf) {
            return head;
        }
        if buf.len() >= MAX_HEAD {
            return Head::TooLarge;
        }
        // Never read past the bound: at most one byte more than a head may hold.
        let mut limited = (&mut *reader).take((MAX_HEAD + 1 - buf.len()) as u64);
        buf.reserve(1024.min(MAX_HEAD + 1 - buf.len()));
        match tokio::time::timeout_at(deadline, limited.read_buf(buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return Head::Gone,
        }
    }
}

/// A response head and body, the security headers included. `head_only` for HEAD.
pub fn response(
    status: u16,
    extra: &[(&str, &str)],
    content_type: &str,
    body: &[u8],
    head_only: bool,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(512 + body.len());
    let reason = reason(status);
    out.extend_from_slice(format!("HTTP/1.1 {status} {reason}\r\n").as_bytes());
    let length = body.len().to_string();
    let common = [
        ("Content-Type", content_type),
        ("Content-Length", length.as_str()),
        ("Content-Security-Policy", CSP),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),
        ("Cache-Control", "no-cache"),
        ("Connection", "close"),
    ];
    for (name, value) in common.iter().chain(extra) {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(body);
    }
    out
}

/// A short text answer (an error, a refusal).
pub fn text(status: u16, extra: &[(&str, &str)], message: &str, head_only: bool) -> Vec<u8> {
    let body = format!("{message}\n");
    response(
        status,
        extra,
        "text/plain; charset=utf-8",
        body.as_bytes(),
        head_only,
    )
}

fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(bytes: &[u8]) -> Head {
        let mut buf = BytesMut::from(bytes);
        parse(&mut buf).unwrap_or(Head::Gone)
    }

    #[test]
    fn a_request_head_is_parsed_and_its_tail_kept() {
        let mut buf = BytesMut::from(
            &b"GET /ws?x=1 HTTP/1.1\r\nHost: h:1\r\nConnection: keep-alive, Upgrade\r\n\r\n\x81"[..],
        );
        let Some(Head::Request(req)) = parse(&mut buf) else {
            panic!("not parsed")
        };
        assert_eq!((req.method.as_str(), req.path.as_str()), ("GET", "/ws"));
        assert_eq!(req.header("host"), Some("h:1"));
        assert!(req.has_token("connection", "upgrade"));
        assert!(!req.has_token("upgrade", "websocket"));
        assert_eq!(&buf[..], b"\x81");
    }

    #[test]
    fn partial_malformed_and_crowded_heads() {
        assert!(matches!(head(b"GET / HTTP/1.1\r\nHost: h"), Head::Gone));
        assert!(matches!(
            head(b"GET / HTTP/1.1\r\nHo st: h\r\n\r\n"),
            Head::Malformed
        ));
        let many = format!(
            "GET / HTTP/1.1\r\n{}\r\n",
            "A: b\r\n".repeat(MAX_HEADERS + 1)
        );
        assert!(matches!(head(many.as_bytes()), Head::TooLarge));
    }

    #[test]
    fn every_response_carries_the_security_headers() {
        let out = String::from_utf8(text(404, &[], "no such page", false)).unwrap();
        assert!(out.starts_with("HTTP/1.1 404 Not Found\r\n"), "{out}");
        for header in [
            "Content-Security-Policy: default-src 'none';",
            "X-Content-Type-Options: nosniff",
            "Referrer-Policy: no-referrer",
            "Cache-Control: no-cache",
            "Connection: close",
            "Content-Length: 13",
        ] {
            assert!(out.contains(header), "{header} missing: {out}");
        }
        assert!(out.ends_with("\r\n\r\nno such page\n"));
        let head = text(404, &[], "no such page", true);
        assert!(head.ends_with(b"\r\n\r\n"));
    }
}
