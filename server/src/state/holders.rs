//! Who holds a nick: for a `hello` that takes a registered nick over from the session holding it
//! (see `crate::accounts`).

use lanchat_protocol::validate::name_key_ref;

use super::{SessionId, State};

impl<M: Clone> State<M> {
    /// The session holding `nick` (in any case), if one does.
    pub fn nick_holder(&self, nick: &str) -> Option<SessionId> {
        self.nicks.get(name_key_ref(nick).as_ref()).copied()
    }
}
