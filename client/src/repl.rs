//! The REPL: rustyline on its own thread. Lines typed go to the session through a channel; the
//! session prints through rustyline's external printer, which draws above the prompt so a
//! half-typed line survives incoming messages. The session publishes the prompt (the current
//! room) and the words to complete through [`Shared`].
//!
//! After each line the thread waits briefly for the session to acknowledge it, so that the next
//! prompt already shows the room a `/join` or `/switch` moved to. Nothing typed meanwhile is lost:
//! the keys wait in the terminal (not echoed) or in rustyline's kept read buffer (feature
//! `buffer-redux`) for the next prompt. Each line goes to the session with the room its prompt
//! named ([`Typed`]), since the room can change while a prompt is shown (a `/join` typed while
//! offline is done on reconnecting) and rustyline cannot redraw a prompt it is reading under.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::time::Duration;

use nix::sys::termios::{self, SetArg, Termios};
use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{ColorMode, CompletionType, Config, Context, Editor, ExternalPrinter, Helper};
use tokio::sync::mpsc;

use crate::commands::{self, Action, COMMANDS};
use crate::echo;
use crate::output::Screen;
use crate::Error;

/// Input history entries kept on disk.
pub const HISTORY_SIZE: usize = 1000;
/// How long the prompt waits for the session to finish a line before it is shown again.
const ACK_WAIT: Duration = Duration::from_millis(800);

/// A line typed, and the room its prompt named (where plain text goes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Typed {
    pub line: String,
    /// `None` for a line read without a prompt (a script's stdin): it goes to the current room.
    pub room: Option<String>,
}

impl From<String> for Typed {
    fn from(line: String) -> Self {
        Typed { line, room: None }
    }
}

impl From<&str> for Typed {
    fn from(line: &str) -> Self {
        line.to_owned().into()
    }
}

/// What the session tells the REPL thread.
#[derive(Debug)]
pub struct Shared {
    /// The prompt and the room it names.
    prompt: Mutex<(String, Option<String>)>,
    words: Mutex<Words>,
    ack: Mutex<Option<std_mpsc::Sender<()>>>,
    /// The activity line above the prompt, and the room switch keys.
    status: status::StatusLine,
}

#[derive(Debug, Default, Clone)]
struct Words {
    nicks: Vec<String>,
    rooms: Vec<String>,
}

impl Default for Shared {
    fn default() -> Self {
        Shared::new()
    }
}

impl Shared {
    pub fn new() -> Self {
        Shared {
            prompt: Mutex::new(("> ".into(), None)),
            words: Mutex::new(Words::default()),
            ack: Mutex::new(None),
            status: status::StatusLine::default(),
        }
    }

    /// Set the prompt, the room it names, and the completion words (nicks of the current room,
    /// room names).
    pub fn publish(
        &self,
        prompt: String,
        room: Option<String>,
        nicks: Vec<String>,
        rooms: Vec<String>,
    ) {
        *self.prompt.lock().expect("prompt lock") = (prompt, room);
        *self.words.lock().expect("words lock") = Words { nicks, rooms };
    }

    /// The session has finished with the last line.
    pub fn ack(&self) {
        if let Some(tx) = &*self.ack.lock().expect("ack lock") {
            let _ = tx.send(());
        }
    }
}

/// Completion of commands, room names (after the commands that take one) and nicks.
struct ChatHelper {
    shared: Arc<Shared>,
}

impl ChatHelper {
    fn candidates(&self, line: &str, pos: usize) -> (usize, Vec<Pair>) {
        let before = &line[..pos];
        let start = before.rfind(char::is_whitespace).map_or(0, |i| i + 1);
        let word = &before[start..];
        let words = self.shared.words.lock().expect("words lock").clone();
        let pair = |s: String| Pair {
            display: s.clone(),
            replacement: s,
        };
        if start == 0 && word.starts_with('/') {
            let found = COMMANDS
                .iter()
                .filter(|(c, _, _)| c.starts_with(word))
                .map(|(c, _, _)| pair(format!("{c} ")))
                .collect();
            return (0, found);
        }
        let first = before.split_whitespace().next().unwrap_or("");
        let arg_index = before[..start].split_whitespace().count();
        let takes_room = matches!(first, "/join" | "/leave" | "/switch" | "/who") && arg_index == 1;
        let lower = word.trim_start_matches('#').to_lowercase();
        if takes_room {
            let found = words
                .rooms
                .iter()
                .filter(|r| r.to_lowercase().starts_with(&lower))
                .map(|r| pair(r.clone()))
                .collect();
            return (start, found);
        }
        if word.is_empty() {
            return (start, Vec::new());
        }
        let at_line_start = start == 0;
        let found = words
            .nicks
            .iter()
            .filter(|n| n.to_lowercase().starts_with(&word.to_lowercase()))
            .map(|n| {
                pair(if at_line_start {
                    format!("{n}: ")
                } else {
                    n.clone()
                })
            })
            .collect();
        (start, found)
    }
}

impl Completer for ChatHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        Ok(self.candidates(line, pos))
    }
}

impl Hinter for ChatHelper {
    type Hint = String;
}

impl Highlighter for ChatHelper {
    fn highlight_prompt<'b, 's: 'b, 'p: 'b>(
        &'s self,
        prompt: &'p str,
        default: bool,
    ) -> Cow<'b, str> {
        // The activity line above the prompt may have changed since the line was started.
        match self.shared.status.redraw(prompt).filter(|_| default) {
            Some(drawn) => Cow::Owned(drawn),
            None => Cow::Borrowed(prompt),
        }
    }
}

impl Validator for ChatHelper {}
impl Helper for ChatHelper {}

/// The running REPL: lines typed arrive on `input`; print through `screen`.
pub struct Repl {
    pub input: mpsc::Receiver<Typed>,
    pub screen: PrinterScreen,
    pub shared: Arc<Shared>,
}

/// Prints above the prompt through rustyline's external printer.
pub struct PrinterScreen {
    printer: Box<dyn ExternalPrinter + Send>,
}

impl Screen for PrinterScreen {
    fn out(&mut self, text: &str) {
        let _ = self.printer.print(format!("{text}\n"));
    }

    fn err(&mut self, text: &str) {
        self.out(text);
    }
}

/// Where input history lives: `$XDG_DATA_HOME/lanchat/history`, else
/// `~/.local/share/lanchat/history`.
pub fn history_path() -> Option<PathBuf> {
    let base = crate::config::xdg_home("XDG_DATA_HOME", ".local/share")?;
    Some(base.join("lanchat").join("history"))
}

/// Start the REPL thread; `shared` should already hold the first prompt.
pub fn start(history: Option<PathBuf>, shared: Arc<Shared>) -> Result<Repl, Error> {
    let (input_tx, input) = mpsc::channel(64);
    let (printer_tx, printer_rx) = std_mpsc::channel();
    let (ack_tx, ack_rx) = std_mpsc::channel();
    *shared.ack.lock().expect("ack lock") = Some(ack_tx);
    let thread_shared = shared.clone();
    std::thread::Builder::new()
        .name("repl".into())
        .spawn(move || {
            let editor = match editor(&thread_shared, history.as_deref()) {
                Ok(mut e) => match e.create_external_printer() {
                    Ok(p) => {
                        // A second printer (the same pipe) redraws the activity line.
                        if let Ok(nudge) = e.create_external_printer() {
                            thread_shared.status.set_nudge(Box::new(nudge));
                        }
                        let _ = printer_tx.send(Ok(Box::new(p) as Box<dyn ExternalPrinter + Send>));
                        e
                    }
                    Err(err) => {
                        let _ = printer_tx.send(Err(err.to_string()));
                        return;
                    }
                },
                Err(err) => {
                    let _ = printer_tx.send(Err(err.to_string()));
                    return;
                }
            };
            read_lines(editor, &thread_shared, history.as_deref(), input_tx, ack_rx);
        })
        .map_err(|e| Error::Fatal(format!("cannot start the input thread: {e}")))?;
    let printer = printer_rx
        .recv()
        .map_err(|_| Error::Fatal("the input thread ended".into()))?
        .map_err(|e| Error::Fatal(format!("cannot set up the terminal: {e}")))?;
    Ok(Repl {
        input,
        screen: PrinterScreen { printer },
        shared,
    })
}

fn editor(
    shared: &Arc<Shared>,
    history: Option<&Path>,
) -> rustyline::Result<Editor<ChatHelper, DefaultHistory>> {
    let config = Config::builder()
        .max_history_size(HISTORY_SIZE)?
        .history_ignore_dups(true)?
        .history_ignore_space(true)
        // Added by hand in `read_lines`: a line that holds a room key is not kept on disk.
        .auto_add_history(false)
        .completion_type(CompletionType::List)
        // The activity line is drawn by the highlighter (`highlight_prompt`), which rustyline
        // calls only with colours on; it adds no colour of its own, so NO_COLOR still holds.
        .color_mode(ColorMode::Forced)
        .build();
    let mut editor = Editor::with_config(config)?;
    editor.set_helper(Some(ChatHelper {
        shared: shared.clone(),
    }));
    status::bind_keys(&mut editor, shared);
    if let Some(path) = history {
        // A missing file is the normal first run.
        let _ = editor.load_history(path);
    }
    Ok(editor)
}

fn read_lines(
    mut editor: Editor<ChatHelper, DefaultHistory>,
    shared: &Shared,
    history: Option<&Path>,
    input: mpsc::Sender<Typed>,
    acks: std_mpsc::Receiver<()>,
) {
    // A half-typed line kept across a room switch key, and the cursor's place in it.
    let mut kept: Option<(String, usize)> = None;
    loop {
        let (prompt, room) = shared.prompt.lock().expect("prompt lock").clone();
        let columns = editor.dimensions().map_or(0, |(c, _)| usize::from(c));
        let prompt = shared.status.prompt(&prompt, columns);
        let read = match kept.take() {
            Some((line, at)) => editor.readline_with_initial(&prompt, line.split_at(at)),
            None => editor.readline(&prompt),
        };
        match read {
            Ok(line) => {
                let rows = status::rows_taken(&prompt, &line, columns);
                if let Some((to, at)) = shared.status.take_switch() {
                    // Not entered: the line comes back at the next prompt, in the new room.
                    write_terminal(&echo::erase_rows(rows));
                    kept = Some((line, at));
                    while acks.try_recv().is_ok() {}
                    if input.blocking_send(format!("/{to}").into()).is_err() {
                        return;
                    }
                    let _quiet = NoEcho::start();
                    let _ = acks.recv_timeout(ACK_WAIT);
                    continue;
                }
                if echo::is_echoed(&line) && columns > 0 {
                    write_terminal(&echo::erase_rows(rows));
                } else if prompt.contains('\n') && columns > 0 {
                    write_terminal(&status::drop_status_row(rows));
                }
                if !commands::holds_key(&line) {
                    let _ = editor.add_history_entry(line.as_str());
                }
                if let Some(path) = history {
                    if let Some(dir) = path.parent() {
                        let _ = std::fs::create_dir_all(dir);
                    }
                    let _ = editor.save_history(path);
                }
                let quit = matches!(commands::parse(&line), Ok(Some(Action::Quit(_))));
                while acks.try_recv().is_ok() {}
                if input.blocking_send(Typed { line, room }).is_err() || quit {
                    return;
                }
                // Keys typed during the wait stay in the terminal for the next prompt; not
                // echoed, they do not garble the screen.
                let _quiet = NoEcho::start();
                let _ = acks.recv_timeout(ACK_WAIT);
            }
            Err(ReadlineError::Interrupted) => {
                println!("(type /quit or press Ctrl-D to leave)");
            }
            Err(ReadlineError::Eof) => {
                let _ = input.blocking_send("/quit".into());
                return;
            }
            Err(e) => {
                eprintln!("lanchat: input error: {e}");
                return;
            }
        }
    }
}

/// Write escape sequences to the terminal (stdout), at once.
fn write_terminal(seq: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(seq.as_bytes());
    let _ = stdout.flush();
}

/// Ask for a password on the terminal: `prompt` on stderr, the line read from stdin without
/// echo. Used before the REPL starts.
pub fn read_password(prompt: &str) -> std::io::Result<String> {
    use std::io::{BufRead, Write};
    let mut stderr = std::io::stderr();
    stderr.write_all(prompt.as_bytes())?;
    stderr.flush()?;
    let quiet = NoEcho::start();
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    drop(quiet);
    stderr.write_all(b"\n")?;
    if read? == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "end of input",
        ));
    }
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

/// Turns the terminal's echo off between two prompts, and back on when dropped. The kernel
/// keeps what is typed meanwhile; rustyline reads it at the next prompt (it switches modes with
/// `TCSADRAIN`, which keeps pending input).
struct NoEcho {
    saved: Option<Termios>,
}

impl NoEcho {
    fn start() -> Self {
        let saved = termios::tcgetattr(std::io::stdin()).ok();
        if let Some(t) = &saved {
            let mut quiet = t.clone();
            quiet.local_flags.remove(termios::LocalFlags::ECHO);
            let _ = termios::tcsetattr(std::io::stdin(), SetArg::TCSANOW, &quiet);
        }
        NoEcho { saved }
    }
}

impl Drop for NoEcho {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            let _ = termios::tcsetattr(std::io::stdin(), SetArg::TCSADRAIN, t);
        }
    }
}

/// Puts the terminal back as it was when dropped, whatever state the input thread left it in
/// (the process may end while rustyline holds the terminal in raw mode).
pub struct TerminalGuard {
    saved: Option<Termios>,
}

impl TerminalGuard {
    pub fn save() -> Self {
        // stdin may not be a terminal, which tcgetattr reports by failing.
        let saved = termios::tcgetattr(std::io::stdin()).ok();
        TerminalGuard { saved }
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            // rustyline turns bracketed paste on while it reads; turn it off in case it was
            // interrupted.
            use std::io::{IsTerminal, Write};
            let mut stdout = std::io::stdout();
            if stdout.is_terminal() {
                let _ = stdout.write_all(b"\x1b[?2004l");
                let _ = stdout.flush();
            }
            let _ = termios::tcsetattr(std::io::stdin(), SetArg::TCSANOW, t);
        }
    }
}

mod status;

#[cfg(test)]
mod tests {
    use super::*;

    fn helper(nicks: &[&str], rooms: &[&str]) -> ChatHelper {
        let shared = Arc::new(Shared::new());
        shared.publish(
            "#lobby> ".into(),
            Some("lobby".into()),
            nicks.iter().map(|s| s.to_string()).collect(),
            rooms.iter().map(|s| s.to_string()).collect(),
        );
        ChatHelper { shared }
    }

    fn complete(h: &ChatHelper, line: &str) -> (usize, Vec<String>) {
        let (start, pairs) = h.candidates(line, line.len());
        (start, pairs.into_iter().map(|p| p.replacement).collect())
    }

    #[test]
    fn completes_commands_rooms_and_nicks() {
        let h = helper(&["bob", "Bea", "carl"], &["lobby", "dev", "design"]);
        assert_eq!(complete(&h, "/jo"), (0, vec!["/join ".to_string()]));
        assert_eq!(complete(&h, "/h").1, vec!["/history ", "/help "]);
        assert_eq!(
            complete(&h, "/join de"),
            (6, vec!["dev".to_string(), "design".to_string()])
        );
        assert_eq!(complete(&h, "/switch #lo"), (8, vec!["lobby".to_string()]));
        assert_eq!(
            complete(&h, "b"),
            (0, vec!["bob: ".to_string(), "Bea: ".to_string()])
        );
        assert_eq!(complete(&h, "hi ca"), (3, vec!["carl".to_string()]));
        assert_eq!(complete(&h, "/msg b").1, vec!["bob", "Bea"]);
        assert_eq!(complete(&h, "hi ").1, Vec::<String>::new());
    }

    #[test]
    fn history_goes_under_xdg_data_home() {
        // Only checks the shape; the variable itself is process-global, so it is not changed here.
        let path = history_path().unwrap();
        assert!(path.ends_with("lanchat/history"));
    }
}
