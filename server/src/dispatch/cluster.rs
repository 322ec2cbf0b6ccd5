//! Cluster mode's side of a client: a nick is claimed cluster-wide (see `crate::cluster`'s
//! nick bucket) before `hello` or `nick` takes it here. The claim is a [`Job`] the session awaits
//! off the chat lock; the request is then re-run, and the claim kept only if the request took
//! the nick (a refused `hello` or `nick` gives it back, and a changed nick gives the old one back).

use std::time::Instant;

use lanchat_protocol::validate::{check_nick, check_text, name_key};
use lanchat_protocol::{Command, ErrorCode, Hello, Request, RequestId};

use super::accounts::Gate;
use super::{Client, Job, Step};
use crate::accounts::Claim;
use crate::admission::{Permit, Source};
use crate::effects::Effects;
use crate::outbox::Outbox;
use crate::state::{Refusal, Registered, State};

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
            // A secret may take over the session of this node that holds the nick: its claim
            // is then handed over (`adopt_claim`), not made.
            (Command::Hello(hello), false)
                if hello.secret.is_some() && self.shared.chat.lock().holds_nick(&hello.nick) =>
            {
                return Ok(command)
            }
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
            let step = match then {
                Command::Hello(hello) if refusal.0 == ErrorCode::NickTaken && !self.replaced => {
                    self.held_elsewhere(re, key, hello, refusal, now)
                }
                _ => self.error(re, refusal, now).into(),
            };
            // A proof or a take-over is for this request only.
            return self.settle(step);
        }
        let previous = self.claimed.replace(key.as_str().into());
        let step = self.request(Request::new(re, then), now, false);
        let step = self.settle(step);
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

    /// A `hello` for a nick another node's session holds. A registered nick is refused as on
    /// one server (`nick_registered` without its secret or with a wrong one); once its secret is
    /// proved (a [`Job::Verify`] first, then the `hello` comes back here), that node is asked to
    /// end its session and give the nick up ([`Job::TakeOver`]), and the `hello` is re-run as
    /// after a take-over on this node. Any other nick stays `refusal` (`nick_taken`).
    fn held_elsewhere(
        &mut self,
        re: Option<RequestId>,
        key: String,
        hello: Hello,
        refusal: Refusal,
        now: Instant,
    ) -> Step {
        let claim = self.shared.accounts.table().claim(&hello.nick, None);
        if !matches!(&claim, Claim::Registered { key: k, .. } if *k == key) {
            return self.error(re, refusal, now).into();
        }
        if self.proven.as_deref() == Some(key.as_str()) {
            return Step::Account(Box::new(Job::TakeOver { re, key, hello }));
        }
        let secret = hello.secret.clone();
        match self.needs_secret(claim, &hello.nick, secret, None, now) {
            Ok(_) => Step::Account(Box::new(Job::TakeOver { re, key, hello })),
            Err(Gate::Refused(refused)) => self.refused(re, refused, now).into(),
            Err(Gate::Verify { secret, hash, key }) => Step::Account(Box::new(Job::Verify {
                re,
                secret,
                hash,
                key,
                then: Command::Hello(hello),
            })),
        }
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

    /// Cluster mode: the session of this node holding `nick` is told to go (taken over with the
    /// secret); its claim passes to this one, so the nick is never free meanwhile.
    pub(super) fn adopt_claim(&mut self, nick: &str) {
        let Some(link) = self.shared.chat.cluster() else {
            return;
        };
        let key = name_key(nick);
        if self.claimed.as_deref() != Some(key.as_str()) && link.hand_over(&key) {
            if let Some(previous) = self.claimed.replace(key.into()) {
                link.release(&previous);
            }
        }
    }

    /// Cluster mode: the claim a `hello` still needs (its nick was held on this node when the
    /// claim was skipped, and no longer is).
    pub(super) fn unclaimed(&self, re: Option<&RequestId>, hello: &Hello) -> Option<Step> {
        self.shared.chat.cluster()?;
        let key = name_key(&hello.nick);
        if self.claimed.as_deref() == Some(key.as_str()) {
            return None;
        }
        Some(Step::Account(Box::new(Job::Claim {
            re: re.cloned(),
            key,
            nick: hello.nick.clone(),
            then: Command::Hello(hello.clone()),
        })))
    }

    /// Remove the departing user. In cluster mode its quit goes to the other nodes too (their
    /// members who shared a room with it are told, and forget it); here it is delivered as on
    /// one node.
    pub(super) fn removed(
        &self,
        state: &mut State<Outbox>,
        who: Registered,
        reason: Option<&str>,
    ) -> Effects {
        let effects = state.remove(who, reason);
        match self.shared.chat.cluster() {
            // A quit's audience is a list of users, which is never refused.
            Some(link) => link
                .route(state, &self.outbox, effects, None)
                .unwrap_or_default(),
            None => effects,
        }
    }

    /// Give back the nick this session holds cluster-wide (it is leaving).
    pub(super) fn release_claim(&mut self) {
        if let (Some(key), Some(link)) = (self.claimed.take(), self.shared.chat.cluster()) {
            link.release(&key);
        }
    }
}
