//! Chat logs (off by default; `log = true` in the config or `--log`): plain text, one line per
//! message with its local date and time, in `$XDG_DATA_HOME/lanchat/logs/<server>/<room>.log`
//! and, for direct messages, `.../<server>/dm/<nick>.log` (files 0600, directories 0700).
//! Every server string goes through the display filter ([`crate::sanitize`]) first, so a log
//! is as safe to `cat` as the screen; later lines of a text are indented behind `| `.
//!
//! A log that would grow past its cap (`log_max_mib`, [`MAX_MIB`] by default) is first renamed
//! to `<name>.log.1`, replacing the one before, so a room's log takes at most twice the cap.
//!
//! The recent history shown at every start is not logged twice: a message not newer than the
//! last line a log held when this run first wrote to it is left out (compared to the second, by
//! its server timestamp in local time; so a message of that same second that arrived while no
//! client ran is left out too).

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use chrono::{Local, NaiveDateTime, TimeZone};
use lanchat_protocol::validate::name_key;
use lanchat_protocol::{Direct, Message};

use crate::sanitize;

/// The default cap of one log, in MiB.
pub const MAX_MIB: f64 = 10.0;

/// The logs of one server.
#[derive(Debug)]
pub struct Logs {
    dir: PathBuf,
    /// The size past which a log is rotated, if any.
    max: Option<u64>,
    /// Set after the first failure, which is told once; logging stops.
    failed: bool,
    /// For each file written in this run, the time of its last line before.
    floors: HashMap<PathBuf, Option<String>>,
}

impl Logs {
    /// `$XDG_DATA_HOME/lanchat/logs/<server>` (else under `~/.local/share`).
    pub fn dir_for(server: &str) -> Option<PathBuf> {
        let base = crate::config::xdg_home("XDG_DATA_HOME", ".local/share")?;
        Some(base.join("lanchat/logs").join(file_name(server)))
    }

    pub fn new(dir: PathBuf) -> Logs {
        Logs {
            dir,
            max: None,
            failed: false,
            floors: HashMap::new(),
        }
    }

    /// Rotating each log before it grows past `max` bytes.
    pub fn rotate_at(mut self, max: Option<u64>) -> Logs {
        self.max = max;
        self
    }

    /// Log a room message. `Some(problem)` the first time writing fails.
    pub fn message(&mut self, msg: &Message) -> Option<String> {
        let head = match msg.text.strip_prefix("/me ") {
            Some(action) => (format!("* {} ", sanitize::name(&msg.from)), action),
            None => (
                format!("<{}> ", sanitize::name(&msg.from)),
                msg.text.as_str(),
            ),
        };
        let file = format!("{}.log", file_name(&name_key(&msg.room)));
        self.append(Path::new(&file), msg.ts, &head.0, head.1)
    }

    /// Log a direct message, sent or received, in the log of the other nick.
    pub fn direct(&mut self, dm: &Direct, me: &str) -> Option<String> {
        let peer = if name_key(&dm.from) == name_key(me) {
            &dm.to
        } else {
            &dm.from
        };
        let file = format!("{}.log", file_name(&name_key(peer)));
        let head = format!("<{}> ", sanitize::name(&dm.from));
        self.append(&Path::new("dm").join(file), dm.ts, &head, &dm.text)
    }

    fn append(&mut self, file: &Path, ts_ms: u64, head: &str, text: &str) -> Option<String> {
        if self.failed {
            return None;
        }
        let at = Local
            .timestamp_millis_opt(ts_ms as i64)
            .single()
            .map_or_else(NaiveDateTime::default, |t| t.naive_local());
        let path = self.dir.join(file);
        let floor = self
            .floors
            .entry(path.clone())
            .or_insert_with(|| last_stamp(&path));
        if floor
            .as_deref()
            .is_some_and(|floor| at.format(STAMP).to_string().as_str() <= floor)
        {
            return None;
        }
        let entry = line(at, head, text);
        let written = (|| {
            let dir = path.parent().expect("a log file is in a directory");
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
            let size = std::fs::metadata(&path).map_or(0, |m| m.len());
            if self
                .max
                .is_some_and(|max| size > 0 && size + entry.len() as u64 > max)
            {
                let mut old = path.clone().into_os_string();
                old.push(".1");
                std::fs::rename(&path, old)?;
            }
            let mut out = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&path)?;
            out.write_all(entry.as_bytes())
        })();
        written.err().map(|e| {
            self.failed = true;
            format!(
                "cannot write the log {}: {e}; logging stopped",
                path.display()
            )
        })
    }
}

const STAMP: &str = "%Y-%m-%d %H:%M:%S";

/// The time of the last entry of the log at `path` (read from its end), if any.
fn last_stamp(path: &Path) -> Option<String> {
    let mut file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(8192))).ok()?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail).ok()?;
    let tail = String::from_utf8_lossy(&tail);
    tail.lines().rev().find_map(|l| {
        let stamp = l.get(..19)?;
        let shape = stamp.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            10 => b == b' ',
            13 | 16 => b == b':',
            _ => b.is_ascii_digit(),
        });
        shape.then(|| stamp.to_owned())
    })
}

/// One log entry (with its newline): `YYYY-MM-DD HH:MM:SS head text`, later lines of the text
/// indented behind `| `.
pub fn line(at: NaiveDateTime, head: &str, text: &str) -> String {
    let stamp = at.format(STAMP).to_string();
    let mut out = format!("{stamp} {head}");
    for (i, part) in sanitize::lines(text).iter().enumerate() {
        if i > 0 {
            out.push('\n');
            out.push_str(&" ".repeat(stamp.len() + 1));
            out.push_str(crate::render::CONTINUATION);
        }
        out.push_str(part);
    }
    out.push('\n');
    out
}

/// A name made safe as one path component: nothing but letters, digits and `-_.:`, and no
/// leading dot.
fn file_name(name: &str) -> String {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | ':') {
                c
            } else {
                '_'
            }
        })
        .collect();
    match safe.strip_prefix('.') {
        Some(rest) => format!("_{rest}"),
        None if safe.is_empty() => "_".into(),
        None => safe,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> NaiveDateTime {
        chrono::DateTime::from_timestamp(1_704_203_110, 0)
            .unwrap()
            .naive_utc()
    }

    #[test]
    fn lines_have_date_time_and_filtered_text() {
        assert_eq!(line(at(), "<bob> ", "hi"), "2024-01-02 13:45:10 <bob> hi\n");
        assert_eq!(
            line(at(), "<bob> ", "a\x1b]0;x\x07\nb"),
            "2024-01-02 13:45:10 <bob> a<U+001B>]0;x<U+0007>\n                    | b\n"
        );
    }

    #[test]
    fn names_cannot_leave_their_directory() {
        assert_eq!(file_name("../etc"), "_._etc");
        assert_eq!(file_name("a/b"), "a_b");
        assert_eq!(file_name("127.0.0.1:7878"), "127.0.0.1:7878");
        assert_eq!(file_name(""), "_");
    }

    #[test]
    fn messages_and_dms_land_in_their_files_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("lanchat-logs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut logs = Logs::new(dir.join("srv"));
        let msg = Message {
            id: "x".into(),
            ts: 1_704_203_110_000,
            room: "Lobby".into(),
            from: "bob".into(),
            text: "/me waves".into(),
        };
        assert_eq!(logs.message(&msg), None);
        let dm = Direct {
            id: "y".into(),
            ts: 1_704_203_110_000,
            from: "ann".into(),
            to: "Bob".into(),
            text: "psst".into(),
        };
        assert_eq!(logs.direct(&dm, "ann"), None);
        let room = std::fs::read_to_string(dir.join("srv/lobby.log")).unwrap();
        assert!(room.ends_with(" * bob waves\n"), "{room}");
        let private = dir.join("srv/dm/bob.log");
        assert!(std::fs::read_to_string(&private)
            .unwrap()
            .ends_with(" <ann> psst\n"));
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        // The next run: the history shown again at its start is not logged twice.
        let mut again = Logs::new(dir.join("srv"));
        let older = Message {
            ts: msg.ts - 1000,
            text: "older".into(),
            ..msg.clone()
        };
        let newer = Message {
            ts: msg.ts + 1000,
            text: "newer".into(),
            ..msg.clone()
        };
        for m in [&older, &msg, &newer] {
            assert_eq!(again.message(m), None);
        }
        let room = std::fs::read_to_string(dir.join("srv/lobby.log")).unwrap();
        assert_eq!(room.lines().count(), 2, "{room}");
        assert!(
            !room.contains("older") && room.ends_with(" <bob> newer\n"),
            "{room}"
        );
        assert_eq!(mode(&private), 0o600);
        assert_eq!(mode(&dir.join("srv/dm")), 0o700);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_log_past_its_cap_is_rotated_to_dot_1() {
        let dir = std::env::temp_dir().join(format!("lanchat-rotate-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut logs = Logs::new(dir.clone()).rotate_at(Some(200));
        let say = |i: u64| Message {
            id: format!("m{i}"),
            ts: 1_704_203_110_000 + i * 1000,
            room: "lobby".into(),
            from: "bob".into(),
            text: format!("message {i:02} {}", "x".repeat(40)),
        };
        // Each entry is 78 bytes: two fit in 200, the third starts a new log.
        for i in 0..7 {
            assert_eq!(logs.message(&say(i)), None);
        }
        let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
        let (current, older) = (read("lobby.log"), read("lobby.log.1"));
        assert!(current.len() <= 200 && older.len() <= 200);
        assert_eq!(current.lines().count(), 1, "{current}");
        assert!(current.contains("message 06"), "{current}");
        assert_eq!(older.lines().count(), 2, "{older}");
        assert!(older.contains("message 04") && older.contains("message 05"));
        assert!(!dir.join("lobby.log.2").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
