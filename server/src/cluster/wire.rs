//! What a node puts on NATS and reads back: subject and key names made from the cluster's name
//! and a room's or nick's folded key, and the headers an event carries. Pure functions.

use std::fmt::Write as _;

use async_nats::HeaderMap;

use crate::state::SessionId;

/// Header: the node that published an event.
pub const ORIGIN: &str = "Lanchat-Origin";
/// Header: the session on the origin node that caused the event (it is not sent the event).
pub const EXCEPT: &str = "Lanchat-Except";
/// Header: when the origin stops waiting for JetStream's ack (Unix ms, origin's clock); an event
/// stored later was answered `unavailable` and is dropped by every node.
pub const DEADLINE: &str = "Lanchat-Deadline";

/// A cluster name is part of stream, bucket and subject names: letters, digits, `_` and `-`,
/// 1 to 32 of them.
pub fn check_cluster_name(name: &str) -> Result<(), String> {
    let ok = (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "--cluster-name: {name:?} must be 1 to 32 of A-Z a-z 0-9 _ -"
        ))
    }
}

/// A folded name (a room's or a nick's, any Unicode) as a subject token or KV key: the
/// lowercase hex of its UTF-8, which holds none of `.`, `*`, `>` or spaces.
pub fn token(key: &str) -> String {
    let mut out = String::with_capacity(key.len() * 2);
    for b in key.bytes() {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The folded name a [`token`] was made from; `None` for anything else.
pub fn untoken(token: &str) -> Option<String> {
    if token.len() % 2 != 0 {
        return None;
    }
    let bytes = (0..token.len())
        .step_by(2)
        .map(|i| {
            let pair = token.get(i..i + 2)?;
            // Only what `token` writes: uppercase would make a second token for one name, and
            // `from_str_radix` takes a sign.
            if !pair
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            {
                return None;
            }
            u8::from_str_radix(pair, 16).ok()
        })
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

/// A NATS URL with its user and password (or token) replaced by `***`, for logs and errors.
pub fn without_secret(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let Some((_, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    let scheme = if scheme.is_empty() {
        String::new()
    } else {
        format!("{scheme}://")
    };
    format!("{scheme}***@{host}")
}

/// The names one cluster uses on NATS.
#[derive(Debug, Clone)]
pub struct Names {
    /// `lanchat.<name>`: every subject starts so.
    prefix: String,
    pub stream: String,
    pub nick_bucket: String,
    /// Registered nicks (see `accounts`): `lanchat_<name>_accounts`.
    pub account_bucket: String,
    /// The cluster's one TLS certificate and key (see `identity`): `lanchat_<name>_identity`.
    pub identity_bucket: String,
}

impl Names {
    pub fn new(cluster: &str) -> Names {
        Names {
            prefix: format!("lanchat.{cluster}"),
            stream: format!("LANCHAT_{cluster}"),
            nick_bucket: format!("lanchat_{cluster}_nicks"),
            account_bucket: format!("lanchat_{cluster}_accounts"),
            identity_bucket: format!("lanchat_{cluster}_identity"),
        }
    }

    /// Every subject of the stream.
    pub fn stream_subjects(&self) -> Vec<String> {
        vec![
            format!("{}.room.*", self.prefix),
            format!("{}.event.*", self.prefix),
            self.user_subject(),
            format!("{}.rules.*", self.prefix),
        ]
    }

    /// A room's privacy changes (`cluster::privacy`): `lanchat.<name>.rules.<token>`, a JSON
    /// record for the nodes, never a client's line. Apart from the events so that the stream's
    /// per-subject limit keeps the last `--history` of them whatever the room's traffic.
    pub fn rules_subject(&self, room_key: &str) -> String {
        format!("{}.rules.{}", self.prefix, token(room_key))
    }

    /// The room key of a room's rules subject; `None` for any other subject.
    pub fn rules_of(&self, subject: &str) -> Option<String> {
        untoken(
            subject
                .strip_prefix(&self.prefix)?
                .strip_prefix(".rules.")?,
        )
    }

    /// A room's messages: `lanchat.<name>.room.<token>`. Only messages, so that the stream's
    /// per-subject limit keeps exactly `--history` of them.
    pub fn room_subject(&self, room_key: &str) -> String {
        format!("{}.room.{}", self.prefix, token(room_key))
    }

    /// A room's other events (joins, leaves, topics): `lanchat.<name>.event.<token>`, limited
    /// apart from the messages. One stream: its order is still one order per room.
    pub fn event_subject(&self, room_key: &str) -> String {
        format!("{}.event.{}", self.prefix, token(room_key))
    }

    /// The room key of a room's message or event subject; `None` for any other subject.
    pub fn room_of(&self, subject: &str) -> Option<String> {
        let rest = subject.strip_prefix(&self.prefix)?;
        let token = rest
            .strip_prefix(".room.")
            .or_else(|| rest.strip_prefix(".event."))?;
        untoken(token)
    }

    /// A user's nick, status and quit events (they go to whoever shares a room with the user).
    pub fn user_subject(&self) -> String {
        format!("{}.user", self.prefix)
    }

    /// Core NATS: each node's heartbeat.
    pub fn alive_subject(&self) -> String {
        format!("{}.alive", self.prefix)
    }

    /// Core NATS: a request every node answers with its own members (see `roster`).
    pub fn members_subject(&self) -> String {
        format!("{}.members", self.prefix)
    }

    /// Core NATS: node `node` is asked to end its session holding a nick and give the nick up
    /// (a `hello` on another node proved the nick's secret; see `accounts`).
    pub fn replace_subject(&self, node: &str) -> String {
        format!("{}.node.{node}.replace", self.prefix)
    }
}

/// Who published an event and which of its sessions caused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub node: String,
    pub except: SessionId,
    /// See [`DEADLINE`]; 0: none.
    pub deadline_ms: u64,
}

impl Origin {
    pub fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(ORIGIN, self.node.as_str());
        headers.insert(EXCEPT, self.except.to_string().as_str());
        if self.deadline_ms > 0 {
            headers.insert(DEADLINE, self.deadline_ms.to_string().as_str());
        }
        headers
    }

    /// The origin of a stored event; `None` when its headers are not a node's.
    pub fn parse(headers: Option<&HeaderMap>) -> Option<Origin> {
        let headers = headers?;
        let node = headers.get(ORIGIN)?.as_str().to_owned();
        let except = headers.get(EXCEPT)?.as_str().parse().ok()?;
        let deadline_ms = match headers.get(DEADLINE) {
            Some(d) => d.as_str().parse().ok()?,
            None => 0,
        };
        (!node.is_empty()).then_some(Origin {
            node,
            except,
            deadline_ms,
        })
    }

    /// Whether an event stored at `stored_ms` (Unix ms, NATS's clock) counts: not after its
    /// deadline.
    pub fn in_time(&self, stored_ms: u64) -> bool {
        self.deadline_ms == 0 || stored_ms <= self.deadline_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_any_unicode_and_are_subject_safe() {
        for key in ["lobby", "straße", "日本語", "a.b*c>d e", "ünï-cødé_1"] {
            let t = token(key);
            assert!(t
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
            assert_eq!(untoken(&t).as_deref(), Some(key));
        }
        assert_eq!(token("ab"), "6162");
    }

    #[test]
    fn untoken_refuses_what_token_cannot_make() {
        for bad in ["6", "zz", "6G", "616A", "ff", "+1"] {
            assert_eq!(untoken(bad), None, "{bad}");
        }
    }

    #[test]
    fn cluster_names() {
        for good in ["lanchat", "a", "B_2-x", &"x".repeat(32)] {
            assert!(check_cluster_name(good).is_ok(), "{good}");
        }
        for bad in ["", "a.b", "a b", "ö", "a*", &"x".repeat(33)] {
            assert!(check_cluster_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn subjects_and_room_keys() {
        let names = Names::new("dev");
        assert_eq!(names.stream, "LANCHAT_dev");
        assert_eq!(names.nick_bucket, "lanchat_dev_nicks");
        assert_eq!(names.account_bucket, "lanchat_dev_accounts");
        assert_eq!(names.identity_bucket, "lanchat_dev_identity");

        assert_eq!(names.replace_subject("n1"), "lanchat.dev.node.n1.replace");
        let subject = names.room_subject("café");
        assert_eq!(subject, "lanchat.dev.room.636166c3a9");
        assert_eq!(names.room_of(&subject).as_deref(), Some("café"));
        let events = names.event_subject("café");
        assert_eq!(events, "lanchat.dev.event.636166c3a9");
        assert_eq!(names.room_of(&events).as_deref(), Some("café"));
        assert_eq!(names.room_of("lanchat.dev.user"), None);
        let rules = names.rules_subject("café");
        assert_eq!(rules, "lanchat.dev.rules.636166c3a9");
        assert_eq!(names.rules_of(&rules).as_deref(), Some("café"));
        assert_eq!(names.room_of(&rules), None);
        assert_eq!(names.rules_of(&events), None);
        assert!(names
            .stream_subjects()
            .contains(&"lanchat.dev.rules.*".to_owned()));
        assert_eq!(names.room_of("lanchat.other.room.6162"), None);
    }

    #[test]
    fn origin_headers_round_trip() {
        let mut origin = Origin {
            node: "n1".into(),
            except: 42,
            deadline_ms: 0,
        };
        assert_eq!(Origin::parse(Some(&origin.headers())), Some(origin.clone()));
        assert!(origin.in_time(u64::MAX));
        origin.deadline_ms = 1_000;
        assert_eq!(Origin::parse(Some(&origin.headers())), Some(origin.clone()));
        assert!(origin.in_time(1_000) && !origin.in_time(1_001));
        assert_eq!(Origin::parse(None), None);
        let mut partial = HeaderMap::new();
        partial.insert(ORIGIN, "n1");
        assert_eq!(Origin::parse(Some(&partial)), None);
        partial.insert(EXCEPT, "x");
        assert_eq!(Origin::parse(Some(&partial)), None);
        partial.insert(EXCEPT, "1");
        partial.insert(DEADLINE, "soon");
        assert_eq!(Origin::parse(Some(&partial)), None);
    }

    #[test]
    fn secrets_in_urls_are_not_shown() {
        assert_eq!(without_secret("nats://u:p@h:4222"), "nats://***@h:4222");
        assert_eq!(without_secret("nats://tok@h"), "nats://***@h");
        assert_eq!(without_secret("u:p@h:4222"), "***@h:4222");
        assert_eq!(without_secret("nats://h:4222"), "nats://h:4222");
    }
}
