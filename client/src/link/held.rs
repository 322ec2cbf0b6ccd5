//! The frames that arrive while a reply is awaited, held to be handled after it: bounded, since a
//! hostile (or broken) server can send events faster than anything drains them while it holds
//! back a reply. Past the bound the link drops the connection, as the server drops a slow
//! consumer, and says why.

use std::collections::VecDeque;

use crate::connection::{Closed, Incoming};

/// At most this many frames held...
pub const HELD_FRAMES: usize = 20_000;
/// ...and at most this many bytes of them (a history reply alone may be about 1 MiB).
pub const HELD_BYTES: usize = 32 * 1024 * 1024;

/// The held frames, oldest first.
#[derive(Debug, Default)]
pub struct Held {
    frames: VecDeque<Incoming>,
    bytes: usize,
}

impl Held {
    /// Hold `frame`; past the bound, the reason to drop the connection.
    pub fn push(&mut self, frame: Incoming) -> Result<(), Closed> {
        if self.frames.len() >= HELD_FRAMES || self.bytes + frame.line.len() > HELD_BYTES {
            return Err(overflow());
        }
        self.bytes += frame.line.len();
        self.frames.push_back(frame);
        Ok(())
    }

    pub fn pop(&mut self) -> Option<Incoming> {
        let frame = self.frames.pop_front()?;
        self.bytes -= frame.line.len();
        Some(frame)
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.frames.len()
    }
}

/// Why the connection was dropped.
pub fn overflow() -> Closed {
    Closed {
        bye: None,
        error: Some(format!(
            "the server sent more than {HELD_FRAMES} events or {} MiB while a reply was awaited; dropped the connection",
            HELD_BYTES / (1024 * 1024)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(len: usize) -> Incoming {
        Incoming {
            line: "x".repeat(len),
            frame: None,
            is_reply: false,
        }
    }

    #[test]
    fn frames_and_bytes_are_bounded() {
        let mut held = Held::default();
        for _ in 0..HELD_FRAMES {
            held.push(frame(10)).unwrap();
        }
        assert_eq!(held.push(frame(10)), Err(overflow()));
        assert_eq!(held.len(), HELD_FRAMES);
        held.pop();
        held.push(frame(10)).unwrap();

        let mut held = Held::default();
        held.push(frame(HELD_BYTES - 1)).unwrap();
        assert!(held.push(frame(2)).is_err());
        held.push(frame(1)).unwrap();
        assert_eq!(held.pop().unwrap().line.len(), HELD_BYTES - 1);
        held.push(frame(HELD_BYTES - 1)).unwrap();
        assert!(overflow().to_string().contains("dropped the connection"));
    }
}
