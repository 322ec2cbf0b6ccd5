//! DM conversations in the session: `/query`, `/reply`, `/close` (and `/leave` in a
//! conversation) are done here, and plain text typed in a conversation becomes a direct message
//! to its partner. The state is the model's ([`crate::model::queries`]).

use lanchat_protocol::Command;

use crate::commands::{Action, Conversation};
use crate::link::Lost;
use crate::model::queries;
use crate::model::Show;
use crate::repl::Typed;

use super::{Flow, Session};

/// Rooms fetched at the start for completion after `/join`: one page, the server's largest.
pub(super) const ROOM_NAMES_FETCHED: u32 = lanchat_protocol::ROOMS_PAGE_MAX as u32;

impl Session {
    /// Learn the server's room names (one page) so that `/join` can complete them.
    pub(super) async fn fetch_room_names(&mut self) -> Result<(), Lost> {
        let rooms = Command::Rooms {
            after: None,
            limit: Some(ROOM_NAMES_FETCHED),
        };
        if let Some(frame) = self.link.request(rooms).await?.frame {
            self.model.rooms_heard(&frame);
        }
        Ok(())
    }

    /// What `action` becomes in the conversation the prompt named: `Err` when it was done here.
    pub(super) fn in_conversation(
        &mut self,
        action: Action,
        typed: &Typed,
    ) -> Result<Action, Flow> {
        // The partner of the conversation the prompt named (a script's line: the one talked in).
        let partner = match &typed.room {
            Some(name) => queries::partner(name).map(|nick| self.model.partner_now(nick)),
            None => self.model.active_query().map(str::to_owned),
        };
        let done = match action {
            Action::Say(text) if partner.is_some() => {
                let to = partner.unwrap_or_default();
                return Ok(Action::Msg { to, text });
            }
            Action::Me(text) if partner.is_some() => {
                let to = partner.unwrap_or_default();
                return Ok(Action::Msg {
                    to,
                    text: format!("/me {text}"),
                });
            }
            Action::Leave(None) if partner.is_some() => self.model.close_query(partner.as_deref()),
            Action::Conversation(Conversation::Query(nick)) => Some(self.model.query(&nick)),
            Action::Conversation(Conversation::Close(nick)) => {
                let nick = nick.or(partner);
                Some(self.model.close_query(nick.as_deref()).unwrap_or_else(|| {
                    Show::Error(match nick {
                        Some(nick) => format!("no conversation with {nick} is open"),
                        None => "you are not in a conversation; /query NICK starts one".into(),
                    })
                }))
            }
            Action::Conversation(Conversation::Reply(text)) => {
                let Some(to) = self.model.reply_target().map(str::to_owned) else {
                    let hint = "no direct message to reply to yet".to_owned();
                    self.failed(Show::Error(hint));
                    return Err(Flow::Continue);
                };
                match text {
                    Some(text) => return Ok(Action::Msg { to, text }),
                    None => Some(self.model.query(&to)),
                }
            }
            other => return Ok(other),
        };
        match done {
            Some(show @ Show::Error(_)) => self.failed(show),
            Some(show) => self.show(show),
            None => {}
        }
        self.publish();
        Err(Flow::Continue)
    }
}
