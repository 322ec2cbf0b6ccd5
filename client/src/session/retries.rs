//! The session's second tries: taking back the nick asked for (after being given `ann_2`), and
//! direct messages typed offline whose recipient was not back yet. Both on bounded back-offs.

use super::*;

/// Taking the nick back (after being given `ann_2`): the first try after this, then doubling up
/// to the cap, at most this many tries. An event that frees the nick makes the next try now.
const RECLAIM_FIRST: Duration = Duration::from_secs(2);
const RECLAIM_MAX: Duration = Duration::from_secs(60);
const RECLAIM_TRIES: u32 = 8;

/// A direct message typed while offline, refused as `no_such_nick` on reconnecting: its
/// recipient may not be back yet. Tried again after 4 s, doubling up to 30 s (and at once when
/// they appear), seven sends in all (about two minutes), then given up with its text repeated.
pub(super) const DM_RETRY_FIRST: Duration = Duration::from_secs(4);
const DM_RETRY_TRIES: u32 = 7;
const DM_RETRY_MAX: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub(super) struct UndeliveredDm {
    pub(super) to: String,
    pub(super) cmd: Command,
    pub(super) at: Instant,
    pub(super) tries: u32,
}

/// The next try at taking back the nick asked for.
#[derive(Debug, Clone, Copy)]
pub(super) struct Reclaim {
    pub(super) at: Instant,
    pub(super) tries: u32,
}

impl Session {
    /// Plan to take back the nick asked for, if the server gave another.
    pub(super) fn plan_reclaim(&mut self) {
        self.reclaim = match (self.model.wanted_nick(), self.reclaim) {
            (None, _) => None,
            (Some(_), Some(planned)) => Some(planned),
            (Some(_), None) => Some(Reclaim {
                at: Instant::now() + RECLAIM_FIRST,
                tries: 0,
            }),
        };
    }

    /// Ask for the nick back; on refusal, try again later (bounded), then say so and stop.
    pub(super) async fn reclaim_nick(&mut self) -> Flow {
        let (Some(wanted), Some(mut reclaim)) = (
            self.model.wanted_nick().map(str::to_owned),
            self.reclaim.take(),
        ) else {
            return Flow::Continue;
        };
        // A registered nick of ours is taken back with its secret.
        let cmd = Command::Nick {
            secret: self.link.secrets().get(&self.link.server(), &wanted),
            nick: wanted.clone(),
        };
        let reply = match self.link.request(cmd.clone()).await {
            Ok(reply) => reply,
            Err(Lost(closed)) => return Flow::Lost(closed),
        };
        match reply.frame {
            Some(ServerFrame::Error(_)) | None => {
                reclaim.tries += 1;
                if reclaim.tries < RECLAIM_TRIES {
                    let wait = RECLAIM_FIRST.saturating_mul(1 << reclaim.tries.min(10));
                    reclaim.at = Instant::now() + wait.min(RECLAIM_MAX);
                    self.reclaim = Some(reclaim);
                } else {
                    self.model.forget_wanted_nick();
                    self.show(Show::Info(format!(
                        "{wanted} is still taken; stopped trying (/nick {wanted} to try again)"
                    )));
                }
                Flow::Continue
            }
            Some(frame) => {
                let outcome = self.model.apply_reply_to(&cmd, frame);
                match self.apply(outcome).await {
                    Ok(()) => Flow::Continue,
                    Err(Lost(closed)) => Flow::Lost(closed),
                }
            }
        }
    }

    /// Send again the direct messages whose time has come; keep those still refused as
    /// `no_such_nick`, with a longer wait, until their tries run out.
    pub(super) async fn retry_dms(&mut self) -> Flow {
        let now = Instant::now();
        let (due, later): (VecDeque<_>, VecDeque<_>) = std::mem::take(&mut self.undelivered)
            .into_iter()
            .partition(|d| d.at <= now);
        self.undelivered = later;
        let mut due = due;
        while let Some(mut dm) = due.pop_front() {
            let reply = match self.link.submit(&dm.cmd).await {
                Ok(reply) => reply,
                Err(Lost(closed)) => {
                    // Not sent again: the server may have delivered it before the loss.
                    self.show(Show::Error(format!(
                        "the connection was lost before the server confirmed the message to {}; \
                         it may not have been sent: {}",
                        dm.to,
                        dm_text(&dm.cmd)
                    )));
                    self.undelivered.extend(due);
                    return Flow::Lost(closed);
                }
            };
            let absent = matches!(&reply.frame,
                Some(ServerFrame::Error(e)) if e.code == ErrorCode::NoSuchNick);
            dm.tries += 1;
            if absent && dm.tries < DM_RETRY_TRIES {
                let wait = DM_RETRY_FIRST.saturating_mul(1 << (dm.tries - 1).min(10));
                dm.at = Instant::now() + wait.min(DM_RETRY_MAX);
                self.undelivered.push_back(dm);
                continue;
            }
            if let Flow::Lost(closed) = self.on_sent(&dm.cmd, reply).await {
                self.undelivered.extend(due);
                return Flow::Lost(closed);
            }
        }
        Flow::Continue
    }
}

/// The text of a direct message, for messages about it.
pub(super) fn dm_text(cmd: &Command) -> &str {
    match cmd {
        Command::Dm { text, .. } => text,
        _ => "",
    }
}
