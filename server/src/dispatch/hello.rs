//! `hello`: the checks before a session is registered (protocol version, server password, the
//! nick, the registration budget, a registered nick's secret), then the registration itself.

use std::time::Instant;

use lanchat_protocol::validate::{check_nick, name_key};
use lanchat_protocol::{
    ByeReason, Command, ErrorCode, Hello, RequestId, ServerFrame, Welcome, PROTOCOL_VERSION,
};
use subtle::ConstantTimeEq;
use tracing::info;

use super::{truncate_bytes, Client, End, Refused, Step, MAX_CLIENT_BYTES};
use crate::admission::{Permit, Source};
use crate::logsafe;

impl Client {
    /// A request before a successful `hello`: only `hello` (and `pong`) is allowed.
    pub(super) fn before_hello(
        &mut self,
        re: Option<RequestId>,
        command: Command,
        now: Instant,
    ) -> Step {
        match command {
            Command::Hello(hello) => self.hello(re, hello, now),
            Command::Pong {} => Step::Next,
            _ => {
                let refusal = (
                    ErrorCode::NotRegistered,
                    "send hello before anything else".into(),
                );
                self.error(re, refusal, now).into()
            }
        }
    }

    fn hello(&mut self, re: Option<RequestId>, hello: Hello, now: Instant) -> Step {
        let config = &self.shared.config;
        if hello.protocol.is_some_and(|v| v != PROTOCOL_VERSION) {
            let message = format!("this server speaks protocol {PROTOCOL_VERSION}");
            self.error(re, (ErrorCode::ProtocolUnsupported, message.clone()), now);
            return Step::End(End::Bye(ByeReason::ProtocolUnsupported, message));
        }
        if let Some(expected) = &config.password {
            let source = self.permit.as_ref().map_or(Source::Unknown, Permit::source);
            let admission = &self.shared.admission;
            let refused = match admission.password_allowed(source, now) {
                Err(wait) => Some(format!(
                    "too many wrong passwords from your address; try again in {} s",
                    wait.as_secs().max(1)
                )),
                Ok(()) => {
                    let given = hello.password.as_deref().unwrap_or("");
                    let right = bool::from(given.as_bytes().ct_eq(expected.as_bytes()));
                    if !right {
                        admission.password_failed(source, now);
                    }
                    (!right).then(|| "wrong or missing password".to_owned())
                }
            };
            if let Some(message) = refused {
                info!(peer = %self.peer, %source, "authentication failed");
                self.error(re, (ErrorCode::AuthFailed, message.clone()), now);
                return Step::End(End::Bye(ByeReason::AuthFailed, message));
            }
        }
        if let Err(refusal) = check_nick(&hello.nick) {
            return self.error(re, refusal, now).into();
        }
        // Arriving tells the default room, and leaving tells it again: a registration is an
        // event, so that reconnecting in a loop cannot flood anyone's screen. Checked here,
        // taken once registered (a refused nick costs nothing).
        let source = self.permit.as_ref().map_or(Source::Unknown, Permit::source);
        let nick_key = name_key(&hello.nick);
        let events = &self.shared.budgets.events;
        if let Err(wait) = events.charge(source, &nick_key, 0.0, now) {
            let refusal = (
                ErrorCode::RateLimited,
                "too many registrations from your address; try again later".to_owned(),
            );
            let refused = Refused {
                refusal,
                retry_after: Some(wait),
            };
            return self.refused(re, refused, now).into();
        }
        // A registered nick needs its secret (checked off this thread), and its holder must go.
        let hello = match self.hello_account(re.as_ref(), hello, now) {
            Ok(hello) => hello,
            Err(step) => return step,
        };
        let config = &self.shared.config;
        // `"autojoin":false` (extension): registered in no room (a bot with rooms of its own, a
        // client about to rejoin its rooms), and nobody is told.
        let autojoin = hello.autojoin.unwrap_or(true);
        // Encoded before the lock is taken; queued under it, ahead of every event.
        let welcome = ServerFrame::Welcome(Welcome {
            re: re.clone(),
            protocol: PROTOCOL_VERSION,
            server: lanchat_protocol::server_string(),
            name: config.name.clone(),
            session: uuid::Uuid::new_v4().to_string(),
            nick: hello.nick.clone(),
            rooms: match autojoin {
                true => vec![config.default_room.clone()],
                false => Vec::new(),
            },
            motd: config.motd.clone(),
            limits: config.limits,
            cluster: config.cluster.as_ref().map(|c| c.name.clone()),
        })
        .encode_line();
        let (id, mailbox) = (self.id, self.outbox.clone());
        let permit = &mut self.permit;
        let (accounts, proven) = (&self.shared.accounts, self.proven.as_deref());
        let registered = self.shared.chat.apply(&self.outbox, |st| {
            // Again under the chat lock: the nick may have been registered since it was looked at.
            accounts.table().admits(&hello.nick, proven, None)?;
            let (who, effects) = st.register(id, &hello.nick, mailbox, welcome, autojoin)?;
            // Before the welcome can reach the client: from then on it is not waiting any more.
            if let Some(permit) = permit {
                permit.registered();
            }
            Ok((who, effects))
        });
        match registered {
            Ok(who) => {
                let client =
                    truncate_bytes(hello.client.as_deref().unwrap_or(""), MAX_CLIENT_BYTES);
                // The client string is whatever the peer sent: escaped, so it cannot forge lines.
                let client = logsafe::field(client);
                info!(peer = %self.peer, nick = %hello.nick, %client, "registered");
                self.shared
                    .budgets
                    .events
                    .force(source, &nick_key, 1.0, now);
                self.registered = Some(who);
                self.nick_key = nick_key;
                Step::Next
            }
            Err(refusal) => self.error(re, refusal, now).into(),
        }
    }
}
