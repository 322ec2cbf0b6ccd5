//! The store's writer thread: room files appended in batches, fsynced at least once a second,
//! rotated when full, and the topic map saved once a second.

use super::*;

pub(super) struct RoomFile {
    file: File,
    lines: usize,
    dirty: bool,
    /// The file just renamed to `<name>.jsonl.1`, kept open until its data is synced.
    previous: Option<File>,
}

pub(super) struct Writer {
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
    pub(super) topic_writes: usize,
}

impl Writer {
    pub(super) fn new(store: Store, pending_topics: PendingTopics) -> Self {
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

    pub(super) fn run(mut self, rx: mpsc::Receiver<Op>) {
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
            let mut loads = Vec::new();
            for op in ops {
                match op {
                    Op::Append { room_key, line } => {
                        let (buf, n) = appends.entry(room_key).or_default();
                        buf.extend_from_slice(&line);
                        *n += 1;
                    }
                    Op::Load { room_key, reply } => loads.push((room_key, reply)),
                    Op::Shutdown(tx) => done = Some(tx),
                }
            }
            for (room_key, (lines, count)) in appends {
                self.append(&room_key, &lines, count);
            }
            // After the batch's appends (written, not only buffered): a load sees every message
            // queued before it, and perhaps a few queued after, never fewer.
            for (room_key, reply) in loads {
                let _ = reply.send(self.load(&room_key));
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

    /// A room's messages and topic as the disk and the pending topics hold them now.
    pub(super) fn load(&mut self, room_key: &str) -> RoomLoad {
        let rooms_dir = self.store.dir.join("rooms");
        let name = room_file_name(room_key);
        let (room, messages) = match read_room(&rooms_dir, &name, self.store.history) {
            Ok((room, messages, _)) => (room, messages),
            Err(e) => {
                self.report("read", &std::io::Error::other(e.to_string()));
                (None, Vec::new())
            }
        };
        // The newest topic: one not yet written to `topics.json`, else the one there.
        let pending = self
            .pending_topics
            .lock()
            .get(room_key)
            .map(|t| (t.room.clone(), t.topic.clone(), t.settings.clone()));
        let (topic_room, topic, settings) = pending
            .or_else(|| {
                let entry = self.store.topics.get(room_key)?;
                Some((
                    entry["room"].as_str()?.to_owned(),
                    entry["topic"].as_str().unwrap_or("").to_owned(),
                    settings_of(entry),
                ))
            })
            .unwrap_or_default();
        let kept = !topic.is_empty() || !settings.is_default();
        let room = room.or(kept.then_some(topic_room));
        RoomLoad {
            room,
            messages,
            topic,
            settings,
        }
    }

    /// Once a second and at shutdown: the room files fsynced first (messages matter most), then
    /// `topics.json` rewritten if a topic changed since the last tick.
    pub(super) fn tick(&mut self) {
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

    pub(super) fn room_file(&mut self, name: &str) -> std::io::Result<&mut RoomFile> {
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
    pub(super) fn append(&mut self, room_key: &str, mut lines: &[u8], mut count: usize) {
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
    pub(super) fn rotate(&mut self, name: &str) -> std::io::Result<()> {
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
    pub(super) fn write_topics(&mut self) {
        for (room_key, entry) in self.pending_topics.take() {
            let TopicEntry {
                room,
                topic,
                settings,
            } = entry;
            if topic.is_empty() && settings.is_default() {
                self.store.topics.remove(&room_key);
            } else {
                let entry = topic_entry(&room, &topic, &settings);
                self.store.topics.insert(room_key, entry);
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

    pub(super) fn fsync(&mut self) {
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
