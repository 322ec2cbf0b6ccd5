//! TLS to the server, behind the link's [`Dialer`] seam: [`SecureDialer`] wraps the TCP dialer
//! and trusts exactly one certificate, the pinned one (`lanchat_protocol::pin`). Every dial,
//! reconnects included, verifies again; a certificate that does not match fails the handshake,
//! so nothing (no hello, no password) is ever written to that server.
//!
//! Where the pin comes from is decided by the caller ([`Security`]): the known-servers file, the
//! `--tls-fingerprint` flag, or a beacon heard during discovery (first contact, recorded once the
//! handshake succeeds). Without any of them (`lanchat HOST:PORT` to a server never seen) the
//! dialer learns the certificate the server presents and records it: trust on first use. Only
//! then, and only when the server plainly does not speak TLS (it answers the handshake with
//! something that is not TLS, closes, or says nothing for [`PROBE_TIMEOUT`]), does it fall back to
//! plain TCP, and says so. A server with a pin never gets a plain connection.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use lanchat_protocol::pin::{self, Fingerprint, PinnedCert};
use rustls::pki_types::ServerName;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;

use crate::link::{Dialer, Stream, TcpDialer, Untrusted};
use crate::trust::{self, KnownServers, PinSource};

/// How long a server never seen before may take to answer a TLS handshake before it is taken for
/// a server that does not speak TLS (one started with `--no-tls` waits for a line that the
/// handshake never ends). Within the link's five-second connect timeout, with room for the plain
/// connection after it.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The certificate to trust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Security {
    /// Plain TCP: `--no-tls`, or a discovered server whose beacon announces no TLS.
    Plain,
    /// TLS, trusting exactly `pin`. `record`: a first contact through discovery, to be recorded
    /// once the handshake succeeds.
    Pinned {
        pin: Fingerprint,
        source: PinSource,
        record: bool,
    },
    /// TLS, learning the certificate (trust on first use); plain if the server does not speak TLS.
    Learn,
}

/// A dialer that speaks TLS (or, when told or when the server cannot, plain TCP) over TCP.
pub struct SecureDialer {
    tcp: TcpDialer,
    /// What the user knows the server by: its key in the known-servers file, and in messages.
    server: String,
    security: Security,
    /// Where first contacts are recorded; `None` when there is no data directory.
    known: Option<KnownServers>,
    /// A password will follow: a plain connection is worth a warning.
    password: bool,
}

impl SecureDialer {
    pub fn new(
        tcp: TcpDialer,
        server: String,
        security: Security,
        known: Option<KnownServers>,
        password: bool,
    ) -> Self {
        SecureDialer {
            tcp,
            server,
            security,
            known,
            password,
        }
    }

    /// The handshake, with the certificate the server presented (if it got that far).
    async fn handshake(
        &self,
        stream: Box<dyn Stream>,
        pin: Option<Fingerprint>,
    ) -> (io::Result<Box<dyn Stream>>, Option<Fingerprint>) {
        let verifier = Arc::new(PinnedCert::pinned_or_any(pin));
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
        let name = ServerName::try_from(pin::SERVER_NAME).expect("a valid DNS name");
        let connector = TlsConnector::from(Arc::new(config));
        let result = match pin {
            Some(_) => connector.connect(name, stream).await,
            None => match timeout(PROBE_TIMEOUT, connector.connect(name, stream)).await {
                Ok(r) => r,
                Err(_) => Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no answer to the TLS handshake",
                )),
            },
        };
        let presented = verifier.presented();
        (
            result.map(|tls| Box::new(tls) as Box<dyn Stream>),
            presented,
        )
    }

    /// A certificate was accepted for the first time: pin it from now on, record it, say so.
    fn first_contact(&mut self, fp: Fingerprint) {
        let recorded = match &mut self.known {
            Some(known) => match known.set(&self.server, fp) {
                Ok(()) => Some(known.path().to_owned()),
                Err(e) => {
                    eprintln!(
                        "lanchat: warning: cannot record the certificate in {}: {e}",
                        known.path().display()
                    );
                    None
                }
            },
            None => None,
        };
        eprintln!(
            "lanchat: {}",
            trust::first_contact(&self.server, &fp, recorded.as_deref())
        );
        let source = recorded.map_or(PinSource::Learnt, PinSource::Known);
        self.security = Security::Pinned {
            pin: fp,
            source,
            record: false,
        };
    }

    async fn dial_tls(&mut self) -> io::Result<Box<dyn Stream>> {
        let stream = self.tcp.dial().await?;
        let pinned = match &self.security {
            Security::Plain => return Ok(stream),
            Security::Pinned { pin, .. } => Some(*pin),
            Security::Learn => None,
        };
        let (result, presented) = self.handshake(stream, pinned).await;
        match (&self.security, result, presented) {
            (Security::Pinned { pin, source, .. }, Err(_), Some(presented))
                if presented != *pin =>
            {
                let text =
                    trust::mismatch(&self.server, &self.tcp.to_string(), pin, &presented, source);
                Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    Untrusted(text),
                ))
            }
            (Security::Pinned { record, pin, .. }, Ok(stream), _) => {
                if *record {
                    let pin = *pin;
                    self.first_contact(pin);
                }
                Ok(stream)
            }
            (Security::Learn, Ok(stream), Some(presented)) => {
                self.first_contact(presented);
                Ok(stream)
            }
            (Security::Learn, Err(e), None) if speaks_no_tls(&e) => {
                let mut warning = format!(
                    "lanchat: warning: {} does not speak TLS ({e}): connecting in plain text, \
                     which anyone on the network can read",
                    self.tcp
                );
                if self.password {
                    warning.push_str(", the password included");
                }
                eprintln!("{warning}");
                self.security = Security::Plain;
                self.tcp.dial().await
            }
            (_, Ok(stream), _) => Ok(stream),
            (_, Err(e), _) => Err(io::Error::new(e.kind(), format!("TLS: {e}"))),
        }
    }
}

/// A failed handshake that shows the server does not speak TLS at all: it answered with
/// something else (a plain server's `error` line), closed, or said nothing.
fn speaks_no_tls(e: &io::Error) -> bool {
    let not_tls = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|r| matches!(r, rustls::Error::InvalidMessage(_)));
    not_tls
        || matches!(
            e.kind(),
            io::ErrorKind::UnexpectedEof | io::ErrorKind::TimedOut | io::ErrorKind::ConnectionReset
        )
}

impl fmt::Display for SecureDialer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.tcp.fmt(f)
    }
}

impl Dialer for SecureDialer {
    fn dial(&mut self) -> BoxFuture<'_, io::Result<Box<dyn Stream>>> {
        Box::pin(self.dial_tls())
    }

    fn server(&self) -> String {
        self.server.clone()
    }

    fn next_node(&mut self) -> bool {
        self.tcp.next_node()
    }

    fn password_follows(&mut self) {
        self.password = true;
        // Asked for after a plain connection was refused: the warning then did not say so.
        if self.security == Security::Plain {
            eprintln!(
                "lanchat: warning: no TLS to {}: the password travels in clear text",
                self.tcp
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_is_known_by_its_name_not_its_address() {
        let dialer = SecureDialer::new(
            TcpDialer::new("10.0.0.5:7878"),
            "office".into(),
            Security::Learn,
            None,
            false,
        );
        // Pins and the secrets of registered nicks are kept under this: a new address (DHCP)
        // must not lose them.
        assert_eq!(Dialer::server(&dialer), "office");
        assert_eq!(dialer.to_string(), "10.0.0.5:7878");
    }

    #[test]
    fn a_plain_answer_or_silence_means_no_tls() {
        let plain = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
        );
        assert!(speaks_no_tls(&plain));
        assert!(speaks_no_tls(&io::Error::from(io::ErrorKind::TimedOut)));
        let cert = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadSignature),
        );
        assert!(!speaks_no_tls(&cert));
        let untrusted = io::Error::new(io::ErrorKind::PermissionDenied, Untrusted("no".into()));
        assert_eq!(
            Untrusted::find(&untrusted).map(|u| u.0.as_str()),
            Some("no")
        );
        assert!(Untrusted::find(&plain).is_none());
    }
}
