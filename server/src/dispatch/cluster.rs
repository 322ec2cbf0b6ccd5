//! Cluster mode's side of a client: a nick is claimed cluster-wide (see `crate::cluster`'s
//! nick bucket) before `hello` or `nick` takes it here. The claim is a [`Job`] the session awaits
//! off the chat lock; the request is then re-run, and the claim kept only if the request took
//! the nick (a refused `hello` or `nick` gives it back, and a changed nick gives the old one back).

use std::time::Instant;

use lanchat_protocol::validate::name_key;
use lanchat_protocol::{Command, Request, RequestId};

use super::{Client, Job, Step};
use crate::state::Refusal;

impl Client {
    /// The command, or the claim its nick needs first.
    #[allow(clippy::result_large_err)]
    pub(super) fn claim_first(
        &mut self,
        re: Option<&RequestId>,
        command: Command,
    ) -> Result<Command, Step> {
        if self.shared.chat.cluster().is_none() {
            return Ok(command);
        }
        let nick = match (&command, self.registered.is_some()) {
            (Command::Hello(hello), false) => &hello.nick,
            (Command::Nick { nick, .. }, true) => nick,
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
        Err(Step::Account(Job::Claim {
            re: re.cloned(),
            key,
            nick: nick.clone(),
            then: command,
        }))
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
        let previous = self.claimed.replace(key.clone());
        let step = self.request(Request::new(re, then), now, false);
        let took = self.registered.is_some() && self.nick_key == key;
        if let Some(link) = self.shared.chat.cluster() {
            if took {
                if let Some(old) = previous.filter(|old| *old != key) {
                    link.release(&old);
                }
            } else {
                link.release(&key);
                self.claimed = previous;
            }
        }
        step
    }

    /// Give back the nick this session holds cluster-wide (it is leaving).
    pub(super) fn release_claim(&mut self) {
        if let (Some(key), Some(link)) = (self.claimed.take(), self.shared.chat.cluster()) {
            link.release(&key);
        }
    }
}
