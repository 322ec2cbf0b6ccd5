//! The three wire protocols the generator speaks (lanchat, Redis RESP pub/sub, IRC): encoding the
//! few commands a load run needs, and classifying received lines while parsing only what the
//! run needs (the payload of a delivery, whether a line is a reply, a ping or a close).
//!
//! Every message text is a payload `^SID:SEQ:TS^` padded with `x` to a fixed size: the sender
//! id, its sequence number (from 1) and the send time in nanoseconds of CLOCK_MONOTONIC, which
//! all processes of the machine share, so two generator processes can measure each other's
//! messages. `^` appears in no nick, room, id or host name the generator uses, so a receiver
//! finds the payload with one byte search and never parses the JSON or IRC around it.

use std::io::Write;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Proto {
    Lanchat,
    Redis,
    Irc,
}

/// What a received line means to the generator.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A room message or direct message carrying a payload.
    Delivery(Payload),
    /// A reply to one of our requests (lanchat `welcome`/`ok`/`error`, a RESP integer or status).
    Reply { ok: bool },
    /// A keepalive to answer; for IRC the argument to echo.
    Ping(&'a [u8]),
    /// The server is closing the connection (`bye`, IRC `ERROR`).
    Closed,
    /// Anything else (join/leave/quit events, numerics, RESP framing lines).
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Payload {
    pub sid: u32,
    pub seq: u64,
    pub ts_ns: u64,
}

/// Nanoseconds of CLOCK_MONOTONIC (a vDSO call, no system call).
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes a timespec into the valid pointer we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Append the payload text, padded with `x` to at least `size` bytes.
pub fn write_payload(out: &mut Vec<u8>, p: Payload, size: usize) {
    let start = out.len();
    let _ = write!(out, "^{}:{}:{}^", p.sid, p.seq, p.ts_ns);
    let len = out.len() - start;
    if len < size {
        out.resize(start + size, b'x');
    }
}

/// Find and parse the payload in a line.
pub fn parse_payload(line: &[u8]) -> Option<Payload> {
    let at = memchr::memchr(b'^', line)?;
    let mut rest = &line[at + 1..];
    let mut num = |end: u8| -> Option<u64> {
        let mut v: u64 = 0;
        let mut digits = 0;
        while let [d @ b'0'..=b'9', tail @ ..] = rest {
            v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
            digits += 1;
            rest = tail;
        }
        match rest {
            [b, tail @ ..] if *b == end && digits > 0 => {
                rest = tail;
                Some(v)
            }
            _ => None,
        }
    };
    let sid = u32::try_from(num(b':')?).ok()?;
    let seq = num(b':')?;
    let ts_ns = num(b'^')?;
    Some(Payload { sid, seq, ts_ns })
}

impl Proto {
    /// Classify one received line (without its line end).
    pub fn classify<'a>(&self, line: &'a [u8]) -> Event<'a> {
        match self {
            Proto::Lanchat => classify_lanchat(line),
            Proto::Redis => classify_redis(line),
            Proto::Irc => classify_irc(line),
        }
    }

    /// Append a message to a room (lanchat `say`, RESP `PUBLISH`, IRC `PRIVMSG #room`).
    pub fn room_message(&self, out: &mut Vec<u8>, room: &str, text: &[u8]) {
        self.message(out, ("say", "room", "#"), room, text)
    }

    /// Append a direct message (lanchat `dm`, RESP `PUBLISH` to the nick's own channel, IRC
    /// `PRIVMSG nick`).
    pub fn direct_message(&self, out: &mut Vec<u8>, nick: &str, text: &[u8]) {
        self.message(out, ("dm", "to", ""), nick, text)
    }

    /// The one shape behind both: (lanchat type, lanchat target field, IRC target prefix).
    fn message(
        &self,
        out: &mut Vec<u8>,
        (ty, field, irc_prefix): (&str, &str, &str),
        target: &str,
        text: &[u8],
    ) {
        let parts: &[&[u8]] = match self {
            Proto::Redis => return resp_command(out, &[b"PUBLISH", target.as_bytes(), text]),
            Proto::Lanchat => &[
                b"{\"type\":\"",
                ty.as_bytes(),
                b"\",\"",
                field.as_bytes(),
                b"\":\"",
                target.as_bytes(),
                b"\",\"text\":\"",
                text,
                b"\"}\n",
            ],
            Proto::Irc => &[
                b"PRIVMSG ",
                irc_prefix.as_bytes(),
                target.as_bytes(),
                b" :",
                text,
                b"\r\n",
            ],
        };
        for part in parts {
            out.extend_from_slice(part);
        }
    }

    /// Append a join of `room` (RESP: `SUBSCRIBE`).
    pub fn join(&self, out: &mut Vec<u8>, room: &str) {
        match self {
            Proto::Lanchat => {
                let _ = writeln!(out, "{{\"type\":\"join\",\"room\":\"{room}\"}}");
            }
            Proto::Redis => resp_command(out, &[b"SUBSCRIBE", room.as_bytes()]),
            Proto::Irc => {
                let _ = write!(out, "JOIN #{room}\r\n");
            }
        }
    }

    /// Append a leave of `room` (RESP: `UNSUBSCRIBE`, IRC: `PART`).
    pub fn leave(&self, out: &mut Vec<u8>, room: &str) {
        match self {
            Proto::Lanchat => {
                let _ = writeln!(out, "{{\"type\":\"leave\",\"room\":\"{room}\"}}");
            }
            Proto::Redis => resp_command(out, &[b"UNSUBSCRIBE", room.as_bytes()]),
            Proto::Irc => {
                let _ = write!(out, "PART #{room}\r\n");
            }
        }
    }

    /// Append the answer to a keepalive.
    pub fn pong(&self, out: &mut Vec<u8>, arg: &[u8]) {
        match self {
            Proto::Lanchat => out.extend_from_slice(b"{\"type\":\"pong\"}\n"),
            Proto::Redis => {}
            Proto::Irc => {
                out.extend_from_slice(b"PONG ");
                out.extend_from_slice(arg);
                out.extend_from_slice(b"\r\n");
            }
        }
    }

    /// Whether a room member may also publish on the same connection. A RESP connection in
    /// subscribed state may not, so Redis senders are separate connections.
    pub fn senders_are_members(&self) -> bool {
        !matches!(self, Proto::Redis)
    }

    /// Whether the server acknowledges each message to its sender (lanchat `ok`, RESP integer).
    /// IRC does not: the generator then counts a message as acknowledged once a watching member
    /// of the room (the witness) has received it.
    pub fn acks_messages(&self) -> bool {
        !matches!(self, Proto::Irc)
    }
}

/// Append a RESP array of bulk strings.
pub fn resp_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    let _ = write!(out, "*{}\r\n", args.len());
    for a in args {
        let _ = write!(out, "${}\r\n", a.len());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

fn classify_lanchat(line: &[u8]) -> Event<'_> {
    // The server writes `type` first (serde's internally tagged enums do), so a prefix test
    // classifies without parsing; anything else falls back to a real JSON parse.
    const P: &[u8] = b"{\"type\":\"";
    let Some(rest) = line.strip_prefix(P) else {
        return classify_lanchat_slow(line);
    };
    if rest.starts_with(b"message\"") || rest.starts_with(b"direct\"") {
        return match parse_payload(line) {
            Some(p) => Event::Delivery(p),
            None => Event::Other,
        };
    }
    if rest.starts_with(b"ok\"") || rest.starts_with(b"welcome\"") {
        Event::Reply { ok: true }
    } else if rest.starts_with(b"error\"") {
        Event::Reply { ok: false }
    } else if rest.starts_with(b"ping\"") {
        Event::Ping(b"")
    } else if rest.starts_with(b"bye\"") {
        Event::Closed
    } else {
        Event::Other
    }
}

fn classify_lanchat_slow(line: &[u8]) -> Event<'_> {
    if line.is_empty() {
        return Event::Other;
    }
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) else {
        return Event::Other;
    };
    match v.get("type").and_then(|t| t.as_str()) {
        Some("message" | "direct") => match parse_payload(line) {
            Some(p) => Event::Delivery(p),
            None => Event::Other,
        },
        Some("ok" | "welcome") => Event::Reply { ok: true },
        Some("error") => Event::Reply { ok: false },
        Some("ping") => Event::Ping(b""),
        Some("bye") => Event::Closed,
        _ => Event::Other,
    }
}

fn classify_redis(line: &[u8]) -> Event<'_> {
    // Lines of a RESP2 push `*3 $7 message $N channel $N payload`: only the payload line starts
    // with `^`. Integer replies (`:N`) answer PUBLISH, SUBSCRIBE and UNSUBSCRIBE.
    match line.first() {
        Some(b'^') => match parse_payload(line) {
            Some(p) => Event::Delivery(p),
            None => Event::Other,
        },
        Some(b':' | b'+') => Event::Reply { ok: true },
        Some(b'-') => Event::Reply { ok: false },
        _ => Event::Other,
    }
}

fn classify_irc(line: &[u8]) -> Event<'_> {
    if let Some(arg) = line.strip_prefix(b"PING ") {
        return Event::Ping(arg);
    }
    if line.starts_with(b"ERROR") {
        return Event::Closed;
    }
    // `:nick!user@host PRIVMSG target :text`: the command is the second word.
    let Some(sp) = line.iter().position(|&b| b == b' ') else {
        return Event::Other;
    };
    if line[sp + 1..].starts_with(b"PRIVMSG ") {
        return match parse_payload(&line[sp..]) {
            Some(p) => Event::Delivery(p),
            None => Event::Other,
        };
    }
    Event::Other
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trips_and_pads() {
        let p = Payload {
            sid: 7,
            seq: 12345,
            ts_ns: 987654321012,
        };
        let mut out = Vec::new();
        write_payload(&mut out, p, 64);
        assert_eq!(out.len(), 64);
        assert_eq!(parse_payload(&out), Some(p));
        assert_eq!(parse_payload(b"^1:2^"), None);
        assert_eq!(parse_payload(b"^1::3^"), None);
    }

    #[test]
    fn classifies_each_protocol() {
        let msg =
            br#"{"type":"message","id":"019a","ts":1,"room":"r0","from":"a","text":"^1:2:3^xx"}"#;
        let p = Payload {
            sid: 1,
            seq: 2,
            ts_ns: 3,
        };
        assert_eq!(Proto::Lanchat.classify(msg), Event::Delivery(p));
        let reordered = br#"{"room":"r0","type":"message","text":"^1:2:3^"}"#;
        assert_eq!(Proto::Lanchat.classify(reordered), Event::Delivery(p));
        assert_eq!(
            Proto::Lanchat.classify(br#"{"type":"ok","cmd":"say"}"#),
            Event::Reply { ok: true }
        );
        assert_eq!(
            Proto::Lanchat.classify(br#"{"type":"ping"}"#),
            Event::Ping(b"")
        );
        assert_eq!(Proto::Redis.classify(b"^1:2:3^x"), Event::Delivery(p));
        assert_eq!(Proto::Redis.classify(b":12"), Event::Reply { ok: true });
        assert_eq!(Proto::Redis.classify(b"$7"), Event::Other);
        assert_eq!(
            Proto::Irc.classify(b":a!~a@localhost PRIVMSG #r0 :^1:2:3^xx"),
            Event::Delivery(p)
        );
        assert_eq!(Proto::Irc.classify(b"PING :srv"), Event::Ping(b":srv"));
        assert_eq!(
            Proto::Irc.classify(b":srv 001 a :Welcome ^1:2:3^"),
            Event::Other
        );
    }

    #[test]
    fn encodes_resp() {
        let mut out = Vec::new();
        Proto::Redis.room_message(&mut out, "r0", b"hi");
        assert_eq!(out, b"*3\r\n$7\r\nPUBLISH\r\n$2\r\nr0\r\n$2\r\nhi\r\n");
    }
}
