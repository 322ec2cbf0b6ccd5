//! Cluster mode's side of a client: a nick is claimed cluster-wide (see `crate::cluster`'s
//! nick bucket) before `hello` or `nick` takes it here. The claim is a [`Job`] the session awaits
//! off the chat lock; the request is then re-run, and the claim kept only if the request took
//! the nick (a refused `hello` or `nick` gives it back, and a changed nick gives the old one back).

use std::time::Instant;

use lanchat_protocol::validate::{check_nick, check_text, name_key};
use lanchat_protocol::{Command, Request, RequestId};

use super::{Client, Job, Step};
use crate::admission::{Permit, Source};
use crate::state::Refusal;

impl Client {
    /// The command, or the claim its nick needs first.
    #[allow(clippy::result_large_err)]
    pub(super) fn claim_first(
        &mut self,
        re: Option<&RequestId>,
        command: Command,
        now: Instant,
    ) -> Result<Command, Step> {
        if self.shared.chat.cluster().is_none() {
            return Ok(command);
        }
        let nick = match (&command, self.registered.is_some()) {
            (Command::Hello(hello), false) => &hello.nick,
            (Command::Nick { nick, .. }, true) => nick,
            (Command::Dm { .. }, true) => return self.direct_first(re, command, now),
            _ => return Ok(command),
        };
        let key = name_key(nick);
        // A `nick` to the same folded nick (`bob` to `BOB`) needs no claim; nor a request
        // re-run after its claim.
        if self.claimed.as_deref() == Some(key.as_str()) {
            return Ok(command);
        }
        // Checked here so that an invalid nick is refused as on one node, not claimed.
        if lanchat_protocol::validate::check_nick(nick).is_err() {
            return Ok(command);
        }
        Err(Step::Account(Box::new(Job::Claim {
            re: re.cloned(),
            key,
            nick: nick.clone(),
            then: command,
        })))
    }

    /// A claim's outcome: refused, or re-run the request holding it.
    pub(super) fn claimed(
        &mut self,
        re: Option<RequestId>,
        key: String,
        claimed: Result<(), Refusal>,
        then: Command,
        now: Instant,
    ) -> Step {
        if let Err(refusal) = claimed {
            return self.error(re, refusal, now).into();
        }
        let previous = self.claimed.replace(key.as_str().into());
        let step = self.request(Request::new(re, then), now, false);
        let took = self.registered.is_some() && self.nick_key == key;
        if let Some(link) = self.shared.chat.cluster() {
            if took {
                if let Some(old) = previous.filter(|old| **old != *key) {
                    link.release(&old);
                }
            } else {
                link.release(&key);
                self.claimed = previous;
            }
        }
        step
    }

    /// A `dm` to a nick this node does not hold goes through the node that holds it (after the
    /// same checks and charge as on one node); any other goes the usual way.
    #[allow(clippy::result_large_err)]
    fn direct_first(
        &mut self,
        re: Option<&RequestId>,
        command: Command,
        now: Instant,
    ) -> Result<Command, Step> {
        let Command::Dm { to, text } = &command else {
            return Ok(command);
        };
        let limits = &self.shared.config.limits;
        if self.shared.chat.lock().holds_nick(to)
            || check_text(text, limits.max_text).is_err()
            || check_nick(to).is_err()
        {
            return Ok(command);
        }
        let source = self.permit.as_ref().map_or(Source::Unknown, Permit::source);
        let charged = self
            .shared
            .budgets
            .messages
            .charge(source, &self.nick_key, 1.0, now);
        if charged.is_err() {
            // Refused with its retry hint by the usual way, which charges nothing more.
            return Ok(command);
        }
        let Some(from) = self.nick() else {
            return Ok(command);
        };
        let Command::Dm { to, text } = command else {
            unreachable!("matched above")
        };
        Err(Step::Account(Box::new(Job::Direct {
            re: re.cloned(),
            from,
            to,
            text,
        })))
    }

    /// Give back the nick this session holds cluster-wide (it is leaving).
    pub(super) fn release_claim(&mut self) {
        if let (Some(key), Some(link)) = (self.claimed.take(), self.shared.chat.cluster()) {
            link.release(&key);
        }
    }
}
