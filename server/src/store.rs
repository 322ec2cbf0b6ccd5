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
//! Layout of the data directory:
//! - `lock`: held with `flock` by the running server; a second server refuses to start.
//! - `rooms/<name>.jsonl`: one `message` event per line, exactly as sent on the wire, appended to;
//!   `rooms/<name>.jsonl.1`: the lines before those, up to `history` of them.
//! - `topics.json`: `{"<room key>": {"room": "<name>", "topic": "<topic>"}}`, replaced atomically.
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

/// Mode of every file the server creates in the data directory: its owner's only.
pub const FILE_MODE: u32 = 0o600;
/// Mode of the data directory and `rooms/` when the server creates them.
pub const DIR_MODE: u32 = 0o700;

/// Options to create (or open) a file of the data directory with [`FILE_MODE`].
fn private_file() -> OpenOptions {
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
    Append { room_key: String, line: Bytes },
    Shutdown(std::sync::mpsc::Sender<()>),
}

/// A room's topic as it goes to `topics.json`: the room's display name and the topic (empty: no
/// topic).
struct TopicEntry {
    room: String,
    topic: String,
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

    fn set(&self, room_key: String, room: String, topic: String) {
        self.lock().insert(room_key, TopicEntry { room, topic });
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
            let path = rooms_dir.join(&name);
            let previous = rooms_dir.join(format!("{name}{PREVIOUS}"));
            let (room_before, mut messages, _) = match previous.exists() {
                true => read_room_file(&previous, history)?,
                false => (None, Vec::new(), 0),
            };
            let (room, newer, lines) = match path.exists() {
                true => read_room_file(&path, history)?,
                false => (None, Vec::new(), 0),
            };
            messages.extend(newer);
            let excess = messages.len().saturating_sub(history);
            messages.drain(..excess);
            store.line_counts.insert(name, lines);
            if let Some(room) = room.or(room_before) {
                loaded.rooms.push((room, messages));
            }
        }
        let topics_path = dir.join("topics.json");
        if let Ok(text) = std::fs::read_to_string(&topics_path) {
            match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&text) {
                Ok(map) => {
                    for v in map.values() {
                        if let (Some(room), Some(topic)) = (v["room"].as_str(), v["topic"].as_str())
                        {
                            loaded.topics.push((room.to_owned(), topic.to_owned()));
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

fn read_room_file(
    path: &Path,
    keep: usize,
) -> Result<(Option<String>, Vec<StoredMessage>, usize), StoreError> {
    let file = File::open(path).map_err(io_err(path))?;
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
            } => self.topic(room_key.to_string(), room, topic),
        }
    }

    /// Record a room's new topic (empty: cleared); never blocks. It reaches `topics.json` with
    /// the writer's next tick, replacing any change of the same room not written yet.
    pub fn topic(&self, room_key: String, room: String, topic: String) {
        self.topics.set(room_key, room, topic);
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

struct RoomFile {
    file: File,
    lines: usize,
    dirty: bool,
    /// The file just renamed to `<name>.jsonl.1`, kept open until its data is synced.
    previous: Option<File>,
}

struct Writer {
    store: Store,
    open: HashMap<String, RoomFile>,
    /// When the last tick (fsync, topics) ran. Not moved by the fsync that closing files needs,
    /// so that many rooms cannot put the topics off.
    last_tick: Instant,
    last_error: Option<Instant>,
    /// A rotation renamed a file since the last fsync of the rooms directory.
    dir_dirty: bool,
    /// Topic changes handed over by the server, taken at each tick.
    pending_topics: PendingTopics,
    /// `store.topics` holds a change that `topics.json` does not (yet: a failed write is retried
    /// at the next tick).
    topics_dirty: bool,
    /// Rewrites of `topics.json` so far.
    topic_writes: usize,
}

impl Writer {
    fn new(store: Store, pending_topics: PendingTopics) -> Self {
        Writer {
            store,
            open: HashMap::new(),
            last_tick: Instant::now(),
            last_error: None,
            dir_dirty: false,
            pending_topics,
            topics_dirty: false,
            topic_writes: 0,
        }
    }

    fn run(mut self, rx: mpsc::Receiver<Op>) {
        loop {
            let wait = FSYNC_EVERY.saturating_sub(self.last_tick.elapsed());
            let first = match rx.recv_timeout(wait) {
                Ok(op) => Some(op),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let woken = first.is_some();
            let mut ops: Vec<Op> = first.into_iter().collect();
            while let Ok(op) = rx.try_recv() {
                ops.push(op);
                if ops.len() >= 16384 {
                    break;
                }
            }
            let mut done = None;
            // One write per room per batch: its lines end to end, and how many.
            let mut appends: HashMap<String, (Vec<u8>, usize)> = HashMap::new();
            for op in ops {
                match op {
                    Op::Append { room_key, line } => {
                        let (buf, n) = appends.entry(room_key).or_default();
                        buf.extend_from_slice(&line);
                        *n += 1;
                    }
                    Op::Shutdown(tx) => done = Some(tx),
                }
            }
            for (room_key, (lines, count)) in appends {
                self.append(&room_key, &lines, count);
            }
            if done.is_some() || self.last_tick.elapsed() >= FSYNC_EVERY {
                self.tick();
            }
            if let Some(tx) = done {
                let _ = tx.send(());
                return;
            }
            if woken {
                // Let the next batch gather. Blocking on the channel again at once would make
                // every accepted message pay a futex wake-up of this thread on the hot path.
                std::thread::sleep(BATCH_PAUSE);
            }
        }
        self.tick();
    }

    /// Once a second and at shutdown: the room files fsynced first (messages matter most), then
    /// `topics.json` rewritten if a topic changed since the last tick.
    fn tick(&mut self) {
        self.fsync();
        self.write_topics();
        self.last_tick = Instant::now();
    }

    fn report(&mut self, what: &str, e: &std::io::Error) {
        // One line a minute at most: a full disk must not flood the log.
        if self
            .last_error
            .is_none_or(|t| t.elapsed() > Duration::from_secs(60))
        {
            error!(error = %e, "history {what} failed; messages may not be durable");
            self.last_error = Some(Instant::now());
        }
    }

    fn room_file(&mut self, name: &str) -> std::io::Result<&mut RoomFile> {
        if !self.open.contains_key(name) {
            if self.open.len() >= MAX_OPEN_FILES {
                // Bound the descriptors this thread holds: sync and close them all.
                self.fsync();
                self.open.clear();
            }
            let path = self.store.dir.join("rooms").join(name);
            let mut file = private_file()
                .create(true)
                .read(true)
                .append(true)
                .open(&path)?;
            // After a torn last line, start on a fresh line so what follows survives a restart.
            let len = file.metadata()?.len();
            if len > 0 {
                let mut last = [0u8; 1];
                file.seek(SeekFrom::Start(len - 1))?;
                file.read_exact(&mut last)?;
                if last[0] != b'\n' {
                    file.write_all(b"\n")?;
                }
            }
            let lines = self.store.line_counts.get(name).copied().unwrap_or(0);
            self.open.insert(
                name.to_owned(),
                RoomFile {
                    file,
                    lines,
                    dirty: false,
                    previous: None,
                },
            );
        }
        Ok(self.open.get_mut(name).expect("just inserted"))
    }

    /// Append a batch of `count` lines (whole lines, oldest first) to a room's file: one write,
    /// or one per file when the batch fills the current file and it is rotated in between.
    fn append(&mut self, room_key: &str, mut lines: &[u8], mut count: usize) {
        let name = room_file_name(room_key);
        let limit = self.store.history.max(1);
        while count > 0 {
            let result = self.room_file(&name).and_then(|rf| {
                let room = limit.saturating_sub(rf.lines).max(1);
                let (now, n) = if count <= room {
                    (lines, count)
                } else {
                    // Every stored line is one JSON object and its LF: split after the
                    // `room`-th LF.
                    let end = lines
                        .iter()
                        .enumerate()
                        .filter(|(_, b)| **b == b'\n')
                        .nth(room - 1)
                        .map_or(lines.len(), |(i, _)| i + 1);
                    (&lines[..end], room)
                };
                rf.file.write_all(now)?;
                rf.lines += n;
                rf.dirty = true;
                Ok((now.len(), n, rf.lines >= limit))
            });
            match result {
                Ok((written, n, full)) => {
                    lines = &lines[written..];
                    count -= n;
                    if full {
                        if let Err(e) = self.rotate(&name) {
                            self.report("rotation", &e);
                        }
                    }
                }
                Err(e) => {
                    self.report("write", &e);
                    return;
                }
            }
        }
    }

    /// The room's file is full: it becomes `<name>.jsonl.1` (an atomic rename over the previous
    /// one) and a new file starts. The renamed file is synced with the next periodic fsync, and
    /// the directory with it.
    fn rotate(&mut self, name: &str) -> std::io::Result<()> {
        let rooms = self.store.dir.join("rooms");
        let path = rooms.join(name);
        crash_point("rotate-before-rename");
        std::fs::rename(&path, rooms.join(format!("{name}{PREVIOUS}")))?;
        crash_point("rotate-after-rename");
        self.dir_dirty = true;
        let file = private_file()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)?;
        self.store.line_counts.insert(name.to_owned(), 0);
        if let Some(rf) = self.open.get_mut(name) {
            let old = std::mem::replace(&mut rf.file, file);
            // An earlier previous file not yet synced was just renamed over: its lines are
            // older than the newest `history`, and nothing needs them any more.
            rf.previous = rf.dirty.then_some(old);
            rf.lines = 0;
            rf.dirty = false;
        }
        Ok(())
    }

    /// Take the pending topic changes into `store.topics` and, if anything changed, replace
    /// `topics.json` with it: once, whatever the number of changes.
    fn write_topics(&mut self) {
        for (room_key, TopicEntry { room, topic }) in self.pending_topics.take() {
            if topic.is_empty() {
                self.store.topics.remove(&room_key);
            } else {
                self.store
                    .topics
                    .insert(room_key, serde_json::json!({"room": room, "topic": topic}));
            }
            self.topics_dirty = true;
        }
        if !self.topics_dirty {
            return;
        }
        let path = self.store.dir.join("topics.json");
        let tmp = self.store.dir.join("topics.json.tmp");
        let result = (|| {
            let mut out = private_file()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            serde_json::to_writer(&mut out, &self.store.topics)?;
            out.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            File::open(&self.store.dir)?.sync_all()
        })();
        self.topic_writes += 1;
        match result {
            Ok(()) => self.topics_dirty = false,
            Err(e) => self.report("topic write", &e),
        }
    }

    fn fsync(&mut self) {
        let mut failed = None;
        for rf in self.open.values_mut() {
            if let Some(previous) = rf.previous.take() {
                if let Err(e) = previous.sync_data() {
                    failed = Some(e);
                }
            }
            if rf.dirty {
                match rf.file.sync_data() {
                    Ok(()) => rf.dirty = false,
                    Err(e) => failed = Some(e),
                }
            }
        }
        if std::mem::take(&mut self.dir_dirty) {
            // The renames of rotated files.
            if let Err(e) = File::open(self.store.dir.join("rooms")).and_then(|d| d.sync_all()) {
                failed = Some(e);
            }
        }
        if let Some(e) = failed {
            self.report("fsync", &e);
        }
        let _ = &self.store.lock;
    }
}

/// Test hook: `LANCHAT_TEST_CRASH_AT=<point>` aborts the process at that point, to prove that a
/// crash there loses nothing.
fn crash_point(point: &str) {
    if std::env::var("LANCHAT_TEST_CRASH_AT").is_ok_and(|p| p == point) {
        std::process::abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_safe_and_distinct() {
        assert_eq!(room_file_name("lobby"), "lobby.jsonl");
        assert_eq!(room_file_name(".."), "%2E%2E.jsonl");
        assert_eq!(room_file_name("a/b"), "a%2Fb.jsonl");
        assert_eq!(room_file_name("ü"), "%C3%BC.jsonl");
        let long = "😀".repeat(32);
        let name = room_file_name(&long);
        assert!(name.len() < 255 && name.starts_with('~'), "{name}");
        assert!(!name.contains('/'));
        assert_ne!(room_file_name("a.b"), room_file_name("a_b"));
    }

    #[test]
    fn base64url_known_values() {
        assert_eq!(base64url(b"f"), "Zg");
        assert_eq!(base64url(b"fo"), "Zm8");
        assert_eq!(base64url(b"foo"), "Zm9v");
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
    }

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path)
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    }

    /// Every file a data directory holds once a room has rotated and a topic was set.
    const FILES: [&str; 4] = [
        "lock",
        "topics.json",
        "rooms/lobby.jsonl",
        "rooms/lobby.jsonl.1",
    ];

    fn assert_private(data: &Path) {
        assert_eq!(mode(&data.join("rooms")), 0o700);
        for f in FILES {
            assert_eq!(mode(&data.join(f)), 0o600, "{f}");
        }
    }

    /// A stored message line of `lobby`.
    fn message_line(text: String) -> String {
        let m = Message {
            id: Uuid::now_v7().to_string(),
            ts: 1,
            room: "lobby".into(),
            from: "ann".into(),
            text,
        };
        format!("{}\n", serde_json::to_string(&m).unwrap())
    }

    #[test]
    fn files_left_open_to_others_are_made_private_at_start() {
        let dir = std::env::temp_dir().join(format!("lanchat-store-{}", Uuid::new_v4()));
        std::fs::create_dir_all(dir.join("rooms")).unwrap();
        let open_to_all = |p: &Path, m: u32| std::fs::set_permissions(p, Permissions::from_mode(m));
        for f in FILES {
            std::fs::write(dir.join(f), "").unwrap();
            open_to_all(&dir.join(f), 0o666).unwrap();
        }
        std::fs::write(dir.join("outside"), "").unwrap();
        std::os::unix::fs::symlink(dir.join("outside"), dir.join("rooms/link.jsonl")).unwrap();
        open_to_all(&dir.join("outside"), 0o644).unwrap();
        open_to_all(&dir.join("rooms"), 0o777).unwrap();
        open_to_all(&dir, 0o755).unwrap();
        let (store, _) = Store::open(&dir, 10).unwrap();
        assert_private(&dir);
        assert_eq!(
            mode(&dir.join("outside")),
            0o644,
            "a link's target is not touched"
        );
        assert_eq!(
            mode(&dir),
            0o755,
            "the operator's directory is only warned about"
        );
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_new_data_dir_and_its_files_are_private() {
        let dir = std::env::temp_dir().join(format!("lanchat-store-{}", Uuid::new_v4()));
        let (store, _) = Store::open(&dir.join("data"), 2).unwrap();
        let (handle, mut writer, _rx) = store.into_writer();
        // Three lines with a history of two: one rotation.
        let lines: String = (0..3).map(|i| message_line(format!("m{i}"))).collect();
        writer.append("lobby", lines.as_bytes(), 3);
        handle.topic("lobby".into(), "lobby".into(), "t".into());
        writer.tick();
        let data = dir.join("data");
        assert_eq!(mode(&dir), 0o700, "a missing parent too");
        assert_eq!(mode(&data), 0o700);
        assert_private(&data);
        drop(writer);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_batch_that_fills_a_file_is_split_at_the_rotation() {
        let dir = std::env::temp_dir().join(format!("lanchat-store-{}", Uuid::new_v4()));
        let (store, _) = Store::open(&dir, 10).unwrap();
        let (_handle, mut writer, _rx) = store.into_writer();
        let batch: String = (0..25).map(|i| message_line(format!("m{i}"))).collect();
        writer.append("lobby", batch.as_bytes(), 25);
        writer.fsync();
        let count = |name: &str| {
            std::fs::read_to_string(dir.join("rooms").join(name))
                .unwrap()
                .lines()
                .count()
        };
        // 0-9 went to a file rotated away and then replaced by 10-19; 20-24 are current.
        assert_eq!((count("lobby.jsonl.1"), count("lobby.jsonl")), (10, 5));
        drop(writer);
        let (_, loaded) = Store::open(&dir, 10).unwrap();
        let texts: Vec<String> = loaded.rooms[0]
            .1
            .iter()
            .map(|m| serde_json::from_slice::<Message>(&m.line).unwrap().text)
            .collect();
        assert_eq!(texts, (15..25).map(|i| format!("m{i}")).collect::<Vec<_>>());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The topics a data directory's `topics.json` holds, by room key: (room, topic).
    fn topics_file(dir: &Path) -> HashMap<String, (String, String)> {
        let text = std::fs::read_to_string(dir.join("topics.json")).unwrap();
        let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text).unwrap();
        map.into_iter()
            .map(|(k, v)| {
                let field = |f: &str| v[f].as_str().unwrap().to_owned();
                (k, (field("room"), field("topic")))
            })
            .collect()
    }

    #[test]
    fn a_topic_flood_is_one_rewrite_and_the_last_topic_of_each_room_wins() {
        let dir = std::env::temp_dir().join(format!("lanchat-store-{}", Uuid::new_v4()));
        let (store, _) = Store::open(&dir, 10).unwrap();
        let (handle, mut writer, _rx) = store.into_writer();
        let rooms = ["lobby", "ops", "gone"];
        for i in 0..100_000 {
            let key = rooms[i % 3];
            handle.topic(key.into(), key.to_uppercase(), format!("{key} {i}"));
        }
        // The last change of `gone` clears its topic.
        handle.topic("gone".into(), "GONE".into(), String::new());
        writer.tick();
        assert_eq!(writer.topic_writes, 1, "100,001 changes, one rewrite");
        let expected = HashMap::from([
            ("lobby".into(), ("LOBBY".into(), "lobby 99999".into())),
            ("ops".into(), ("OPS".into(), "ops 99997".into())),
        ]);
        assert_eq!(topics_file(&dir), expected);

        writer.tick();
        assert_eq!(writer.topic_writes, 1, "nothing changed: no rewrite");
        handle.topic("ops".into(), "Ops".into(), "later".into());
        handle.topic("ops".into(), "Ops".into(), "latest".into());
        writer.tick();
        assert_eq!(writer.topic_writes, 2);
        drop((handle, writer));

        let (_, loaded) = Store::open(&dir, 10).unwrap();
        let mut topics = loaded.topics;
        topics.sort();
        assert_eq!(
            topics,
            [
                ("LOBBY".into(), "lobby 99999".into()),
                ("Ops".into(), "latest".into())
            ]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn topic_changes_take_no_room_in_the_message_queue() {
        let dir = std::env::temp_dir().join(format!("lanchat-store-{}", Uuid::new_v4()));
        let (store, _) = Store::open(&dir, 10).unwrap();
        let (handle, _writer, rx) = store.into_writer();
        for i in 0..QUEUE + 1 {
            handle.topic("lobby".into(), "lobby".into(), format!("t{i}"));
        }
        let line = Bytes::from(message_line("after the flood".into()));
        handle.append("lobby".into(), line.clone());
        match rx.try_recv() {
            Ok(Op::Append {
                room_key,
                line: got,
            }) => assert_eq!((room_key, got), ("lobby".into(), line)),
            _ => panic!("the message is first in the queue"),
        }
        assert!(rx.try_recv().is_err(), "and alone");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_writer_keeps_up_with_messages_during_a_topic_flood_and_shuts_down_at_once() {
        let dir = std::env::temp_dir().join(format!("lanchat-store-{}", Uuid::new_v4()));
        let (store, _) = Store::open(&dir, 1000).unwrap();
        let (handle, thread) = store.start();
        let mut sent = Vec::new();
        for i in 0..200_000 {
            handle.topic("lobby".into(), "lobby".into(), format!("t{i}"));
            if i % 20_000 == 0 {
                let line = message_line(format!("m{i}"));
                handle.append("lobby".into(), Bytes::from(line.clone()));
                sent.push(line);
            }
        }
        let file = dir.join("rooms/lobby.jsonl");
        let deadline = Instant::now() + Duration::from_secs(10);
        // In the kernel a few milliseconds after they were queued; well inside a second even on a
        // loaded machine, where the old writer needed 400,000 fsyncs first.
        while std::fs::read_to_string(&file).unwrap_or_default() != sent.concat() {
            assert!(
                Instant::now() < deadline,
                "messages stuck behind the topics"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let asked = Instant::now();
        handle.shutdown(Duration::from_secs(5));
        thread.join().unwrap();
        assert!(
            asked.elapsed() < Duration::from_secs(2),
            "{:?}",
            asked.elapsed()
        );
        assert_eq!(topics_file(&dir)["lobby"].1, "t199999");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
