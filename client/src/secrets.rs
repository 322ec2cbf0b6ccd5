//! The secrets of the nicks this user registered (PROTOCOL.md, Accounts), one per server and
//! nick, so that `/register` is done once and every later `hello` carries the secret by itself.
//!
//! Kept in `$XDG_CONFIG_HOME/lanchat/secrets.json` (else `~/.config/lanchat/secrets.json`): a
//! map from the server (as the user knows it, the key of its pin too: its name when found by
//! discovery, else the `HOST:PORT` typed; so a server whose address changes keeps its secrets) to
//! a map from the folded nick to the secret. The file is the user's only (mode 0600, in a 0700 directory) and is replaced whole
//! (temporary file, fsync, rename), so a crash leaves the old one or the new one.

use std::collections::BTreeMap;
use std::fs::{DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use lanchat_protocol::validate::name_key;
use lanchat_protocol::{Command, ReplyData};

/// Random bytes in a generated secret (192 bits), written as 32 URL-safe base64 characters.
const SECRET_BYTES: usize = 24;

/// Server -> folded nick -> secret.
type Table = BTreeMap<String, BTreeMap<String, String>>;

/// Where the secrets are kept (`None`: nowhere; tests, or no home directory).
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    path: Option<PathBuf>,
}

impl Secrets {
    /// The user's file: `$XDG_CONFIG_HOME/lanchat/secrets.json`, else under `~/.config`.
    pub fn from_env() -> Self {
        let base = crate::config::xdg_home("XDG_CONFIG_HOME", ".config");
        Secrets {
            path: base.map(|b| b.join("lanchat").join("secrets.json")),
        }
    }

    /// Secrets kept in `path`.
    pub fn at(path: impl Into<PathBuf>) -> Self {
        Secrets {
            path: Some(path.into()),
        }
    }

    /// Secrets kept nowhere: nothing is found, saving fails.
    pub fn none() -> Self {
        Secrets::default()
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    fn read(&self) -> Table {
        let Some(path) = &self.path else {
            return Table::new();
        };
        std::fs::read(path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    /// The secret kept for `nick` (in any case) on `server`.
    pub fn get(&self, server: &str, nick: &str) -> Option<String> {
        self.read().get(server)?.get(&name_key(nick)).cloned()
    }

    /// Keep `secret` for `nick` on `server`, replacing any other.
    pub fn put(&self, server: &str, nick: &str, secret: &str) -> io::Result<()> {
        let mut table = self.read();
        table
            .entry(server.to_owned())
            .or_default()
            .insert(name_key(nick), secret.to_owned());
        self.write(&table)
    }

    /// Forget the secret of `nick` on `server`.
    pub fn forget(&self, server: &str, nick: &str) -> io::Result<()> {
        let mut table = self.read();
        if let Some(nicks) = table.get_mut(server) {
            nicks.remove(&name_key(nick));
            if nicks.is_empty() {
                table.remove(server);
            }
        }
        self.write(&table)
    }

    fn write(&self, table: &Table) -> io::Result<()> {
        let Some(path) = &self.path else {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "no place to keep secrets (set HOME or XDG_CONFIG_HOME)",
            ));
        };
        if let Some(dir) = path.parent() {
            DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        }
        let tmp = path.with_extension("json.tmp");
        let mut out = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        out.write_all(&serde_json::to_vec_pretty(table).map_err(io::Error::other)?)?;
        out.sync_all()?;
        std::fs::rename(&tmp, path)
    }
}

impl Secrets {
    /// After `register` or `unregister` succeeded on `server`: keep the secret for the next
    /// `hello`, or forget it. The error is what to tell the user (with the secret to note, when
    /// it could not be kept).
    pub fn after_reply(&self, server: &str, cmd: &Command, data: &ReplyData) -> Result<(), String> {
        let kept = match (cmd, data) {
            (Command::Register { secret }, ReplyData::Register { nick, .. }) => {
                self.put(server, nick, secret)
            }
            (Command::Unregister {}, ReplyData::Unregister { nick }) => self.forget(server, nick),
            _ => return Ok(()),
        };
        kept.map_err(|e| {
            let path = self
                .path()
                .map_or("nowhere".into(), |p| p.display().to_string());
            let mut message = format!("the secret could not be kept in {path}: {e}");
            if let Command::Register { secret } = cmd {
                message.push_str(&format!("; note it yourself: /register {secret}"));
            }
            message
        })
    }
}

/// A fresh random secret: 32 URL-safe characters from the operating system's generator.
pub fn generate() -> io::Result<String> {
    let mut bytes = [0u8; SECRET_BYTES];
    getrandom::getrandom(&mut bytes).map_err(|e| io::Error::other(e.to_string()))?;
    Ok(base64url(&bytes))
}

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len() * 4 / 3 + 3);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn generated_secrets_are_valid_and_differ() {
        let a = generate().unwrap();
        assert_eq!(a.len(), 32);
        lanchat_protocol::validate::check_secret(&a).unwrap();
        assert_ne!(a, generate().unwrap());
        assert_eq!(base64url(b"\xfb\xff"), "-_8");
    }

    #[test]
    fn secrets_are_kept_per_server_and_nick_in_a_private_file() {
        let dir = std::env::temp_dir().join(format!("lanchat-secrets-{}", uuid::Uuid::new_v4()));
        let secrets = Secrets::at(dir.join("lanchat").join("secrets.json"));
        assert_eq!(secrets.get("office:7878", "ann"), None);
        secrets.put("office:7878", "Ann", "first secret").unwrap();
        secrets.put("home:7878", "ann", "second secret").unwrap();
        assert_eq!(
            secrets.get("office:7878", "ANN").as_deref(),
            Some("first secret")
        );
        assert_eq!(
            secrets.get("home:7878", "ann").as_deref(),
            Some("second secret")
        );
        let path = secrets.path().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        secrets.forget("office:7878", "ann").unwrap();
        assert_eq!(secrets.get("office:7878", "ann"), None);
        assert!(secrets.get("home:7878", "ann").is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn without_a_place_nothing_is_found_or_kept() {
        let secrets = Secrets::none();
        assert_eq!(secrets.get("s", "ann"), None);
        assert!(secrets.put("s", "ann", "a secret!").is_err());
    }
}
