//! TLS on the chat port (issue 15, "Trust on the LAN"): the server's certificate and key (made
//! once and kept, or given with `--tls-cert`/`--tls-key`), their fingerprint, and the first byte
//! that tells a TLS connection from a plain one on the same TCP port.
//!
//! Zero configuration: on first start the server makes a self-signed ECDSA P-256 certificate and
//! keeps it as `tls/cert.pem` and `tls/key.pem` under `--data-dir`, or else under
//! `$XDG_STATE_HOME/lanchat-server/` (`~/.local/state/lanchat-server/`). Clients trust it by its
//! fingerprint (the SHA-256 of its DER), which every beacon carries: see `lanchat_protocol::pin`.
//!
//! The pair appears at once or not at all: both files are written (0600) and synced in a private
//! temporary directory that is then renamed to `tls/` (0700). A `tls/` with one file, or with a
//! file that does not parse, or with a key that does not match the certificate, stops the server
//! with one line: it is never silently replaced, since clients have pinned the certificate it
//! holds. Two servers starting at once on one directory agree: the second rename fails and that
//! server loads the first one's pair.
//!
//! On a connection, [`crate::port::serve_tcp`] peeks at the first byte: 0x16 (a TLS handshake
//! record) starts a handshake, then the unchanged session (or HTTPS) over the TLS stream. The
//! Unix socket is always plain.

use std::fs::{DirBuilder, File, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use lanchat_protocol::pin::Fingerprint;
use rustls::crypto::ring;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tracing::warn;

/// The first byte of a TLS connection: a handshake record (RFC 8446, 5.1). A JSON line starts
/// with `{` or whitespace.
pub const HANDSHAKE_RECORD: u8 = 0x16;
/// Mode of the certificate and key files the server writes.
pub const FILE_MODE: u32 = 0o600;
/// Mode of the directories the server creates for them.
pub const DIR_MODE: u32 = 0o700;
/// The kept pair's directory, under the data directory or the state directory.
pub const TLS_DIR: &str = "tls";
pub const CERT_FILE: &str = "cert.pem";
pub const KEY_FILE: &str = "key.pem";

/// Where the certificate comes from (`--no-tls`, `--tls-cert`/`--tls-key`, or neither).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSetup {
    Off,
    /// Made once and kept in the data or state directory.
    Kept,
    /// A pair given by the operator; never written to.
    Given {
        cert: PathBuf,
        key: PathBuf,
    },
}

/// Why TLS cannot start. Every message is one line.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(
        "TLS: no directory to keep the certificate in: set XDG_STATE_HOME or HOME, give \
         --data-dir, or use --no-tls"
    )]
    NoStateDir,
    #[error("TLS: {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("TLS: {path}: {why}")]
    Unreadable { path: PathBuf, why: String },
    #[error(
        "TLS: {dir} holds {present} but not {missing}: restore it, or remove the directory to \
         make a new certificate (clients that pinned the old one will refuse the new one)"
    )]
    HalfPair {
        dir: PathBuf,
        present: &'static str,
        missing: &'static str,
    },
    #[error("TLS: {key} is not the key of {cert}: {why}")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        why: String,
    },
    #[error("TLS: cannot make a certificate: {0}")]
    Generate(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io {
        path: path.to_owned(),
        source,
    }
}

/// One line, whatever a library's message holds.
fn one_line(text: impl std::fmt::Display) -> String {
    text.to_string().replace(['\n', '\r'], " ")
}

/// The server's TLS identity: the acceptor and the fingerprint announced in beacons.
#[derive(Clone)]
pub struct Tls {
    acceptor: TlsAcceptor,
    fingerprint: Fingerprint,
    /// The fingerprint as on the wire, made once rather than per beacon.
    fingerprint_hex: Arc<str>,
    /// The certificate file in use.
    pub cert_path: PathBuf,
    /// Made once and kept by the server (not given with `--tls-cert`): in cluster mode such a pair
    /// gives way to the cluster's (`cluster/identity.rs`).
    pub kept: bool,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("fingerprint", &self.fingerprint)
            .field("cert_path", &self.cert_path)
            .finish()
    }
}

impl Tls {
    /// The lowercase hex SHA-256 of the DER certificate (`tls_sha256`).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint_hex
    }

    pub fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    /// Load a PEM pair: the certificate (and any chain after it) and its private key.
    pub fn load(cert: &Path, key: &Path) -> Result<Tls, TlsError> {
        let unreadable = |path: &Path, e: pem::Error| match e {
            pem::Error::Io(source) => TlsError::Io {
                path: path.to_owned(),
                source,
            },
            pem::Error::NoItemsFound => TlsError::Unreadable {
                path: path.to_owned(),
                why: "no PEM item of the expected kind".into(),
            },
            other => TlsError::Unreadable {
                path: path.to_owned(),
                why: one_line(other),
            },
        };
        let chain = CertificateDer::pem_file_iter(cert)
            .map_err(|e| unreadable(cert, e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| unreadable(cert, e))?;
        let private = PrivateKeyDer::from_pem_file(key).map_err(|e| unreadable(key, e))?;
        Tls::from_parts(chain, private, cert, key)
    }

    /// A pair from PEM text (the cluster's, from NATS); `label` names it in errors and logs.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8], label: &Path) -> Result<Tls, TlsError> {
        let unreadable = |e: pem::Error| TlsError::Unreadable {
            path: label.to_owned(),
            why: one_line(e),
        };
        let chain = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(unreadable)?;
        let private = PrivateKeyDer::from_pem_slice(key_pem).map_err(unreadable)?;
        Tls::from_parts(chain, private, label, label)
    }

    /// This pair as PEM text: its certificate and key files, read again.
    pub fn pem(&self) -> Result<(String, String), TlsError> {
        let key = self.cert_path.with_file_name(KEY_FILE);
        let read = |path: &Path| std::fs::read_to_string(path).map_err(io_err(path));
        Ok((read(&self.cert_path)?, read(&key)?))
    }

    fn from_parts(
        chain: Vec<CertificateDer<'static>>,
        private: PrivateKeyDer<'static>,
        cert: &Path,
        key: &Path,
    ) -> Result<Tls, TlsError> {
        let Some(leaf) = chain.first() else {
            return Err(TlsError::Unreadable {
                path: cert.to_owned(),
                why: "no CERTIFICATE in it".into(),
            });
        };
        let fingerprint = Fingerprint::of(leaf);
        let config =
            rustls::ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| TlsError::Generate(one_line(e)))?
                .with_no_client_auth()
                .with_single_cert(chain, private)
                .map_err(|e| match e {
                    rustls::Error::InconsistentKeys(_) => TlsError::Mismatch {
                        cert: cert.to_owned(),
                        key: key.to_owned(),
                        why: one_line(e),
                    },
                    other => TlsError::Unreadable {
                        path: key.to_owned(),
                        why: one_line(other),
                    },
                })?;
        Ok(Tls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            fingerprint,
            fingerprint_hex: fingerprint.to_string().into(),
            cert_path: cert.to_owned(),
            kept: false,
        })
    }
}

/// The directory of the kept pair: `<data-dir>/tls`, else `$XDG_STATE_HOME/lanchat-server/tls`
/// (an XDG variable that is not an absolute path is ignored, as the specification says), else
/// `$HOME/.local/state/lanchat-server/tls`.
pub fn kept_dir(data_dir: Option<&Path>) -> Result<PathBuf, TlsError> {
    if let Some(dir) = data_dir {
        return Ok(dir.join(TLS_DIR));
    }
    let absolute = |var: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    let state = absolute("XDG_STATE_HOME")
        .or_else(|| absolute("HOME").map(|home| home.join(".local").join("state")))
        .ok_or(TlsError::NoStateDir)?;
    Ok(state.join("lanchat-server").join(TLS_DIR))
}

/// The identity to serve with, per `setup`; whether it was made just now.
pub fn setup(
    setup: &TlsSetup,
    data_dir: Option<&Path>,
    server_name: &str,
) -> Result<Option<(Tls, bool)>, TlsError> {
    match setup {
        TlsSetup::Off => Ok(None),
        TlsSetup::Given { cert, key } => Ok(Some((Tls::load(cert, key)?, false))),
        TlsSetup::Kept => {
            let (mut tls, made) = load_or_create(&kept_dir(data_dir)?, server_name)?;
            tls.kept = true;
            Ok(Some((tls, made)))
        }
    }
}

/// Load the pair kept in `dir`, or make one there if it holds neither file.
pub fn load_or_create(dir: &Path, server_name: &str) -> Result<(Tls, bool), TlsError> {
    let (cert, key) = (dir.join(CERT_FILE), dir.join(KEY_FILE));
    let exists = |p: &Path| p.try_exists().map_err(io_err(p));
    match (exists(&cert)?, exists(&key)?) {
        (true, true) => {
            for path in [dir, &key, &cert] {
                tighten(path)?;
            }
            Ok((Tls::load(&cert, &key)?, false))
        }
        (false, false) => create(dir, server_name),
        (has_cert, _) => Err(TlsError::HalfPair {
            dir: dir.to_owned(),
            present: if has_cert { CERT_FILE } else { KEY_FILE },
            missing: if has_cert { KEY_FILE } else { CERT_FILE },
        }),
    }
}

/// Take group and other bits off a kept file or directory (an earlier copy, a restore from a
/// backup), with a warning: the key must stay its owner's.
fn tighten(path: &Path) -> Result<(), TlsError> {
    let meta = std::fs::symlink_metadata(path).map_err(io_err(path))?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 && (meta.is_file() || meta.is_dir()) {
        let allowed = if meta.is_dir() { DIR_MODE } else { FILE_MODE };
        std::fs::set_permissions(path, Permissions::from_mode(mode & allowed))
            .map_err(io_err(path))?;
        warn!(path = %path.display(), was = format!("{mode:04o}"), "TLS file was open to other users: made private");
    }
    Ok(())
}

/// A self-signed certificate for `server_name`: ECDSA P-256, SANs `localhost`, the server name
/// when it is a valid DNS name, and `lanchat`; valid from 1975 to 4096 (rcgen's defaults: a
/// pinned certificate has no reason to expire). Returns the certificate and the key in PEM.
pub fn generate(server_name: &str) -> Result<(String, String), TlsError> {
    let mut names = vec!["localhost".to_owned()];
    let name = server_name.to_ascii_lowercase();
    if rustls::pki_types::DnsName::try_from(name.as_str()).is_ok() && !names.contains(&name) {
        names.push(name);
    }
    if !names
        .iter()
        .any(|n| n == lanchat_protocol::pin::SERVER_NAME)
    {
        names.push(lanchat_protocol::pin::SERVER_NAME.to_owned());
    }
    let generate_err = |e: rcgen::Error| TlsError::Generate(one_line(e));
    let mut params = rcgen::CertificateParams::new(names).map_err(generate_err)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("lanchat-server {server_name}"),
    );
    let key = rcgen::KeyPair::generate().map_err(generate_err)?;
    let cert = params.self_signed(&key).map_err(generate_err)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Make a pair and put it in `dir` at once (see the module's doc).
fn create(dir: &Path, server_name: &str) -> Result<(Tls, bool), TlsError> {
    let parent = dir.parent().unwrap_or(Path::new("."));
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(parent)
        .map_err(io_err(parent))?;
    // Unique even between threads. A crash before the rename leaves this directory behind: it
    // was never in use, and nothing reads it.
    let staging = parent.join(format!(
        ".{TLS_DIR}.tmp.{}.{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    let made = stage(&staging, server_name).and_then(|()| {
        match std::fs::rename(&staging, dir) {
            Ok(()) => {
                sync_dir(parent)?;
                Ok(true)
            }
            // Another server made the pair first (or an operator put one there): theirs it is.
            Err(_) if dir.join(CERT_FILE).exists() || dir.join(KEY_FILE).exists() => Ok(false),
            Err(e) => Err(io_err(dir)(e)),
        }
    });
    let _ = std::fs::remove_dir_all(&staging);
    let made = made?;
    if made {
        Ok((Tls::load(&dir.join(CERT_FILE), &dir.join(KEY_FILE))?, true))
    } else {
        load_or_create(dir, server_name)
    }
}

/// Write a new pair into `staging`, a new private directory, and sync it.
fn stage(staging: &Path, server_name: &str) -> Result<(), TlsError> {
    DirBuilder::new()
        .mode(DIR_MODE)
        .create(staging)
        .map_err(io_err(staging))?;
    // Whatever the umask made of it.
    std::fs::set_permissions(staging, Permissions::from_mode(DIR_MODE)).map_err(io_err(staging))?;
    let (cert, key) = generate(server_name)?;
    for (name, text) in [(KEY_FILE, key), (CERT_FILE, cert)] {
        let path = staging.join(name);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(&path)
            .map_err(io_err(&path))?;
        file.set_permissions(Permissions::from_mode(FILE_MODE))
            .map_err(io_err(&path))?;
        file.write_all(text.as_bytes()).map_err(io_err(&path))?;
        file.sync_all().map_err(io_err(&path))?;
    }
    sync_dir(staging)
}

fn sync_dir(dir: &Path) -> Result<(), TlsError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Scratch(PathBuf);

    impl Scratch {
        fn new(what: &str) -> Scratch {
            let dir = std::env::temp_dir().join(format!(
                "lanchat-tls-{what}-{}-{}",
                std::process::id(),
                uuid::Uuid::new_v4()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_pair_is_made_once_private_and_kept() {
        let scratch = Scratch::new("kept");
        let dir = scratch.0.join("state").join("lanchat-server").join(TLS_DIR);
        let (first, made) = load_or_create(&dir, "office-box").unwrap();
        assert!(made);
        assert_eq!(first.fingerprint().len(), 64);
        assert!(first
            .fingerprint()
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(dir.parent().unwrap()), 0o700);
        assert_eq!(mode(&dir.join(CERT_FILE)), 0o600);
        assert_eq!(mode(&dir.join(KEY_FILE)), 0o600);
        let (again, made) = load_or_create(&dir, "another-name").unwrap();
        assert!(!made);
        assert_eq!(again.fingerprint(), first.fingerprint());
        // No staging directory is left behind.
        let left: Vec<_> = std::fs::read_dir(dir.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, [TLS_DIR]);
    }

    #[test]
    fn servers_starting_together_agree_on_one_pair() {
        let scratch = Scratch::new("race");
        let dir = scratch.0.join(TLS_DIR);
        let fingerprints: Vec<String> = std::thread::scope(|s| {
            let starts: Vec<_> = (0..4)
                .map(|_| s.spawn(|| load_or_create(&dir, "x").unwrap().0))
                .collect();
            starts
                .into_iter()
                .map(|t| t.join().unwrap().fingerprint().to_owned())
                .collect()
        });
        assert!(
            fingerprints.iter().all(|f| *f == fingerprints[0]),
            "{fingerprints:?}"
        );
        let left: Vec<_> = std::fs::read_dir(&scratch.0)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, [TLS_DIR], "no staging directory left behind");
    }

    #[test]
    fn a_half_or_corrupt_pair_is_an_error_and_is_left_alone() {
        let scratch = Scratch::new("broken");
        let dir = scratch.0.join(TLS_DIR);
        load_or_create(&dir, "x").unwrap();
        let key = std::fs::read(dir.join(KEY_FILE)).unwrap();
        std::fs::write(
            dir.join(KEY_FILE),
            b"-----BEGIN PRIVATE KEY-----\nnot base64!\n",
        )
        .unwrap();
        let err = load_or_create(&dir, "x").unwrap_err().to_string();
        assert!(err.starts_with("TLS: ") && err.contains(KEY_FILE), "{err}");
        assert!(!err.contains('\n'), "{err}");
        std::fs::remove_file(dir.join(KEY_FILE)).unwrap();
        let err = load_or_create(&dir, "x").unwrap_err();
        assert!(matches!(err, TlsError::HalfPair { .. }), "{err}");
        assert!(!dir.join(KEY_FILE).exists(), "never replaced");
        // Another pair's key does not fit this certificate.
        let (_, other_key) = generate("x").unwrap();
        std::fs::write(dir.join(KEY_FILE), other_key).unwrap();
        let err = load_or_create(&dir, "x").unwrap_err();
        assert!(matches!(err, TlsError::Mismatch { .. }), "{err}");
        std::fs::write(dir.join(KEY_FILE), key).unwrap();
        load_or_create(&dir, "x").unwrap();
    }

    #[test]
    fn loose_modes_are_tightened() {
        let scratch = Scratch::new("loose");
        let dir = scratch.0.join(TLS_DIR);
        load_or_create(&dir, "x").unwrap();
        std::fs::set_permissions(dir.join(KEY_FILE), Permissions::from_mode(0o644)).unwrap();
        load_or_create(&dir, "x").unwrap();
        assert_eq!(mode(&dir.join(KEY_FILE)), 0o600);
    }

    #[test]
    fn the_state_dir_follows_xdg() {
        let data = Path::new("/srv/chat");
        assert_eq!(kept_dir(Some(data)).unwrap(), data.join("tls"));
    }

    #[test]
    fn the_server_name_is_a_san_when_it_is_a_dns_name() {
        for (name, expect) in [("Office-Box", true), ("not a dns name", false)] {
            let (cert, _) = generate(name).unwrap();
            let der = CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
            let has = der.windows(b"office-box".len()).any(|w| w == b"office-box");
            assert_eq!(has, expect, "{name}");
            assert!(der.windows(7).any(|w| w == b"lanchat"));
            assert!(der.windows(9).any(|w| w == b"localhost"));
        }
    }
}
