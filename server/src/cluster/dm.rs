//! Direct messages between nodes: the nick bucket says which node holds the recipient (its
//! value starts with the node id); the sender's node asks that node over core NATS
//! (`lanchat.<name>.node.<id>.dm`, request/reply) to deliver the `direct` line it made, and
//! answers the sender with what came back. Not through the stream: a DM has one reader and no
//! history.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use lanchat_protocol::validate::name_key;
use lanchat_protocol::{ErrorCode, RequestId};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::wire::token;
use super::Joined;
use crate::history::new_message;
use crate::state::{Away, Refusal};
use crate::Shared;

/// How long the sender waits for the recipient's node.
const DM_WAIT: Duration = Duration::from_secs(5);

/// A DM for another node's user.
#[derive(Serialize, Deserialize)]
struct Carry {
    /// The recipient's folded nick.
    to: String,
    /// The `direct` line, made by the sender's node.
    line: String,
}

/// What the recipient's node did with it.
#[derive(Serialize, Deserialize)]
struct Carried {
    delivered: bool,
    /// The recipient's away or busy text, when away or busy with one.
    #[serde(default)]
    away: Option<String>,
    /// The recipient is away or busy, with a text or without. (Not an `Option<Option<_>>` in
    /// `away`: JSON has one `null` for both of its `None`s, and away without a text arrived
    /// as not away. A node without this field tells only an away with a text, as before.)
    #[serde(default)]
    is_away: bool,
}

impl Carried {
    fn new(delivered: bool, away: Away) -> Carried {
        Carried {
            delivered,
            is_away: away.is_some(),
            away: away.flatten(),
        }
    }

    fn away(&self) -> Option<Option<&str>> {
        (self.is_away || self.away.is_some()).then_some(self.away.as_deref())
    }
}

/// The subject a node's DMs arrive on.
pub fn subject(cluster: &str, node: &str) -> String {
    format!("lanchat.{cluster}.node.{node}.dm")
}

/// Send `text` from `from` to `to`, a nick this node does not hold: the `ok` line to request `re`,
/// or the refusal.
pub async fn send(
    client: &async_nats::Client,
    nicks: &async_nats::jetstream::kv::Store,
    cluster: &str,
    re: Option<&RequestId>,
    from: &str,
    to: &str,
    text: &str,
) -> Result<Bytes, Refusal> {
    let nobody = || (ErrorCode::NoSuchNick, format!("nobody is called \"{to}\""));
    let key = name_key(to);
    let entry = tokio::time::timeout(DM_WAIT, nicks.get(token(&key)))
        .await
        .map_err(|_| super::unavailable())?
        .map_err(|_| super::unavailable())?
        .ok_or_else(nobody)?;
    let entry = std::str::from_utf8(&entry).map_err(|_| nobody())?;
    let (node, nick) = entry.split_once('\n').ok_or_else(nobody)?;
    let mut id_buf = Uuid::encode_buffer();
    let (_, sent) = new_message(&mut id_buf, from, text);
    let line = sent.direct_line(nick);
    let carry = Carry {
        to: key,
        line: String::from_utf8_lossy(&line).into_owned(),
    };
    let payload = serde_json::to_vec(&carry).map_err(|_| nobody())?;
    let answer = tokio::time::timeout(
        DM_WAIT,
        client.request(subject(cluster, node), payload.into()),
    )
    .await
    .map_err(|_| super::unavailable())?
    .map_err(|_| nobody())?;
    let carried: Carried = serde_json::from_slice(&answer.payload).map_err(|_| nobody())?;
    if !carried.delivered {
        return Err(nobody());
    }
    Ok(sent.dm_reply_line(re, nick, carried.away()))
}

/// Deliver the DMs other nodes send to this node's users.
pub async fn receive(joined: &Joined, shared: &Shared) {
    let subject = subject(&joined.config.name, &joined.node);
    let Ok(mut requests) = joined.client.subscribe(subject).await else {
        return std::future::pending().await;
    };
    while let Some(request) = requests.next().await {
        let Some(reply) = request.reply else { continue };
        let carried = match serde_json::from_slice::<Carry>(&request.payload) {
            Ok(carry) => {
                let line = Bytes::from(carry.line.into_bytes());
                match shared.chat.deliver_direct(&carry.to, line) {
                    Some(away) => Carried::new(true, away),
                    None => Carried::new(false, None),
                }
            }
            Err(_) => Carried::new(false, None),
        };
        if let Ok(payload) = serde_json::to_vec(&carried) {
            let _ = joined.client.publish(reply, payload.into()).await;
        }
    }
    std::future::pending().await
}

#[cfg(test)]
mod tests {
    use super::Carried;

    fn away(json: &str) -> Option<Option<String>> {
        let carried: Carried = serde_json::from_str(json).unwrap();
        carried.away().map(|t| t.map(str::to_owned))
    }

    /// Away with no text survives the trip (it arrived as not away while `away` was an
    /// `Option<Option<_>>`), and an answer from a node without `is_away` still reads as before.
    #[test]
    fn away_with_and_without_a_text_cross_the_wire() {
        for state in [None, Some(None), Some(Some("lunch".to_owned()))] {
            let json = serde_json::to_string(&Carried::new(true, state.clone())).unwrap();
            assert_eq!(away(&json), state, "{json}");
        }
        assert_eq!(
            away(r#"{"delivered":true,"away":"lunch"}"#),
            Some(Some("lunch".to_owned()))
        );
        assert_eq!(away(r#"{"delivered":true,"away":null}"#), None);
    }
}
