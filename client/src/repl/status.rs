//! The activity line above the prompt, and the keys that switch rooms (Ctrl-N, Ctrl-P).
//!
//! rustyline reads the prompt once per line, and works out where the cursor goes from its width.
//! So the prompt is given two rows, the activity line then the room (`#lobby> `), and the
//! highlighter (which draws the prompt at every repaint) puts the newest activity line in the
//! first row: its width changes nothing below it as long as it fits in one row, so it is cut to
//! the terminal's width. To repaint while the user is idle, the session prints through a spare
//! external printer a cursor-up and a newline, which leave the cursor where it was; rustyline
//! then redraws the prompt. (At the very top of a cleared screen the cursor cannot go up, and
//! the prompt moves down a row.)
//!
//! A switch key accepts the line as it is; the REPL thread sees the request, sends `/N` instead,
//! and shows the next prompt with the half-typed line and the cursor where they were.
//!
//! Alt-1..9 switch to the room at that position, as in irssi. Published rustyline 19 reads Alt
//! and a digit as a numeric argument before it looks at custom bindings (`keymap.rs`,
//! `InputState::emacs`); the vendored copy lets a binding of ours win (vendor/README.md). `/1`,
//! `/2`... do the same.

use std::sync::Mutex;

use rustyline::{
    Cmd, ConditionalEventHandler, Editor, Event, EventContext, EventHandler, ExternalPrinter,
    KeyEvent, RepeatCount,
};

use super::{ChatHelper, Shared};
use crate::echo;

/// What the session last said about the rooms, and a switch asked for by a key.
#[derive(Default)]
pub(super) struct StatusLine {
    state: Mutex<State>,
    /// Prints the cursor moves that make rustyline redraw the prompt.
    nudge: Mutex<Option<Box<dyn ExternalPrinter + Send>>>,
}

#[derive(Debug, Default)]
struct State {
    activity: Option<String>,
    /// The 1-based position of the current room, and how many rooms are joined.
    position: (usize, usize),
    columns: usize,
    /// The room position a key asked for, and where the cursor was in the line.
    switch: Option<(usize, usize)>,
}

impl std::fmt::Debug for StatusLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusLine")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl StatusLine {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("status lock")
    }

    pub(super) fn set_nudge(&self, printer: Box<dyn ExternalPrinter + Send>) {
        *self.nudge.lock().expect("nudge lock") = Some(printer);
    }

    /// The prompt to read the next line with: the activity line (if any) above `prompt`.
    pub(super) fn prompt(&self, prompt: &str, columns: usize) -> String {
        let mut state = self.state();
        state.columns = columns;
        match &state.activity {
            Some(line) => format!("{}\n{prompt}", fit(line, columns)),
            None => prompt.to_owned(),
        }
    }

    /// The prompt as drawn now: its first row replaced by the newest activity line.
    pub(super) fn redraw(&self, prompt: &str) -> Option<String> {
        let (_, room) = prompt.rsplit_once('\n')?;
        let state = self.state();
        let line = state.activity.as_deref().unwrap_or("");
        Some(format!("{}\n{room}", fit(line, state.columns)))
    }

    pub(super) fn take_switch(&self) -> Option<(usize, usize)> {
        self.state().switch.take()
    }
}

impl Shared {
    /// The activity line (`None`: no row for it) and the current room's position among the
    /// joined ones; the prompt is redrawn when the line changed.
    pub fn set_activity(&self, line: Option<String>, position: (usize, usize)) {
        let changed = {
            let mut state = self.status.state();
            state.position = position;
            let changed = state.activity != line;
            state.activity = line;
            changed
        };
        if changed {
            if let Some(printer) = &mut *self.status.nudge.lock().expect("nudge lock") {
                let _ = printer.print("\x1b[1A\n".into());
            }
        }
    }
}

/// `line` cut to fit in one row of `columns`.
fn fit(line: &str, columns: usize) -> String {
    let room = columns.saturating_sub(1).max(8);
    if crate::sanitize::width(line) <= room {
        return line.to_owned();
    }
    let mut used = 0;
    let mut cut: String = line
        .chars()
        .take_while(|c| {
            used += crate::sanitize::char_width(*c);
            used < room
        })
        .collect();
    cut.push('~');
    cut
}

/// The rows the prompt (`rows` of them) and the line typed after it took.
pub(super) fn rows_taken(prompt: &str, line: &str, columns: usize) -> usize {
    let (above, last) = prompt.rsplit_once('\n').unwrap_or(("", prompt));
    let status = if prompt.contains('\n') {
        above.split('\n').count()
    } else {
        0
    };
    status + echo::rows_taken(last, line, columns)
}

/// The escape sequence that removes the activity row above the line just entered (`rows`
/// rows with the prompt), leaving the cursor below that line: the command stays on screen, the
/// activity line of that moment does not.
pub(super) fn drop_status_row(rows: usize) -> String {
    let below = rows - 1;
    let mut seq = format!("\x1b[{rows}A\r\x1b[M");
    if below > 0 {
        seq.push_str(&format!("\x1b[{below}B"));
    }
    seq
}

/// Which room a key goes to.
#[derive(Debug, Clone, Copy)]
enum Target {
    Next,
    Previous,
    /// The room at this position (1-based).
    Number(usize),
}

struct SwitchKey {
    shared: std::sync::Arc<Shared>,
    target: Target,
}

impl ConditionalEventHandler for SwitchKey {
    fn handle(&self, _: &Event, _: RepeatCount, _: bool, ctx: &EventContext) -> Option<Cmd> {
        let mut state = self.shared.status.state();
        let (at, count) = state.position;
        let to = match self.target {
            // No room there: nothing happens (as in irssi), rather than a numeric argument
            // that would repeat the next key typed.
            Target::Number(n) if n > count.max(1) => return Some(Cmd::Noop),
            Target::Number(n) if n == at => return Some(Cmd::Noop),
            // With one room, Ctrl-N and Ctrl-P keep their usual meaning (input history).
            _ if count < 2 => return None,
            Target::Next => at % count + 1,
            Target::Previous if at <= 1 => count,
            Target::Previous => at - 1,
            Target::Number(n) => n,
        };
        state.switch = Some((to, ctx.pos()));
        Some(Cmd::AcceptLine)
    }
}

/// Ctrl-N and Ctrl-P switch to the next and the previous room (around the end), Alt-1..9 to
/// the room of that number (irssi's keys; rustyline is patched for them: vendor/README.md).
pub(super) fn bind_keys<H: rustyline::history::History>(
    editor: &mut Editor<ChatHelper, H>,
    shared: &std::sync::Arc<Shared>,
) {
    let mut bind = |key: KeyEvent, target: Target| {
        let handler = SwitchKey {
            shared: shared.clone(),
            target,
        };
        editor.bind_sequence(key, EventHandler::Conditional(Box::new(handler)));
    };
    bind(KeyEvent::ctrl('N'), Target::Next);
    bind(KeyEvent::ctrl('P'), Target::Previous);
    for n in 1..=9 {
        let digit = char::from(b'0' + n as u8);
        bind(KeyEvent::alt(digit), Target::Number(n));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_activity_line_fits_one_row() {
        assert_eq!(fit("[1:lobby 2:dev(3)]", 80), "[1:lobby 2:dev(3)]");
        assert_eq!(fit("[1:lobby 2:dev(3)]", 10), "[1:lobby~");
        // Wide characters count two columns: the cut line takes 9 of them, not 9 characters.
        assert_eq!(fit("[1:大厅 2:开发(3)]", 10), "[1:大厅 ~");
    }

    #[test]
    fn the_prompt_gets_a_row_for_activity_redrawn_with_the_newest() {
        let status = StatusLine::default();
        assert_eq!(status.prompt("#lobby> ", 80), "#lobby> ");
        status.state().activity = Some("[1:lobby 2:dev]".into());
        let prompt = status.prompt("#lobby> ", 80);
        assert_eq!(prompt, "[1:lobby 2:dev]\n#lobby> ");
        status.state().activity = Some("[1:lobby 2:dev(1)]".into());
        assert_eq!(
            status.redraw(&prompt).as_deref(),
            Some("[1:lobby 2:dev(1)]\n#lobby> ")
        );
        assert_eq!(status.redraw("#lobby> "), None);
        assert_eq!(rows_taken(&prompt, "hi", 80), 2);
        assert_eq!(rows_taken("#lobby> ", "hi", 80), 1);
        assert_eq!(drop_status_row(2), "\x1b[2A\r\x1b[M\x1b[1B");
    }
}
