//! A room's recent messages, kept as the exact lines that were sent, newest last.
//!
//! Messages are stored encoded, so a `history` reply splices them without re-encoding and a
//! durable store can append the same bytes to disk.

use std::collections::VecDeque;

use bytes::Bytes;
use lanchat_protocol::{HistoryQuery, SentMessage};
use std::time::{SystemTime, UNIX_EPOCH};

use uuid::Uuid;

/// One stored message: its id (for `before`/`after` look-ups) and its `message` line with LF.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    pub id: Uuid,
    pub line: Bytes,
}

/// Memory a stored message costs besides its line: its slot, the id, the shared buffer's header.
pub const MESSAGE_OVERHEAD: usize = 96;

/// A new message from `from`: a fresh id (returned, and its text in `id_buf`, from
/// `Uuid::encode_buffer`) and the same instant as its time.
pub fn new_message<'a>(
    id_buf: &'a mut [u8],
    from: &'a str,
    text: &'a str,
) -> (Uuid, SentMessage<'a>) {
    let (id, ts) = new_message_id();
    let sent = SentMessage {
        id: id.hyphenated().encode_lower(id_buf),
        ts,
        from,
        text,
    };
    (id, sent)
}

/// A fresh message id (UUIDv7) and the same instant in milliseconds since the Unix epoch.
pub fn new_message_id() -> (Uuid, u64) {
    let id = Uuid::now_v7();
    let ts = id
        .get_timestamp()
        .map(|t| {
            let (secs, nanos) = t.to_unix();
            secs * 1000 + u64::from(nanos) / 1_000_000
        })
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64)
        });
    (id, ts)
}

/// The last `capacity` messages of a room.
#[derive(Debug)]
pub struct RoomHistory {
    messages: VecDeque<StoredMessage>,
    capacity: usize,
    /// Memory held, as [`RoomHistory::cost`] counts it.
    bytes: usize,
}

/// A `before` or `after` id that this room's history does not hold.
#[derive(Debug, PartialEq, Eq)]
pub struct UnknownId(pub &'static str);

impl RoomHistory {
    pub fn new(capacity: usize) -> Self {
        RoomHistory {
            messages: VecDeque::new(),
            capacity,
            bytes: 0,
        }
    }

    /// What a message costs in memory, for the server's history budget.
    pub fn cost(message: &StoredMessage) -> usize {
        message.line.len() + MESSAGE_OVERHEAD
    }

    /// Keep `message`, dropping the oldest when the room is full. Returns the change in memory
    /// held: (added, freed).
    pub fn push(&mut self, message: StoredMessage) -> (usize, usize) {
        if self.capacity == 0 {
            return (0, 0);
        }
        let mut freed = 0;
        if self.messages.len() == self.capacity {
            freed = self.pop_oldest().unwrap_or(0);
        }
        let added = Self::cost(&message);
        self.bytes += added;
        self.messages.push_back(message);
        (added, freed)
    }

    /// Drop the oldest message; the memory freed, or `None` if there was none.
    pub fn pop_oldest(&mut self) -> Option<usize> {
        let message = self.messages.pop_front()?;
        let cost = Self::cost(&message);
        self.bytes -= cost;
        Some(cost)
    }

    /// Memory held by this room's messages.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// The messages a `history` request asks for, oldest first: newest `limit` before `before`,
    /// or oldest `limit` after `after`, or (both) the oldest `limit` strictly between them.
    pub fn query(&self, q: &HistoryQuery) -> Result<Vec<&StoredMessage>, UnknownId> {
        let limit = q.limit_or_default();
        // An id no longer held (evicted, or from before a restart without --data-dir) is placed
        // by time: UUIDv7 ids sort in the order the server assigned them.
        let position = |field: &'static str, id: &str| -> Result<(usize, bool), UnknownId> {
            let id = Uuid::parse_str(id).map_err(|_| UnknownId(field))?;
            Ok(match self.messages.iter().rposition(|m| m.id == id) {
                Some(i) => (i, true),
                None => (self.messages.partition_point(|m| m.id < id), false),
            })
        };
        let start = match &q.after {
            Some(id) => match position("after", id)? {
                (i, true) => i + 1,
                (i, false) => i,
            },
            None => 0,
        };
        let end = match &q.before {
            Some(id) => position("before", id)?.0,
            None => self.messages.len(),
        };
        if start >= end {
            return Ok(Vec::new());
        }
        let (start, end) = if q.after.is_some() {
            (start, end.min(start + limit))
        } else {
            (start.max(end.saturating_sub(limit)), end)
        };
        Ok(self.messages.range(start..end).collect())
    }

    /// Every stored message, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &StoredMessage> {
        self.messages.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(n: usize, cap: usize) -> (RoomHistory, Vec<Uuid>) {
        let mut h = RoomHistory::new(cap);
        let mut ids = Vec::new();
        for i in 0..n {
            let id = Uuid::now_v7();
            ids.push(id);
            h.push(StoredMessage {
                id,
                line: Bytes::from(format!("{i}\n")),
            });
        }
        (h, ids)
    }

    fn q(before: Option<Uuid>, after: Option<Uuid>, limit: Option<u32>) -> HistoryQuery {
        HistoryQuery {
            room: "r".into(),
            before: before.map(|u| u.to_string()),
            after: after.map(|u| u.to_string()),
            limit,
        }
    }

    fn lines(v: Vec<&StoredMessage>) -> Vec<String> {
        v.iter()
            .map(|m| {
                String::from_utf8(m.line.to_vec())
                    .unwrap()
                    .trim()
                    .to_owned()
            })
            .collect()
    }

    #[test]
    fn capacity_and_queries() {
        let (h, ids) = filled(10, 5);
        assert_eq!(h.len(), 5);
        assert_eq!(
            lines(h.query(&q(None, None, None)).unwrap()),
            ["5", "6", "7", "8", "9"]
        );
        assert_eq!(lines(h.query(&q(None, None, Some(2))).unwrap()), ["8", "9"]);
        assert_eq!(
            lines(h.query(&q(Some(ids[8]), None, Some(2))).unwrap()),
            ["6", "7"]
        );
        assert_eq!(
            lines(h.query(&q(None, Some(ids[6]), Some(2))).unwrap()),
            ["7", "8"]
        );
        assert_eq!(
            lines(h.query(&q(Some(ids[9]), Some(ids[6]), None)).unwrap()),
            ["7", "8"]
        );
        assert!(h
            .query(&q(Some(ids[9]), Some(ids[9]), None))
            .unwrap()
            .is_empty());
        // Evicted ids are placed by time.
        assert!(h.query(&q(Some(ids[0]), None, None)).unwrap().is_empty());
        assert_eq!(
            lines(h.query(&q(None, Some(ids[0]), Some(2))).unwrap()),
            ["5", "6"]
        );
        assert_eq!(
            h.query(&HistoryQuery {
                after: Some("nope".into()),
                ..q(None, None, None)
            })
            .unwrap_err(),
            UnknownId("after")
        );
    }
}
