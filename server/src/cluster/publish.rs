//! The node's one publisher: events leave in the order the chat state made them (the order of
//! the bounded queue [`super::Link::route`] fills under the chat lock), and JetStream's acks are
//! awaited in that order, many at a time. A held `say` reply is sent once its message is stored;
//! if it is not stored, the sender gets `unavailable` instead.

use std::time::Duration;

use async_nats::jetstream;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::{FuturesOrdered, StreamExt};
use futures::FutureExt;
use lanchat_protocol::{ErrorFrame, RequestId, ServerFrame};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::wire::Origin;
use crate::outbox::Outbox;
use crate::state::SessionId;

/// Acks awaited at once at most; beyond, the queue fills and new `say`s are refused.
const IN_FLIGHT: usize = 1024;
/// How long a publish and its ack may take before the message counts as not stored. Also the
/// event's deadline (see `wire::DEADLINE`): stored later, it is dropped by every node, so that
/// a `say` answered `unavailable` never appears (one the client library kept while NATS was
/// away is sent when it comes back).
const ACK_WAIT: Duration = Duration::from_secs(5);

/// One event for the stream.
pub struct Outbound {
    pub subject: String,
    pub origin: Origin,
    pub payload: Bytes,
    pub held: Option<Held>,
    /// A join: the room key and the session arriving (see `Roster::arriving`).
    pub arriving: Option<(String, crate::state::SessionId)>,
}

/// A `say` reply that waits for its message to be stored.
pub struct Held {
    pub actor: Outbox,
    pub reply: Option<Bytes>,
    pub re: Option<RequestId>,
}

impl Held {
    fn settle(self, stored: bool) {
        match (stored, self.reply) {
            (true, Some(reply)) => {
                self.actor.push(reply);
            }
            (true, None) => {}
            (false, _) => {
                let (code, message) = super::unavailable();
                self.actor.push(
                    ServerFrame::Error(ErrorFrame {
                        code,
                        message,
                        re: self.re,
                        retry_after_ms: None,
                    })
                    .encode_line(),
                );
            }
        }
    }
}

type Ack = BoxFuture<'static, (bool, Option<Held>, Option<(String, SessionId)>)>;

/// A join that will not come back from the stream: its session stops waiting for it (and gets
/// the room's events from here on).
fn arrive_anyway(shared: &crate::Shared, arriving: Option<(String, SessionId)>) {
    if let Some((key, session)) = arriving {
        shared.chat.lock().roster().arrived(&key, session);
    }
}

pub async fn run(
    client: async_nats::Client,
    js: jetstream::Context,
    mut queue: mpsc::Receiver<Outbound>,
    shared: std::sync::Arc<crate::Shared>,
    shutdown: CancellationToken,
) {
    let mut acks: FuturesOrdered<Ack> = FuturesOrdered::new();
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            Some((stored, held, arriving)) = acks.next(), if !acks.is_empty() => {
                if let Some(held) = held {
                    held.settle(stored);
                }
                if !stored {
                    arrive_anyway(&shared, arriving);
                }
            }
            next = queue.recv(), if acks.len() < IN_FLIGHT => {
                let Some(out) = next else { return };
                let Outbound { subject, mut origin, payload, held, arriving } = out;
                // Not handed to the client while it is disconnected: it would keep the message
                // and send it on reconnecting, after its sender was told it was not stored.
                if client.connection_state() != async_nats::connection::State::Connected {
                    warn!("cluster: NATS is unreachable; an event was not published");
                    if let Some(held) = held {
                        held.settle(false);
                    }
                    arrive_anyway(&shared, arriving);
                    continue;
                }
                origin.deadline_ms = unix_ms() + ACK_WAIT.as_millis() as u64;
                let sent = tokio::time::timeout(
                    ACK_WAIT,
                    js.publish_with_headers(subject, origin.headers(), payload),
                )
                .await;
                match sent {
                    Ok(Ok(ack)) => acks.push_back(
                        async move {
                            let stored = matches!(tokio::time::timeout(ACK_WAIT, ack).await, Ok(Ok(_)));
                            if !stored {
                                warn!("cluster: JetStream did not acknowledge an event in time");
                            }
                            (stored, held, arriving)
                        }
                        .boxed(),
                    ),
                    _ => {
                        warn!("cluster: an event could not be published to NATS");
                        if let Some(held) = held {
                            held.settle(false);
                        }
                        arrive_anyway(&shared, arriving);
                    }
                }
            }
        }
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
