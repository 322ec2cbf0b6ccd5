//! A reusable, growable line buffer over a socket: one read fills it, then every complete line
//! is handed out as a borrowed slice, so reading costs no allocation per line. Over a WebSocket
//! (`--ws`) each read's complete text frames are turned into lines in place (payload and LF
//! where the frame was: a frame header is at least 2 bytes, the LF 1).

use tokio::io::{AsyncRead, AsyncReadExt};

/// Lines longer than this end the connection: no peer of ours sends anything near it (a
/// lanchat `join` reply for a room of 1,000 members is about 40 KB).
const MAX_LINE: usize = 16 * 1024 * 1024;

pub struct LineReader {
    buf: Vec<u8>,
    /// Lines are `buf[start..end]`.
    start: usize,
    end: usize,
    /// WebSocket frames not yet turned into lines are `buf[end..raw_end]` (`raw_end == end`
    /// over a plain stream).
    raw_end: usize,
    websocket: bool,
}

impl LineReader {
    pub fn new(capacity: usize) -> Self {
        LineReader {
            buf: vec![0; capacity.max(8)],
            start: 0,
            end: 0,
            raw_end: 0,
            websocket: false,
        }
    }

    /// A reader of a WebSocket's text messages (server frames: unmasked), one line each.
    pub fn websocket(capacity: usize) -> Self {
        LineReader {
            websocket: true,
            ..Self::new(capacity)
        }
    }

    /// Read once from `reader` into the free space (compacting or growing first when needed).
    /// Returns the number of bytes read; 0 means end of stream.
    pub async fn fill<R: AsyncRead + Unpin>(&mut self, reader: &mut R) -> std::io::Result<usize> {
        self.make_room()?;
        let n = reader.read(&mut self.buf[self.raw_end..]).await?;
        self.raw_end += n;
        if self.websocket {
            self.unframe()?;
        } else {
            self.end = self.raw_end;
        }
        Ok(n)
    }

    /// Turn the complete frames after `end` into lines; move what is left of a frame after them.
    fn unframe(&mut self) -> std::io::Result<()> {
        let (mut read, mut write) = (self.end, self.end);
        let bad = |why| std::io::Error::new(std::io::ErrorKind::InvalidData, why);
        loop {
            let b = &self.buf[read..self.raw_end];
            if b.len() < 2 {
                break;
            }
            if b[1] & 0x80 != 0 {
                return Err(bad("a masked server frame"));
            }
            let (head, len) = match b[1] & 0x7F {
                126 if b.len() >= 4 => (4, u16::from_be_bytes([b[2], b[3]]) as usize),
                127 if b.len() >= 10 => (
                    10,
                    u64::from_be_bytes(b[2..10].try_into().unwrap()) as usize,
                ),
                126 | 127 => break,
                n => (2, n as usize),
            };
            if b.len() < head + len {
                break;
            }
            match b[0] {
                // A text frame, whole: the server sends each line so.
                0x81 => {
                    self.buf.copy_within(read + head..read + head + len, write);
                    write += len;
                    self.buf[write] = b'\n';
                    write += 1;
                }
                // A close: the TCP close follows (after the bye line, already read).
                0x88 => {}
                _ => return Err(bad("an unexpected WebSocket frame")),
            }
            read += head + len;
        }
        self.buf.copy_within(read..self.raw_end, write);
        self.raw_end = write + (self.raw_end - read);
        self.end = write;
        Ok(())
    }

    fn make_room(&mut self) -> std::io::Result<()> {
        if self.start == self.raw_end {
            self.start = 0;
            self.end = 0;
            self.raw_end = 0;
        }
        if self.raw_end < self.buf.len() {
            return Ok(());
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.raw_end, 0);
            self.end -= self.start;
            self.raw_end -= self.start;
            self.start = 0;
            return Ok(());
        }
        if self.buf.len() >= MAX_LINE {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "line longer than 16 MiB",
            ));
        }
        let len = self.buf.len() * 2;
        self.buf.resize(len, 0);
        Ok(())
    }

    /// The next complete line without its LF (and without a CR before it), if one is buffered.
    pub fn next_line(&mut self) -> Option<&[u8]> {
        let pending = &self.buf[self.start..self.end];
        let nl = memchr::memchr(b'\n', pending)?;
        let line_start = self.start;
        self.start += nl + 1;
        let mut line = &self.buf[line_start..line_start + nl];
        if let [rest @ .., b'\r'] = line {
            line = rest;
        }
        Some(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn splits_lines_across_reads_and_grows() {
        let data = b"ab\r\ncd\nlonger than the buffer line\nx".to_vec();
        let mut src: &[u8] = &data;
        let mut lines = LineReader::new(4);
        let mut got = Vec::new();
        loop {
            while let Some(l) = lines.next_line() {
                got.push(String::from_utf8(l.to_vec()).unwrap());
            }
            if lines.fill(&mut src).await.unwrap() == 0 {
                break;
            }
        }
        assert_eq!(got, ["ab", "cd", "longer than the buffer line"]);
    }

    #[tokio::test]
    async fn websocket_frames_become_lines_across_reads() {
        let mut data = Vec::new();
        for text in ["{\"a\":1}", &"x".repeat(300), "{}"] {
            let (h, used) = header(text.len());
            data.extend_from_slice(&h[..used]);
            data.extend_from_slice(text.as_bytes());
        }
        data.extend_from_slice(&[0x88, 2, 0x03, 0xe8]);
        for step in [1, 5, 1000] {
            let mut lines = LineReader::websocket(16);
            let mut got = Vec::new();
            for piece in data.chunks(step) {
                let mut src: &[u8] = piece;
                while !src.is_empty() {
                    lines.fill(&mut src).await.unwrap();
                    while let Some(l) = lines.next_line() {
                        got.push(String::from_utf8(l.to_vec()).unwrap());
                    }
                }
            }
            assert_eq!(got, ["{\"a\":1}", "x".repeat(300).as_str(), "{}"], "{step}");
        }
    }

    fn header(len: usize) -> ([u8; 4], usize) {
        if len < 126 {
            ([0x81, len as u8, 0, 0], 2)
        } else {
            let l = (len as u16).to_be_bytes();
            ([0x81, 126, l[0], l[1]], 4)
        }
    }
}
