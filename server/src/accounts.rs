//! Registered nicks (issue 15, "Nicks nobody can steal"): which nicks are registered, the slow
//! hash of each one's secret, and where the table is kept.
//!
//! A registered nick can only be taken (by `hello` or `nick`) with its secret, whether or not
//! anyone holds it; so can a nick that looks like it (the same lookalike keys as the chat's
//! nicks, see `state/lookalikes.rs`), by nobody. Secrets are kept only as Argon2id PHC strings.
//! Hashing and verifying run on tokio's blocking pool, at most [`HASHING_AT_ONCE`] at a time,
//! never under the chat lock.
//!
//! With a data directory the table is `accounts.json` (mode 0600), rewritten whole on each
//! change (a temporary file, fsync, rename, fsync of the directory), off the chat lock; without
//! one it lives in memory and replies say `"persistent":false`.
//!
//! Lock order: the chat lock, then the table's, never the other way; nothing here takes the chat
//! lock.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use lanchat_protocol::validate::{lookalike_keys, name_key};
use lanchat_protocol::ErrorCode;
use password_hash::rand_core::OsRng;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::error;

use crate::outbox::Alarms;
use crate::state::{Refusal, SessionId};
use crate::store::private_file;

/// The file of the data directory that holds the accounts.
pub const FILE_NAME: &str = "accounts.json";
/// Hashes or verifications running at once: each takes [`MEMORY_KIB`] and a core.
pub const HASHING_AT_ONCE: usize = 2;
/// Argon2id parameters: OWASP's minimum (19 MiB, two passes, one lane).
pub const MEMORY_KIB: u32 = 19 * 1024;
pub const PASSES: u32 = 2;
pub const LANES: u32 = 1;

/// One registered nick, as kept on disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    /// As it was spelled when registered.
    pub nick: String,
    /// The secret's Argon2id hash, a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$...`).
    pub hash: String,
    /// When it was registered, milliseconds since the Unix epoch.
    pub created: u64,
}

/// The file's shape: a version, and the accounts by folded nick.
#[derive(Debug, Serialize, Deserialize)]
struct File {
    version: u32,
    accounts: HashMap<String, Account>,
}

/// What a nick is, as far as accounts go.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// Not registered and like no registered nick: anyone may use it.
    Free,
    /// Registered under this folded key: its secret is needed.
    Registered { key: String, hash: String },
    /// Looks like this registered nick (another folded key): nobody may use it.
    LooksLike { nick: String },
}

/// The accounts table: the pure part, with no file and no hashing.
#[derive(Debug, Default)]
pub struct Table {
    by_key: HashMap<String, Account>,
    /// Each account's lookalike keys, and whose they are.
    skeletons: HashMap<String, String>,
}

impl Table {
    fn from_accounts(accounts: HashMap<String, Account>) -> Self {
        let mut table = Table::default();
        for (key, account) in accounts {
            table.put(key, account);
        }
        table
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// What `nick` is. `own` is the folded nick the asker holds now, if any: a nick that looks
    /// like the asker's own registered nick is theirs to take (as `bob` may become `b0b`).
    pub fn claim(&self, nick: &str, own: Option<&str>) -> Claim {
        // The common case on a LAN, and a hello's path under the chat lock: no skeletons.
        if self.by_key.is_empty() {
            return Claim::Free;
        }
        let key = name_key(nick);
        if let Some(account) = self.by_key.get(&key) {
            return Claim::Registered {
                key,
                hash: account.hash.clone(),
            };
        }
        let other = lookalike_keys(nick)
            .iter()
            .filter_map(|s| self.skeletons.get(s))
            .find(|owner| Some(owner.as_str()) != own)
            .and_then(|owner| self.by_key.get(owner));
        match other {
            Some(account) => Claim::LooksLike {
                nick: account.nick.clone(),
            },
            None => Claim::Free,
        }
    }

    /// Whether a session may hold `nick` now: it is free, or `proven` is its folded key (the
    /// session gave its secret), or `own` (the session's current nick) is. Checked again under
    /// the chat lock, just before the nick is taken.
    pub fn admits(
        &self,
        nick: &str,
        proven: Option<&str>,
        own: Option<&str>,
    ) -> Result<(), Refusal> {
        match self.claim(nick, own) {
            Claim::Free => Ok(()),
            Claim::Registered { key, .. }
                if Some(key.as_str()) == proven || Some(key.as_str()) == own =>
            {
                Ok(())
            }
            Claim::Registered { .. } => Err(registered(nick)),
            Claim::LooksLike { nick: other } => Err(looks_like(nick, &other)),
        }
    }

    /// Register (or re-register) `nick` with `hash`, for the session that holds it. Refused
    /// when the table is full, or when it looks like another registered nick.
    pub fn insert(&mut self, nick: &str, hash: String, max: usize) -> Result<(), Refusal> {
        let (key, account) = self.prepare(nick, hash, max)?;
        self.store(key, account);
        Ok(())
    }

    /// What [`Table::insert`] would store (the folded key and the account), or its refusal;
    /// the table is not changed. Cluster mode stores it in the accounts bucket first.
    pub fn prepare(
        &self,
        nick: &str,
        hash: String,
        max: usize,
    ) -> Result<(String, Account), Refusal> {
        let key = name_key(nick);
        if let Claim::LooksLike { nick: other } = self.claim(nick, Some(&key)) {
            return Err(looks_like(nick, &other));
        }
        let created = match self.by_key.get(&key) {
            Some(old) => old.created,
            None if self.by_key.len() >= max => {
                return Err((
                    ErrorCode::TooManyAccounts,
                    format!("the server holds its limit of {max} accounts"),
                ))
            }
            None => now_ms(),
        };
        let account = Account {
            nick: nick.to_owned(),
            hash,
            created,
        };
        Ok((key, account))
    }

    /// Keep `account` under the folded nick `key`, in place of any account it had (no rule
    /// checked: see [`Table::prepare`]; cluster mode's mirror of the bucket stores what the
    /// bucket holds).
    pub fn store(&mut self, key: String, account: Account) {
        self.remove(&key);
        self.put(key, account);
    }

    fn put(&mut self, key: String, account: Account) {
        for skeleton in lookalike_keys(&account.nick) {
            self.skeletons
                .entry(skeleton)
                .or_insert_with(|| key.clone());
        }
        self.by_key.insert(key, account);
    }

    /// Forget the account of folded nick `key`.
    pub fn remove(&mut self, key: &str) -> Option<Account> {
        let account = self.by_key.remove(key)?;
        for skeleton in lookalike_keys(&account.nick) {
            if self.skeletons.get(&skeleton).map(String::as_str) == Some(key) {
                self.skeletons.remove(&skeleton);
            }
        }
        Some(account)
    }

    pub fn is_registered(&self, key: &str) -> bool {
        self.by_key.contains_key(key)
    }
}

/// The refusal of a registered nick asked for without its secret (or with a wrong one).
pub fn registered(nick: &str) -> Refusal {
    (
        ErrorCode::NickRegistered,
        format!("nick \"{nick}\" is registered; hello with its secret"),
    )
}

fn looks_like(nick: &str, other: &str) -> Refusal {
    (
        ErrorCode::NickTaken,
        format!("nick \"{nick}\" looks like the registered nick \"{other}\""),
    )
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Why the accounts file could not be read at start.
#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not an accounts file: {source}")]
    Format {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// The accounts of one server: the table, its file, the hashing pool and the live sessions.
#[derive(Debug)]
pub struct Accounts {
    table: Arc<Mutex<Table>>,
    /// `accounts.json`, with a data directory; the lock serialises writes.
    file: Option<Arc<Mutex<PathBuf>>>,
    hashing: Arc<Semaphore>,
    max: usize,
    /// Sessions told to go (`bye replaced`) and not gone yet: cancelled when each has left the
    /// chat, for the `hello` waiting to take its nick. Only those: nothing is kept per session.
    leaving: Mutex<HashMap<SessionId, CancellationToken>>,
}

impl Accounts {
    /// Accounts in memory only.
    pub fn in_memory(max: usize) -> Self {
        Accounts {
            table: Arc::new(Mutex::new(Table::default())),
            file: None,
            hashing: Arc::new(Semaphore::new(HASHING_AT_ONCE)),
            max,
            leaving: Mutex::new(HashMap::new()),
        }
    }

    /// Accounts kept in `dir` (read now if the file exists), or in memory without a directory.
    pub fn open(dir: Option<&Path>, max: usize) -> Result<Self, AccountsError> {
        let mut accounts = Accounts::in_memory(max);
        let Some(dir) = dir else {
            return Ok(accounts);
        };
        let path = dir.join(FILE_NAME);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let file: File =
                    serde_json::from_slice(&bytes).map_err(|source| AccountsError::Format {
                        path: path.clone(),
                        source,
                    })?;
                accounts.table = Arc::new(Mutex::new(Table::from_accounts(file.accounts)));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(AccountsError::Io { path, source }),
        }
        accounts.file = Some(Arc::new(Mutex::new(path)));
        Ok(accounts)
    }

    /// The table, for a short look or change (under the chat lock or not: see the module doc).
    pub fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn max(&self) -> usize {
        self.max
    }

    pub fn persistent(&self) -> bool {
        self.file.is_some()
    }

    /// Hash `secret` (Argon2id, a fresh salt), off the runtime's threads.
    pub async fn hash(&self, secret: String) -> Option<String> {
        let _permit = self.hashing.acquire().await.ok()?;
        let hashed = tokio::task::spawn_blocking(move || {
            let salt = SaltString::generate(&mut OsRng);
            hasher()
                .hash_password(secret.as_bytes(), &salt)
                .map(|h| h.to_string())
        })
        .await;
        match hashed {
            Ok(Ok(hash)) => Some(hash),
            Ok(Err(e)) => {
                error!(error = %e, "hashing a secret failed");
                None
            }
            Err(e) => {
                error!(error = %e, "hashing task failed");
                None
            }
        }
    }

    /// Whether `secret` matches the PHC string `hash`, off the runtime's threads.
    pub async fn verify(&self, secret: String, hash: String) -> bool {
        let Ok(_permit) = self.hashing.acquire().await else {
            return false;
        };
        tokio::task::spawn_blocking(move || verify(&secret, &hash))
            .await
            .unwrap_or(false)
    }

    /// Write the table as it is now to the file (if any), off the runtime's threads. Whether the
    /// accounts are on disk (false without a data directory, or when the write failed: logged).
    pub async fn save(&self) -> bool {
        let Some(file) = self.file.clone() else {
            return false;
        };
        let table = self.table.clone();
        let written = tokio::task::spawn_blocking(move || {
            // The table is read under the file's lock: writes happen one at a time, each of the
            // table as it was then, so an older table is never written after a newer one.
            let path = file.lock().unwrap_or_else(|p| p.into_inner());
            let bytes = {
                let table = table.lock().unwrap_or_else(|p| p.into_inner());
                let file = File {
                    version: 1,
                    accounts: table.by_key.clone(),
                };
                serde_json::to_vec(&file).expect("accounts always serialise")
            };
            write_atomically(&path, &bytes)
        })
        .await;
        match written {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                error!(error = %e, "writing {FILE_NAME} failed: accounts kept in memory only");
                false
            }
            Err(e) => {
                error!(error = %e, "writing {FILE_NAME} failed");
                false
            }
        }
    }

    fn leaving(&self) -> MutexGuard<'_, HashMap<SessionId, CancellationToken>> {
        self.leaving.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The session left the chat: whoever waits for it may go on.
    pub fn left(&self, id: SessionId) {
        if let Some(gone) = self.leaving().remove(&id) {
            gone.cancel();
        }
    }

    /// Tell session `id` to go (`bye replaced`, through its `alarms`); what to wait on until it
    /// has left. Call it under the chat lock, with `id` still in the chat: the session leaves the
    /// chat (under that lock) before it calls [`Accounts::left`], so the wait cannot be missed.
    pub fn kick(&self, id: SessionId, alarms: &Alarms) -> CancellationToken {
        let gone = self.leaving().entry(id).or_default().clone();
        alarms.replace();
        gone
    }
}

/// The hasher with lanchat's parameters.
fn hasher() -> Argon2<'static> {
    let params = Params::new(MEMORY_KIB, PASSES, LANES, None).expect("valid Argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Check `secret` against a PHC string (its own parameters are used, so older hashes still
/// verify if the parameters change).
pub fn verify(secret: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => hasher().verify_password(secret.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// Hash `secret` now, on this thread (tests and the cost measurement).
pub fn hash_now(secret: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    hasher()
        .hash_password(secret.as_bytes(), &salt)
        .expect("hashing works")
        .to_string()
}

/// Replace `path` by `bytes`: a temporary file (mode 0600), fsync, rename, fsync of the
/// directory, so a crash leaves the old file or the new one, never a mix.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let mut out = private_file()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    out.write_all(bytes)?;
    out.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "accounts_tests.rs"]
mod tests;
