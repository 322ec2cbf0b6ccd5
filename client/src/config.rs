//! The config file, `$XDG_CONFIG_HOME/lanchat/config.toml` (else `~/.config/lanchat/config.toml`,
//! or `--config PATH`): the user's standing choices. Command-line flags and `LANCHAT_*`
//! variables override it; [`Config::load`] reads it, [`write_default`] writes the commented
//! default (`lanchat --write-config`).
//!
//! Servers listed here are a hand-written address book: a name for an address, and optionally
//! the certificate to trust, which acts exactly like `--tls-fingerprint` (nothing is recorded).
//! The pins lanchat learns itself stay in `known_servers` in the data directory (see
//! [`crate::trust`]); an entry without a fingerprint uses that store as any address would.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::Error;

/// The commented default written by `--write-config`: every key, commented out at its default.
pub const DEFAULT: &str = r##"# lanchat's config file. Flags and LANCHAT_* variables override what is set here.
# Every key is optional; the values shown commented out are the defaults.

# Your nick (default: your login name). --nick and LANCHAT_NICK override it.
# nick = "ann"

# The server to connect to when none is given on the command line: a name from [[servers]]
# below, or HOST[:PORT]. Without it (and without HOST), lanchat looks for servers on the LAN.
# server = "office"

# Rooms to join at the start, after those the server puts you in. --room adds one and makes it
# the current room.
# autojoin = ["lobby", "dev"]

# Words that count as mentions of you, besides your nick (whole words, any case).
# highlight = ["ann", "release"]

# Ring the terminal bell on mentions and direct messages (--no-bell turns it off).
# bell = true

# Desktop notifications for mentions and direct messages, through the terminal's own
# notification sequences: "osc777" (urxvt, foot, WezTerm, Ghostty, VTE terminals), "osc9"
# (iTerm2, kitty, Windows Terminal, WezTerm), "both" (a terminal that knows both may show two),
# or "off". Sent whether or not the terminal has focus.
# notify = "off"

# Colour (nick colours, highlighted mentions). false: never. NO_COLOR in the environment also
# turns it off.
# color = true

# The time before each line, in strftime form (chrono): "%H:%M", "%H:%M:%S", "%I:%M %p"...
# Lines not from today also show their date.
# timestamp = "%H:%M"

# Keep logs of the rooms and direct messages, in plain text with dates, under
# $XDG_DATA_HOME/lanchat/logs/<server>/ (--log turns it on for one run).
# log = false

# A log over this many MiB is renamed to <room>.log.1 (replacing the one before) and a new one
# started; 0: never. Fractions allowed.
# log_max_mib = 10

# Minutes without a typed line after which lanchat sets you away (0: never; fractions allowed).
# The next line you type sets you back, with a summary of what arrived meanwhile.
# away_after = 0

# Servers by name: `lanchat office` connects to this address. A fingerprint (64 hex digits,
# as the server prints it in `tls_sha256 ...`) is trusted like --tls-fingerprint; without one,
# the pin lanchat recorded in known_servers (or learns on first contact) is used.
# [[servers]]
# name = "office"
# address = "10.0.0.5:7878"
# fingerprint = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
"##;

/// What the config file says. Every field is optional: a missing key keeps the default.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub nick: Option<String>,
    pub server: Option<String>,
    pub autojoin: Vec<String>,
    pub highlight: Vec<String>,
    pub bell: Option<bool>,
    pub notify: Option<Notify>,
    pub color: Option<bool>,
    pub timestamp: Option<String>,
    pub log: Option<bool>,
    pub log_max_mib: Option<f64>,
    pub away_after: Option<f64>,
    pub servers: Vec<ServerEntry>,
}

/// The terminal notification sequences to send (`notify`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Notify {
    #[default]
    Off,
    Osc777,
    Osc9,
    Both,
}

/// A `[[servers]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerEntry {
    pub name: String,
    pub address: String,
    pub fingerprint: Option<String>,
}

impl Config {
    /// The file to read: `--config`, else `$XDG_CONFIG_HOME/lanchat/config.toml`, else under
    /// `~/.config`. `None` when there is no home to look in.
    pub fn path(flag: Option<&Path>) -> Option<PathBuf> {
        if let Some(path) = flag {
            return Some(path.to_owned());
        }
        Some(xdg_home("XDG_CONFIG_HOME", ".config")?.join("lanchat/config.toml"))
    }

    /// Read the config. A missing default file is an empty config; a missing `--config` file,
    /// or a file that does not parse, is bad usage with one line naming the file and the line.
    pub fn load(flag: Option<&Path>) -> Result<Config, Error> {
        let Some(path) = Config::path(flag) else {
            return Ok(Config::default());
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Config::parse(&text).map_err(|e| Error::Usage(e.at(&path))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && flag.is_none() => {
                Ok(Config::default())
            }
            Err(e) => Err(Error::Usage(format!("{}: {e}", path.display()))),
        }
    }

    /// Parse and check a config's text.
    pub fn parse(text: &str) -> Result<Config, Problem> {
        let config: Config = toml::from_str(text).map_err(|e| Problem {
            line: e.span().map(|s| line_of(text, s.start)),
            message: e.message().trim().replace('\n', "; "),
        })?;
        config.check(text)?;
        Ok(config)
    }

    /// The checks serde cannot make: nicks, rooms, fingerprints, the timestamp format.
    fn check(&self, text: &str) -> Result<(), Problem> {
        let problem = |key: &str, message: String| Problem {
            line: find_key(text, key),
            message,
        };
        if let Some(nick) = &self.nick {
            lanchat_protocol::validate::check_nick(nick)
                .map_err(|(_, why)| problem("nick", format!("nick: {why}")))?;
        }
        for room in &self.autojoin {
            crate::commands::room_name(room)
                .map_err(|h| problem("autojoin", format!("autojoin: {}", h.0)))?;
        }
        if let Some(format) = &self.timestamp {
            use chrono::format::{Item, StrftimeItems};
            if StrftimeItems::new(format).any(|i| matches!(i, Item::Error)) {
                return Err(problem(
                    "timestamp",
                    format!("timestamp: {format:?} is not a strftime format"),
                ));
            }
        }
        if let Some(minutes) = self.away_after {
            if !(minutes.is_finite() && (0.0..=1e6).contains(&minutes)) {
                return Err(problem(
                    "away_after",
                    "away_after: a number of minutes, 0 or more".into(),
                ));
            }
        }
        if let Some(mib) = self.log_max_mib {
            if !(mib.is_finite() && (0.0..=1e6).contains(&mib)) {
                return Err(problem(
                    "log_max_mib",
                    "log_max_mib: a number of MiB, 0 or more".into(),
                ));
            }
        }
        for entry in &self.servers {
            if let Some(hex) = &entry.fingerprint {
                if lanchat_protocol::pin::Fingerprint::parse(hex.trim()).is_none() {
                    return Err(problem(
                        "fingerprint",
                        format!(
                            "servers {:?}: the fingerprint is not 64 hex digits",
                            entry.name
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// What the session takes from the config; `log` is `--log`, `server` what the server is
    /// known as (its logs' directory).
    pub fn extras(&self, log: bool, server: &str) -> Extras {
        let log = log || self.log == Some(true);
        Extras {
            notify: self.notify.unwrap_or_default(),
            away_after: self
                .away_after
                .filter(|m| *m > 0.0)
                .map(|m| std::time::Duration::from_secs_f64(m * 60.0)),
            log_dir: log.then(|| crate::logs::Logs::dir_for(server)).flatten(),
            log_max: Some(self.log_max_mib.unwrap_or(crate::logs::MAX_MIB))
                .filter(|mib| *mib > 0.0)
                .map(|mib| (mib * 1024.0 * 1024.0) as u64),
            autojoin: self.autojoin.clone(),
            look: Look {
                highlight: self.highlight.clone(),
                timestamp: self.timestamp.clone(),
            },
        }
    }

    /// Where to connect and the fingerprint to trust as `--tls-fingerprint` would: the command
    /// line's HOST, else the config's `server`; a `[[servers]]` name (or address) stands for its
    /// address and its fingerprint, unless the flag gives one.
    pub fn target<'a>(
        &'a self,
        host: Option<&'a str>,
        fingerprint: Option<&'a str>,
    ) -> (Option<&'a str>, Option<&'a str>) {
        let host = host.or(self.server.as_deref());
        let entry = host.and_then(|h| self.server(h));
        let fingerprint = fingerprint.or(entry.and_then(|e| e.fingerprint.as_deref()));
        (
            entry.map_or(host, |e| Some(e.address.as_str())),
            fingerprint,
        )
    }

    /// The `[[servers]]` entry a name (or address) given on the command line stands for.
    pub fn server(&self, name: &str) -> Option<&ServerEntry> {
        let found = self.servers.iter().find(|s| s.name == name);
        found.or_else(|| self.servers.iter().find(|s| s.address == name))
    }
}

/// What the session takes from the config (after the flags' overrides).
#[derive(Debug, Clone, Default)]
pub struct Extras {
    /// Rooms to join at the start.
    pub autojoin: Vec<String>,
    pub look: Look,
    /// Where to keep the chat logs of this server, when kept.
    pub log_dir: Option<PathBuf>,
    /// The size at which a log is rotated (`None`: never).
    pub log_max: Option<u64>,
    pub notify: Notify,
    /// Automatic away after this long without a typed line.
    pub away_after: Option<std::time::Duration>,
}

/// What the config file changes in how lines look.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Look {
    /// Words that count as mentions besides the user's nick.
    pub highlight: Vec<String>,
    /// The time's strftime format (checked when the config is read), else `HH:MM`.
    pub timestamp: Option<String>,
}

/// No highlight words, the default time format.
pub static PLAIN_LOOK: Look = Look {
    highlight: Vec::new(),
    timestamp: None,
};

/// What is wrong with a config file, and on which line (1-based) when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: Option<usize>,
    pub message: String,
}

impl Problem {
    /// One line: `PATH:LINE: problem`.
    pub fn at(&self, path: &Path) -> String {
        match self.line {
            Some(line) => format!("{}:{line}: {}", path.display(), self.message),
            None => format!("{}: {}", path.display(), self.message),
        }
    }
}

/// An XDG base directory: `$VAR` when set and not empty, else `~/FALLBACK`.
pub fn xdg_home(var: &str, fallback: &str) -> Option<PathBuf> {
    match std::env::var_os(var).filter(|v| !v.is_empty()) {
        Some(dir) => Some(PathBuf::from(dir)),
        None => Some(PathBuf::from(std::env::var_os("HOME")?).join(fallback)),
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The first line setting `key` (for the checks made after parsing, which have no span).
fn find_key(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            l.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map(|i| i + 1)
}

/// `lanchat --write-config`: write the default where the config is read from, and say where.
pub fn write_command(flag: Option<&Path>) -> Result<(), Error> {
    let path = Config::path(flag)
        .ok_or_else(|| Error::Usage("no config directory: set XDG_CONFIG_HOME or HOME".into()))?;
    write_default(&path)?;
    println!("wrote {}", path.display());
    Ok(())
}

/// The commented default at `path`, never over an existing file.
pub fn write_default(path: &Path) -> Result<(), Error> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Fatal(format!("cannot create {}: {e}", dir.display())))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => Error::Usage(format!(
                "{} exists; not overwritten (move it away to write the default)",
                path.display()
            )),
            _ => Error::Fatal(format!("cannot create {}: {e}", path.display())),
        })?;
    file.write_all(DEFAULT.as_bytes())
        .map_err(|e| Error::Fatal(format!("cannot write {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_file_parses_to_the_defaults() {
        assert_eq!(Config::parse(DEFAULT).unwrap(), Config::default());
        // Uncommented, every key parses.
        let all: String = DEFAULT
            .lines()
            .map(|l| {
                l.strip_prefix("# ")
                    .filter(|l| l.contains(" = ") || l.starts_with("[["))
            })
            .map(|l| l.unwrap_or("").to_owned() + "\n")
            .collect();
        let config = Config::parse(&all).unwrap();
        assert_eq!(config.nick.as_deref(), Some("ann"));
        assert_eq!(config.autojoin, ["lobby", "dev"]);
        assert_eq!(config.away_after, Some(0.0));
        assert_eq!(config.extras(false, "s").away_after, None);
        assert_eq!(config.server("office").unwrap().address, "10.0.0.5:7878");
        assert_eq!(config.server("10.0.0.5:7878").unwrap().name, "office");
    }

    #[test]
    fn problems_name_their_line() {
        let p = Config::parse("nick = \"ann\"\n\nbell = \"yes\"\n").unwrap_err();
        assert_eq!(p.line, Some(3), "{p:?}");
        assert!(p.message.contains("bool"), "{p:?}");
        let p = Config::parse("nick = \"ann\"\ncolour = true\n").unwrap_err();
        assert_eq!(p.line, Some(2));
        assert!(p.message.contains("unknown field"), "{p:?}");
        let p = Config::parse("nick = \"ann\"\nbell = [\n").unwrap_err();
        assert!(p.line >= Some(2), "{p:?}");
        let p = Config::parse("bell = true\nnick = \"a b\"\n").unwrap_err();
        assert_eq!(p.line, Some(2));
        let p = Config::parse("autojoin = [\"ok\", \"bad room\"]\n").unwrap_err();
        assert_eq!(p.line, Some(1));
        let p = Config::parse("away_after = -1\n").unwrap_err();
        assert_eq!(p.line, Some(1), "{p:?}");
        let p = Config::parse("timestamp = \"%Q\"\n").unwrap_err();
        assert!(p.message.contains("strftime"), "{p:?}");
        let p = Config::parse("[[servers]]\nname = \"x\"\naddress = \"h\"\nfingerprint = \"ab\"\n")
            .unwrap_err();
        assert_eq!(p.line, Some(4));
        assert_eq!(
            p.at(Path::new("/c.toml")),
            "/c.toml:4: servers \"x\": the fingerprint is not 64 hex digits"
        );
    }

    #[test]
    fn the_command_line_overrides_the_config() {
        let fp = "ab".repeat(32);
        let text = format!(
            "server = \"office\"\n[[servers]]\nname = \"office\"\naddress = \"10.0.0.5:7878\"\n\
             fingerprint = \"{fp}\"\n"
        );
        let config = Config::parse(&text).unwrap();
        let office = (Some("10.0.0.5:7878"), Some(fp.as_str()));
        assert_eq!(config.target(None, None), office);
        assert_eq!(config.target(Some("office"), None), office);
        assert_eq!(config.target(Some("10.0.0.5:7878"), None), office);
        assert_eq!(
            config.target(Some("other:1"), None),
            (Some("other:1"), None)
        );
        assert_eq!(
            config.target(None, Some("cd")),
            (Some("10.0.0.5:7878"), Some("cd"))
        );
        assert_eq!(Config::default().target(None, None), (None, None));
    }

    #[test]
    fn write_default_never_overwrites() {
        let dir = std::env::temp_dir().join(format!("lanchat-config-{}", std::process::id()));
        let path = dir.join("lanchat/config.toml");
        let _ = std::fs::remove_dir_all(&dir);
        write_default(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), DEFAULT);
        assert!(matches!(write_default(&path), Err(Error::Usage(_))));
        assert_eq!(Config::load(Some(&path)).unwrap(), Config::default());
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(matches!(Config::load(Some(&path)), Err(Error::Usage(_))));
    }
}
