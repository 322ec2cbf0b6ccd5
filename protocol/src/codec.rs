//! The line codec: splits a byte stream into lines of at most `max_line` bytes with bounded memory.
//!
//! An overlong line is an *item* ([`Line::TooLong`]), not a decoder error: a `Framed` stream ends
//! after its decoder's first `Err`, and the protocol says the connection goes on after
//! `line_too_long`. Only I/O failures are errors.

use bytes::{Buf, BytesMut};
use memchr::memchr;
use tokio_util::codec::Decoder;

/// One unit read from the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A complete line without its LF (and without a CR before the LF). Never empty.
    Frame(BytesMut),
    /// A line passed `max_line`; what was buffered is dropped and the rest of the line, up to the
    /// next LF, will be skipped without being buffered.
    TooLong,
}

/// Decoder of LF-terminated lines with a maximum length.
#[derive(Debug, Clone)]
pub struct LineCodec {
    max_line: usize,
    /// How far the current buffer has already been searched for an LF.
    scanned: usize,
    /// Skipping the remainder of an overlong line.
    discarding: bool,
}

impl LineCodec {
    pub fn new(max_line: usize) -> Self {
        LineCodec {
            max_line,
            scanned: 0,
            discarding: false,
        }
    }

    pub fn max_line(&self) -> usize {
        self.max_line
    }
}

impl Decoder for LineCodec {
    type Item = Line;
    type Error = std::io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Line>, std::io::Error> {
        loop {
            if self.discarding {
                match memchr(b'\n', buf) {
                    Some(i) => {
                        buf.advance(i + 1);
                        self.discarding = false;
                    }
                    None => {
                        buf.clear();
                        return Ok(None);
                    }
                }
            }
            // A line of max_line bytes may be followed by CR and LF: look no further than that.
            let window = buf.len().min(self.max_line + 2);
            match memchr(b'\n', &buf[self.scanned..window]) {
                Some(rel) => {
                    let end = self.scanned + rel;
                    self.scanned = 0;
                    let mut line = buf.split_to(end + 1);
                    line.truncate(end);
                    if line.last() == Some(&b'\r') {
                        line.truncate(end - 1);
                    }
                    if line.len() > self.max_line {
                        return Ok(Some(Line::TooLong));
                    }
                    if line.is_empty() {
                        continue;
                    }
                    return Ok(Some(Line::Frame(line)));
                }
                None if buf.len() > self.max_line + 1 => {
                    // Even a trailing CR cannot make this fit: drop it now, keep memory bounded.
                    // The rest of the buffer may already hold its LF (and the next lines).
                    self.scanned = 0;
                    match memchr(b'\n', &buf[window..]) {
                        Some(rel) => buf.advance(window + rel + 1),
                        None => {
                            buf.clear();
                            self.discarding = true;
                        }
                    }
                    return Ok(Some(Line::TooLong));
                }
                None => {
                    self.scanned = window;
                    return Ok(None);
                }
            }
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Line>, std::io::Error> {
        if let Some(line) = self.decode(buf)? {
            return Ok(Some(line));
        }
        // A last line without LF is still a line; what a discarded line left is not.
        self.scanned = 0;
        if self.discarding || buf.is_empty() {
            buf.clear();
            return Ok(None);
        }
        let mut line = buf.split();
        if line.last() == Some(&b'\r') {
            line.truncate(line.len() - 1);
        }
        if line.len() > self.max_line {
            return Ok(Some(Line::TooLong));
        }
        Ok((!line.is_empty()).then_some(Line::Frame(line)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(codec: &mut LineCodec, chunks: &[&[u8]]) -> Vec<Line> {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            while let Some(line) = codec.decode(&mut buf).unwrap() {
                out.push(line);
            }
            assert!(buf.len() <= codec.max_line() + 2 + chunk.len());
        }
        while let Some(line) = codec.decode_eof(&mut buf).unwrap() {
            out.push(line);
        }
        out
    }

    fn frame(s: &str) -> Line {
        Line::Frame(BytesMut::from(s))
    }

    #[test]
    fn splits_reads_anywhere() {
        let input = b"{\"a\":1}\r\n\n\r\n{\"b\":2}\n";
        for cut in 0..input.len() {
            let mut c = LineCodec::new(100);
            let got = decode_all(&mut c, &[&input[..cut], &input[cut..]]);
            assert_eq!(
                got,
                vec![frame("{\"a\":1}"), frame("{\"b\":2}")],
                "cut {cut}"
            );
        }
    }

    #[test]
    fn overlong_line_then_good_line() {
        let mut c = LineCodec::new(8);
        let got = decode_all(&mut c, &[b"0123456789abcdef", b"ghij\nok\n"]);
        assert_eq!(got, vec![Line::TooLong, frame("ok")]);
    }

    #[test]
    fn overlong_line_and_next_line_in_one_read() {
        for len in [9, 10, 11, 20, 40] {
            let mut c = LineCodec::new(8);
            let mut input = vec![b'x'; len];
            input.extend_from_slice(b"\nnext\n");
            assert_eq!(
                decode_all(&mut c, &[&input]),
                vec![Line::TooLong, frame("next")],
                "{len}"
            );
        }
    }

    #[test]
    fn exactly_max_with_crlf_fits() {
        let mut c = LineCodec::new(4);
        let got = decode_all(&mut c, &[b"abcd\r", b"\nabcde\nx\n"]);
        assert_eq!(got, vec![frame("abcd"), Line::TooLong, frame("x")]);
    }

    #[test]
    fn ten_mib_without_newline_stays_bounded() {
        let mut c = LineCodec::new(16384);
        let mut buf = BytesMut::new();
        let chunk = vec![b'x'; 64 * 1024];
        let mut too_long = 0;
        for _ in 0..160 {
            buf.extend_from_slice(&chunk);
            while let Some(l) = c.decode(&mut buf).unwrap() {
                assert_eq!(l, Line::TooLong);
                too_long += 1;
            }
            assert!(buf.len() <= 16384 + 2, "buffer grew to {}", buf.len());
        }
        assert_eq!(too_long, 1);
        buf.extend_from_slice(b"tail\n{}\n");
        assert_eq!(c.decode(&mut buf).unwrap(), Some(frame("{}")));
    }

    #[test]
    fn last_line_without_newline_at_eof() {
        let mut c = LineCodec::new(10);
        assert_eq!(
            decode_all(&mut c, &[b"a\nbc"]),
            vec![frame("a"), frame("bc")]
        );
    }
}
