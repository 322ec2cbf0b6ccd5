//! Durable history (`--data-dir`): one append-only JSON Lines file per room, written by a
//! dedicated thread so that fan-out never waits for the disk.
//!
//! Guarantee: accepted messages are written to the kernel in batches, a few milliseconds after
//! they are accepted (so `kill -9` loses nothing but the last few milliseconds), and the files are
//! fsynced at least once a second (so a power cut loses at most about the last second), in the
//! spirit of Redis's `appendfsync everysec`. No message is ever rewritten: once a room's file
//! holds `history` lines it is renamed to `<name>.jsonl.1` (replacing the one before) and a new
//! file is started, so a room keeps between `history` and twice that many lines on disk, each
//! written once. A crash at any point leaves whole files; at start both are read and the newest
//! `history` lines are kept.
//!
//! Topics never stand in the messages' way. A topic change does not go through the writer's
//! queue: it replaces the room's pending topic in a small map beside it (bounded by the number of
//! rooms, not by the number of changes), and the writer rewrites `topics.json` from that map at
//! most once per tick (once a second, after the fsync, and at shutdown). So a flood of topic
//! changes costs one rewrite a second, the queue's bound is spent on messages only, and a message
//! never waits behind metadata work for more than that one rewrite.
//!
//! Rooms come back. A room forgotten from memory (`--room-idle`) is read back through the same
//! queue ([`StoreHandle::load`]): the writer answers once the appends queued before the request
//! are written, so the answer holds every message accepted before it, with the newest topic.
//!
//! Layout of the data directory:
//! - `lock`: held with `flock` by the running server; a second server refuses to start.
//! - `rooms/<name>.jsonl`: one `message` event per line, exactly as sent on the wire, appended to;
//!   `rooms/<name>.jsonl.1`: the lines before those, up to `history` of them.
//! - `topics.json`: `{"<room key>": {"room": "<name>", "topic": "<topic>"}}`, replaced atomically.
//!   A private room's entry also holds its privacy ([`RoomSettings`]: `invite_only`, `key`,
//!   `topic_lock`, `ops`), each field only when set, so files from before private rooms read as
//!   they are and an entry with only a topic is written as before. The key is kept as given (the
//!   file is 0600); it is never logged.
//!
//! Modes, whatever the umask: history is private even on a server with a password, so every file
//! the server creates here is 0600 and every directory 0700. At start, files and `rooms/` left
//! looser by an earlier version are tightened; the data directory itself, if it already existed
//! with a looser mode, is left as the operator made it, with a warning (what it holds is private
//! either way, but its listing is not).

use std::collections::HashMap;
use std::fs::{DirBuilder, File, OpenOptions, Permissions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use lanchat_protocol::Message;
use nix::fcntl::{Flock, FlockArg};
use tracing::{error, info, warn};
use uuid::Uuid;

use crate::history::StoredMessage;
use crate::logsafe;
use crate::state::RoomSettings;

/// The privacy in a `topics.json` entry; default for an entry without any (or unreadable).
fn settings_of(entry: &serde_json::Value) -> RoomSettings {
    serde_json::from_value(entry.clone()).unwrap_or_default()
}

/// A `topics.json` entry: the room's name, its topic and, only when set, its privacy.
fn topic_entry(room: &str, topic: &str, settings: &RoomSettings) -> serde_json::Value {
    let mut entry = serde_json::to_value(settings).unwrap_or_default();
    if let Some(map) = entry.as_object_mut() {
        map.insert("room".into(), room.into());
        map.insert("topic".into(), topic.into());
    }
    entry
}

/// Mode of every file the server creates in the data directory: its owner's only.
pub const FILE_MODE: u32 = 0o600;
/// Mode of the data directory and `rooms/` when the server creates them.
pub const DIR_MODE: u32 = 0o700;

/// Options to create (or open) a file of the data directory with [`FILE_MODE`].
pub(crate) fn private_file() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.mode(FILE_MODE);
    options
}

/// Remove from `path`'s mode any bit `allowed` does not have. Whether it changed anything;
/// only files and directories are touched, never what a symbolic link points to.
fn tighten(path: &Path, allowed: u32) -> std::io::Result<bool> {
    let meta = std::fs::symlink_metadata(path)?;
    let mode = meta.permissions().mode() & 0o7777;
    let regular = meta.file_type().is_file() || meta.file_type().is_dir();
    if !regular || mode & !allowed == 0 {
        return Ok(false);
    }
    std::fs::set_permissions(path, Permissions::from_mode(mode & allowed))?;
    Ok(true)
}

/// Suffix of a room's previous file.
const PREVIOUS: &str = ".1";
/// The writer's tick: the longest it waits before an fsync of what it has written, and the
/// shortest interval between two rewrites of `topics.json`.
const FSYNC_EVERY: Duration = Duration::from_secs(1);
/// After a batch, how long the writer lets the next one gather before it looks again: the
/// delay before accepted messages reach the kernel, well inside the one-second guarantee.
const BATCH_PAUSE: Duration = Duration::from_millis(5);
/// Room files the writer keeps open at most (each is a file descriptor).
pub const MAX_OPEN_FILES: usize = 64;
/// Messages queued toward the writer thread at most; beyond, messages are not persisted (and
/// that is logged) rather than the chat being slowed down. Topics do not count: they wait in
/// [`PendingTopics`].
const QUEUE: usize = 100_000;

/// Why the data directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("data dir {0} is in use by another lanchat-server")]
    Locked(PathBuf),
    #[error("data dir {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What was on disk at start.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Room name and its newest messages, oldest first.
    pub rooms: Vec<(String, Vec<StoredMessage>)>,
    /// Room name and topic.
    pub topics: Vec<(String, String)>,
    /// Room name and privacy, for the rooms that have some.
    pub settings: Vec<(String, RoomSettings)>,
}

/// An opened, locked data directory, not yet writing.
pub struct Store {
    dir: PathBuf,
    /// Held (and the directory locked) for as long as the store is open.
    lock: Flock<File>,
    history: usize,
    /// Line counts of the room files, by file name.
    line_counts: HashMap<String, usize>,
    topics: serde_json::Map<String, serde_json::Value>,
}

enum Op {
    Append {
        room_key: String,
        line: Bytes,
    },
    /// Read a room back: answered after every append queued before it is written.
    Load {
        room_key: String,
        reply: tokio::sync::oneshot::Sender<RoomLoad>,
    },
    Shutdown(std::sync::mpsc::Sender<()>),
}

/// A room read back from disk (see [`StoreHandle::load`]).
#[derive(Debug, Default)]
pub struct RoomLoad {
    /// The room's display name, as its messages or its topic spell it; `None` when the disk
    /// holds nothing of the room.
    pub room: Option<String>,
    /// Its newest `history` messages, oldest first.
    pub messages: Vec<StoredMessage>,
    /// Its topic, empty when none.
    pub topic: String,
    /// Its privacy (default when none).
    pub settings: RoomSettings,
}

/// A room's topic as it goes to `topics.json`: the room's display name and the topic (empty: no
/// topic).
struct TopicEntry {
    room: String,
    topic: String,
    settings: RoomSettings,
}

/// The topics changed since the writer last took them, by room key: only the latest change of a
/// room is kept, so a flood of changes takes the room of one. A std mutex, held for one insert or
/// one swap: `topic` is called under the chat lock and must never wait for the disk.
#[derive(Clone, Default)]
struct PendingTopics(Arc<Mutex<HashMap<String, TopicEntry>>>);

impl PendingTopics {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, TopicEntry>> {
        // A panic while holding it cannot leave the map half-changed: use it anyway.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn set(&self, room_key: String, entry: TopicEntry) {
        self.lock().insert(room_key, entry);
    }

    fn take(&self) -> HashMap<String, TopicEntry> {
        std::mem::take(&mut *self.lock())
    }
}

/// The sending side, held by the server: never blocks.
#[derive(Clone)]
pub struct StoreHandle {
    tx: SyncSender<Op>,
    topics: PendingTopics,
}

/// File name for a room: its key with anything but `[a-z0-9_-]` escaped as `%XX` (so `/`, `..`
/// and non-ASCII letters are safe), or a base64url form when that would be too long.
pub fn room_file_name(room_key: &str) -> String {
    let mut out = String::new();
    for b in room_key.bytes() {
        if b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.len() > 200 {
        out = format!("~{}", base64url(room_key.as_bytes()));
    }
    out.push_str(".jsonl");
    out
}

fn base64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

impl Store {
    /// Open and lock `dir` (creating it), and read what it holds.
    pub fn open(dir: &Path, history: usize) -> Result<(Store, Loaded), StoreError> {
        let rooms_dir = dir.join("rooms");
        // Missing parents are created 0700 too: nothing of ours is for other users.
        DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(&rooms_dir)
            .map_err(io_err(dir))?;
        let dir_mode = std::fs::metadata(dir)
            .map_err(io_err(dir))?
            .permissions()
            .mode();
        if dir_mode & 0o077 != 0 {
            warn!(
                dir = %logsafe::field(&dir.display().to_string()),
                mode = format!("{:04o}", dir_mode & 0o7777),
                "data dir is open to other users: its files are not (0600), but their names are; \
                 chmod 700 it"
            );
        }
        tighten(&rooms_dir, DIR_MODE).map_err(io_err(&rooms_dir))?;
        let lock_path = dir.join("lock");
        let lock = private_file()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        let mut lock = Flock::lock(lock, FlockArg::LockExclusiveNonblock)
            .map_err(|_| StoreError::Locked(dir.to_owned()))?;
        let _ = lock.set_len(0);
        let _ = writeln!(lock, "{}", std::process::id());

        let mut store = Store {
            dir: dir.to_owned(),
            lock,
            history,
            line_counts: HashMap::new(),
            topics: serde_json::Map::new(),
        };
        let mut loaded = Loaded::default();
        let entries = std::fs::read_dir(&rooms_dir).map_err(io_err(&rooms_dir))?;
        let mut names = std::collections::BTreeSet::new();
        let mut tightened = 0;
        for path in ["lock", "topics.json", "topics.json.tmp"].map(|f| dir.join(f)) {
            // An earlier version created them with the umask's mode.
            match tighten(&path, FILE_MODE) {
                Ok(changed) => tightened += usize::from(changed),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&path)(e)),
            }
        }
        for name in entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
        {
            let path = rooms_dir.join(&name);
            tightened += usize::from(tighten(&path, FILE_MODE).map_err(io_err(&path))?);
            if name.ends_with(".tmp") {
                // Left by an interrupted compaction of an earlier version: the file it was
                // rewriting is still whole.
                let _ = std::fs::remove_file(rooms_dir.join(&name));
                continue;
            }
            // A room is its current file, its previous one, or both (a crash between the
            // rename and the first append leaves only the previous one).
            let base = name.strip_suffix(PREVIOUS).unwrap_or(&name);
            if base.ends_with(".jsonl") {
                names.insert(base.to_owned());
            }
        }
        for name in names {
            let (room, messages, lines) = read_room(&rooms_dir, &name, history)?;
            store.line_counts.insert(name, lines);
            if let Some(room) = room {
                loaded.rooms.push((room, messages));
            }
        }
        let topics_path = dir.join("topics.json");
        if let Ok(text) = std::fs::read_to_string(&topics_path) {
            match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&text) {
                Ok(map) => {
                    for v in map.values() {
                        let Some(room) = v["room"].as_str() else {
                            continue;
                        };
                        if let Some(topic) = v["topic"].as_str().filter(|t| !t.is_empty()) {
                            loaded.topics.push((room.to_owned(), topic.to_owned()));
                        }
                        let settings = settings_of(v);
                        if !settings.is_default() {
                            loaded.settings.push((room.to_owned(), settings));
                        }
                    }
                    store.topics = map;
                }
                Err(e) => {
                    warn!(path = %logsafe::field(&topics_path.display().to_string()), error = %e, "topics file unreadable; topics start empty")
                }
            }
        }
        if tightened > 0 {
            info!(files = tightened, "history files made private (mode 0600)");
        }
        let count: usize = loaded.rooms.iter().map(|(_, m)| m.len()).sum();
        info!(dir = %logsafe::field(&dir.display().to_string()), rooms = loaded.rooms.len(), messages = count, "history loaded");
        Ok((store, loaded))
    }

    /// Start the writer thread.
    pub fn start(self) -> (StoreHandle, std::thread::JoinHandle<()>) {
        let (handle, writer, rx) = self.into_writer();
        let thread = std::thread::Builder::new()
            .name("history-writer".into())
            .spawn(move || writer.run(rx))
            .expect("spawn the history writer");
        (handle, thread)
    }

    /// The handle and the writer it feeds, not yet running.
    fn into_writer(self) -> (StoreHandle, Writer, mpsc::Receiver<Op>) {
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let topics = PendingTopics::default();
        let writer = Writer::new(self, topics.clone());
        (StoreHandle { tx, topics }, writer, rx)
    }
}

/// Read a room file: the room name, the newest `keep` good messages, and the number of lines.
/// Torn or corrupt lines are skipped with one warning per file.
/// A stored line that is whole (LF-terminated) and a `message` with a UUID id; `None` for a
/// torn or corrupt line.
fn parse_line(line: &[u8]) -> Option<(Uuid, Message)> {
    if line.last() != Some(&b'\n') {
        return None;
    }
    let m = serde_json::from_slice::<Message>(line).ok()?;
    Some((Uuid::parse_str(&m.id).ok()?, m))
}

/// A room's files (`<name>` is `room_file_name`): its display name, its newest `history`
/// messages (the previous file's, then the current one's) and the current file's line count.
/// A file that is not there counts as empty.
fn read_room(
    rooms_dir: &Path,
    name: &str,
    history: usize,
) -> Result<(Option<String>, Vec<StoredMessage>, usize), StoreError> {
    let path = rooms_dir.join(name);
    let previous = rooms_dir.join(format!("{name}{PREVIOUS}"));
    let (room_before, mut messages, _) = read_room_file(&previous, history)?;
    let (room, newer, lines) = read_room_file(&path, history)?;
    messages.extend(newer);
    let excess = messages.len().saturating_sub(history);
    messages.drain(..excess);
    Ok((room.or(room_before), messages, lines))
}

/// One room file, of which the newest `keep` messages are kept; a missing file is empty (one
/// failed open, the cost of looking for a room that was never written).
fn read_room_file(
    path: &Path,
    keep: usize,
) -> Result<(Option<String>, Vec<StoredMessage>, usize), StoreError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((None, Vec::new(), 0)),
        Err(e) => return Err(io_err(path)(e)),
    };
    let mut reader = BufReader::new(file);
    let mut messages = std::collections::VecDeque::new();
    let mut room = None;
    let (mut lines, mut bad) = (0usize, 0usize);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        lines += 1;
        match parse_line(&buf) {
            Some((id, m)) => {
                room = Some(m.room);
                messages.push_back(StoredMessage {
                    id,
                    line: Bytes::copy_from_slice(&buf),
                });
                if messages.len() > keep {
                    messages.pop_front();
                }
            }
            None => bad += 1,
        }
    }
    if bad > 0 {
        // The file's name was found on disk: render it safely.
        warn!(path = %logsafe::field(&path.display().to_string()), skipped = bad, "skipped torn or corrupt history lines");
    }
    Ok((room, messages.into(), lines))
}

impl StoreHandle {
    /// Queue a message line for disk; never blocks.
    pub fn append(&self, room_key: String, line: Bytes) {
        self.send(Op::Append { room_key, line });
    }

    /// Hand over what a rule asked to keep.
    pub fn persist(&self, what: crate::state::Persist) {
        use crate::state::Persist;
        match what {
            Persist::Message { room_key, line } => self.append(room_key.to_string(), line),
            Persist::Topic {
                room_key,
                room,
                topic,
                settings,
            } => self.topic(room_key.to_string(), room, topic, settings),
        }
    }

    /// Ask for a room's history and topic from disk; never blocks. The answer comes once every
    /// append queued before this call is written, so it holds every message accepted before.
    /// `None` when the writer cannot take it (its queue is full, or it has stopped).
    pub fn load(&self, room_key: &str) -> Option<tokio::sync::oneshot::Receiver<RoomLoad>> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let op = Op::Load {
            room_key: room_key.to_owned(),
            reply,
        };
        self.tx.try_send(op).ok().map(|()| answer)
    }

    /// Record a room's new topic (empty: cleared) and privacy; never blocks. They reach
    /// `topics.json` with the writer's next tick, replacing any change of the same room not
    /// written yet.
    pub fn topic(&self, room_key: String, room: String, topic: String, settings: RoomSettings) {
        let entry = TopicEntry {
            room,
            topic,
            settings,
        };
        self.topics.set(room_key, entry);
    }

    fn send(&self, op: Op) {
        match self.tx.try_send(op) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                error!("history writer is {QUEUE} operations behind: this one is not persisted")
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Flush and fsync everything queued and the pending topics, then stop the writer. Waits at
    /// most `timeout`, a full queue included.
    pub fn shutdown(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let mut op = Op::Shutdown(done_tx);
        loop {
            match self.tx.try_send(op) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) if Instant::now() < deadline => {
                    // The writer drains thousands of messages a batch: room comes quickly.
                    op = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(_) => return,
            }
        }
        let _ = done_rx.recv_timeout(deadline.saturating_duration_since(Instant::now()));
    }
}

mod writer;

use writer::Writer;

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
