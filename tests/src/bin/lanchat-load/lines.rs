//! A reusable, growable line buffer over a socket: one read fills it, then every complete line
//! is handed out as a borrowed slice, so reading costs no allocation per line.

use tokio::io::{AsyncRead, AsyncReadExt};

/// Lines longer than this end the connection: no peer of ours sends anything near it (a
/// lanchat `join` reply for a room of 1,000 members is about 40 KB).
const MAX_LINE: usize = 16 * 1024 * 1024;

pub struct LineReader {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl LineReader {
    pub fn new(capacity: usize) -> Self {
        LineReader {
            buf: vec![0; capacity.max(8)],
            start: 0,
            end: 0,
        }
    }

    /// Read once from `reader` into the free space (compacting or growing first when needed).
    /// Returns the number of bytes read; 0 means end of stream.
    pub async fn fill<R: AsyncRead + Unpin>(&mut self, reader: &mut R) -> std::io::Result<usize> {
        self.make_room()?;
        let n = reader.read(&mut self.buf[self.end..]).await?;
        self.end += n;
        Ok(n)
    }

    fn make_room(&mut self) -> std::io::Result<()> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        if self.end < self.buf.len() {
            return Ok(());
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
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
}
