//! The session while the link reconnects: lines typed meanwhile are queued, `/quit` quits.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};

use crate::commands::{self, Action};
use crate::link::Reconnecting;
use crate::model::Show;
use crate::output::{Mode, Output};
use crate::repl::{Shared, Typed};

/// The session while the link reconnects: waits watching the input, and shows what the link
/// reports.
pub(super) struct Offline<'a> {
    pub(super) output: &'a mut Output,
    pub(super) shared: Option<&'a Shared>,
    pub(super) input: &'a mut mpsc::Receiver<Typed>,
    pub(super) queued_input: &'a mut VecDeque<Typed>,
}

impl Reconnecting for Offline<'_> {
    /// Interactively, lines typed meanwhile are queued (and /quit quits); a script just waits.
    async fn wait(&mut self, pause: Duration) -> bool {
        let deadline = Instant::now() + pause;
        if self.output.mode() != Mode::Interactive {
            sleep_until(deadline).await;
            return true;
        }
        loop {
            tokio::select! {
                _ = sleep_until(deadline) => return true,
                line = self.input.recv() => {
                    let Some(line) = line else { return false };
                    if let Some(shared) = self.shared {
                        shared.ack();
                    }
                    match commands::parse(&line.line) {
                        Ok(Some(Action::Quit(_))) => return false,
                        Ok(None) => {}
                        _ => {
                            self.output.info("not connected; this will be sent once reconnected");
                            self.queued_input.push_back(line);
                        }
                    }
                }
            }
        }
    }

    fn show(&mut self, show: Vec<Show>, me: &str) {
        self.output.show_all(show, me);
    }
}
