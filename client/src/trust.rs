//! The servers this user trusts, the way SSH keeps `known_hosts`: one certificate fingerprint per
//! server, recorded on first contact (trust on first use) or by `lanchat trust`, and checked at
//! every later connection (`$XDG_DATA_HOME/lanchat/known_servers`).
//!
//! A server is known by what the user knows it by: its **name** when it was found by discovery
//! (the `instance` in its beacons is made anew at every server start, so it cannot key a pin that
//! must outlive a restart; the address can change with DHCP), or the **`HOST:PORT`** typed on the
//! command line when it was given by address. The file is line-based, one server per line: the 64
//! hex digits of the fingerprint, one space, the server (the rest of the line, spaces included).
//! It is written whole to a private temporary file, synced and renamed over the old one, so a
//! crash leaves the old list or the new one, never half of either; the file is 0600 in a 0700
//! directory.

use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use lanchat_protocol::pin::Fingerprint;

pub const FILE_NAME: &str = "known_servers";
pub const FILE_MODE: u32 = 0o600;
pub const DIR_MODE: u32 = 0o700;

/// How many hex digits of a fingerprint are shown where space is short (`lanchat discover`).
pub const SHORT_DIGITS: usize = 16;

/// `SHA256:` and the first [`SHORT_DIGITS`] hex digits.
pub fn short(fp: &Fingerprint) -> String {
    format!("SHA256:{}", &fp.to_string()[..SHORT_DIGITS])
}

/// `$XDG_DATA_HOME/lanchat/known_servers`, else `~/.local/share/lanchat/known_servers`.
pub fn default_path() -> Option<PathBuf> {
    let base = crate::config::xdg_home("XDG_DATA_HOME", ".local/share")?;
    Some(base.join("lanchat").join(FILE_NAME))
}

/// What the store says about a certificate a server presents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// No pin for this server yet.
    Unknown,
    Match,
    /// A different certificate is pinned.
    Mismatch {
        pinned: Fingerprint,
    },
}

/// The known servers, as read from their file.
#[derive(Debug, Clone)]
pub struct KnownServers {
    path: PathBuf,
    /// In file order; a server appears at most once.
    entries: Vec<(String, Fingerprint)>,
}

impl KnownServers {
    /// Read the file; a missing one is an empty list. Lines that cannot be read (a hand edit
    /// gone wrong) are skipped with a warning, never fatal: the pins that can be read still hold.
    pub fn load(path: PathBuf) -> io::Result<KnownServers> {
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e),
        };
        let mut known = KnownServers {
            path,
            entries: Vec::new(),
        };
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let parsed = line
                .split_once(' ')
                .and_then(|(hex, server)| Some((Fingerprint::parse(hex)?, server)))
                .filter(|(_, server)| !server.is_empty());
            match parsed {
                Some((fp, server)) => known.put(server, fp),
                None => eprintln!(
                    "lanchat: {}:{}: not `FINGERPRINT SERVER`, ignored",
                    known.path.display(),
                    n + 1
                ),
            }
        }
        Ok(known)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn get(&self, server: &str) -> Option<Fingerprint> {
        self.entries
            .iter()
            .find(|(s, _)| s == server)
            .map(|(_, fp)| *fp)
    }

    pub fn check(&self, server: &str, presented: &Fingerprint) -> Check {
        match self.get(server) {
            None => Check::Unknown,
            Some(pinned) if pinned == *presented => Check::Match,
            Some(pinned) => Check::Mismatch { pinned },
        }
    }

    pub fn entries(&self) -> &[(String, Fingerprint)] {
        &self.entries
    }

    /// Pin `fp` for `server` (replacing any earlier pin) and save the file. A server name with
    /// a control character (a forged beacon's, say) cannot be one line: refused.
    pub fn set(&mut self, server: &str, fp: Fingerprint) -> io::Result<()> {
        if server.is_empty() || server.chars().any(char::is_control) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cannot record {server:?}: empty, or holds a control character"),
            ));
        }
        self.put(server, fp);
        self.save()
    }

    fn put(&mut self, server: &str, fp: Fingerprint) {
        match self.entries.iter_mut().find(|(s, _)| s == server) {
            Some(entry) => entry.1 = fp,
            None => self.entries.push((server.to_owned(), fp)),
        }
    }

    /// Write a temporary file next to the real one (0600 from its creation), sync it, rename it
    /// over the real one, and sync the directory so the rename itself is durable.
    fn save(&self) -> io::Result<()> {
        let dir = self
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(dir)?;
        // DirBuilder's mode is filtered by the umask and leaves an existing directory alone.
        std::fs::set_permissions(dir, Permissions::from_mode(DIR_MODE))?;
        let mut text = String::from(
            "# lanchat known servers: FINGERPRINT (SHA-256 of the certificate) SERVER (name or HOST:PORT)\n",
        );
        for (server, fp) in &self.entries {
            text.push_str(&format!("{fp} {server}\n"));
        }
        let tmp = dir.join(format!(".{FILE_NAME}.{}.tmp", std::process::id()));
        let written = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(FILE_MODE)
                .open(&tmp)?;
            file.set_permissions(Permissions::from_mode(FILE_MODE))?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written?;
        std::fs::File::open(dir)?.sync_all()
    }
}

/// What to tell a user on first contact.
pub fn first_contact(server: &str, fp: &Fingerprint, recorded_in: Option<&Path>) -> String {
    let kept = match recorded_in {
        Some(path) => format!("recorded in {}", path.display()),
        None => "not recorded (no data directory)".to_owned(),
    };
    format!(
        "first contact with {server}: its certificate is {} ({fp}); {kept}",
        short(fp)
    )
}

/// Where the pin that a server failed to match came from: it decides what the user can do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinSource {
    /// The known-servers file.
    Known(PathBuf),
    /// `--tls-fingerprint`.
    Flag,
    /// The beacon heard during discovery (first contact).
    Beacon,
    /// Presented at this run's first connection, and not recorded (no data directory).
    Learnt,
}

/// The refusal, loud and complete: what was expected, what was presented, what it may mean, and
/// the exact command that accepts the new certificate.
pub fn mismatch(
    server: &str,
    address: &str,
    pinned: &Fingerprint,
    presented: &Fingerprint,
    source: &PinSource,
) -> String {
    let warning =
        "@    WARNING: THE SERVER'S CERTIFICATE HAS CHANGED, OR THIS IS NOT THE SERVER    @";
    let bar = "@".repeat(warning.len());
    let mut lines = vec![
        format!("the certificate of {server} does not match its pin: not connected"),
        bar.clone(),
        warning.to_owned(),
        bar,
        format!("The server at {address} presented a certificate other than the one expected."),
        "Nothing was sent to it: no hello, no nick, no password.".to_owned(),
        "Either its certificate was replaced (a new data directory, a reinstall), or someone on"
            .to_owned(),
        "the network is impersonating it.".to_owned(),
    ];
    let expected = match source {
        PinSource::Known(path) => format!("recorded in {}", path.display()),
        PinSource::Flag => "given with --tls-fingerprint".to_owned(),
        PinSource::Beacon => "announced in its beacon".to_owned(),
        PinSource::Learnt => "presented at this run's first connection".to_owned(),
    };
    lines.push(format!("  expected:  {pinned}  ({expected})"));
    lines.push(format!("  presented: {presented}"));
    lines.push(
        "Ask the server's operator for the fingerprint it prints at start (`tls_sha256 ...`)."
            .to_owned(),
    );
    match source {
        PinSource::Known(_) => {
            lines.push("If it is the new one, accept it with:".to_owned());
            lines.push(format!(
                "  lanchat trust {} {presented}",
                shell_word(server)
            ));
        }
        PinSource::Flag => lines.push(format!(
            "If it is the new one, run again with --tls-fingerprint {presented}"
        )),
        PinSource::Beacon | PinSource::Learnt => lines.push(format!(
            "If it is right, connect explicitly: lanchat {address} --tls-fingerprint {presented}"
        )),
    }
    lines.join("\n")
}

/// `word` quoted for a POSIX shell when it needs to be.
pub fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:/@[]".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(what: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("lanchat-trust-{what}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn records_matches_and_mismatches_across_loads() {
        let dir = temp_dir("record");
        let path = dir.join("lanchat").join(FILE_NAME);
        let (one, two) = (Fingerprint::of(b"one"), Fingerprint::of(b"two"));
        let mut known = KnownServers::load(path.clone()).unwrap();
        assert_eq!(known.check("office lan", &one), Check::Unknown);
        known.set("office lan", one).unwrap();
        known.set("127.0.0.1:7878", two).unwrap();

        let known = KnownServers::load(path.clone()).unwrap();
        assert_eq!(known.check("office lan", &one), Check::Match);
        assert_eq!(
            known.check("office lan", &two),
            Check::Mismatch { pinned: one }
        );
        assert_eq!(known.get("127.0.0.1:7878"), Some(two));
        assert_eq!(known.get("office"), None, "the whole name is the key");

        // Accepting a new certificate replaces the pin; the other entry stays.
        let mut known = known;
        known.set("office lan", two).unwrap();
        let known = KnownServers::load(path).unwrap();
        assert_eq!(known.entries().len(), 2);
        assert_eq!(known.check("office lan", &two), Check::Match);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_file_is_private_and_replaced_whole() {
        let dir = temp_dir("modes");
        let home = dir.join("lanchat");
        // An existing directory with loose permissions is tightened.
        std::fs::create_dir_all(&home).unwrap();
        std::fs::set_permissions(&home, Permissions::from_mode(0o755)).unwrap();
        let path = home.join(FILE_NAME);
        let mut known = KnownServers::load(path.clone()).unwrap();
        known.set("office", Fingerprint::of(b"x")).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), FILE_MODE);
        assert_eq!(mode(&home), DIR_MODE);
        let inode = |p: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
        let before = inode(&path);
        known.set("annex", Fingerprint::of(b"y")).unwrap();
        assert_ne!(inode(&path), before, "a new file renamed into place");
        let names: Vec<String> = std::fs::read_dir(&home)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec![FILE_NAME.to_owned()], "no temporary file left");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn unreadable_lines_are_skipped_and_bad_names_refused() {
        let dir = temp_dir("lines");
        let path = dir.join(FILE_NAME);
        let fp = Fingerprint::of(b"ok");
        std::fs::write(
            &path,
            format!("# comment\n\nnot-hex office\n{fp} \n{fp} good one\n"),
        )
        .unwrap();
        let mut known = KnownServers::load(path).unwrap();
        assert_eq!(known.entries(), &[("good one".to_owned(), fp)]);
        assert!(known.set("evil\nname", fp).is_err());
        assert!(known.set("", fp).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn messages_name_both_fingerprints_and_the_command() {
        let (old, new) = (Fingerprint::of(b"old"), Fingerprint::of(b"new"));
        let text = mismatch(
            "office lan",
            "127.0.0.1:7878",
            &old,
            &new,
            &PinSource::Known("/k".into()),
        );
        assert!(text.contains(&old.to_string()) && text.contains(&new.to_string()));
        assert!(text.contains(&format!("lanchat trust 'office lan' {new}")));
        assert!(text.contains("no password"));
        let flag = mismatch("h:1", "h:1", &old, &new, &PinSource::Flag);
        assert!(flag.contains(&format!("--tls-fingerprint {new}")));
        let hello = first_contact("office", &new, Some(Path::new("/k")));
        assert!(hello.contains(&short(&new)) && hello.contains(&new.to_string()));
        assert_eq!(short(&new).len(), "SHA256:".len() + SHORT_DIGITS);
        assert_eq!(shell_word("127.0.0.1:7878"), "127.0.0.1:7878");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
    }
}
