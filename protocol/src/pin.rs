//! Trust on the LAN (issue 15): a server's certificate is known by its fingerprint, the
//! lowercase hex SHA-256 of its DER encoding, which the server announces in every beacon and
//! prints at start. A client pins that fingerprint and trusts exactly that certificate: no
//! certificate authority, no host name check, no expiry (a self-signed certificate made once by
//! the server is the usual case). The handshake signatures are still verified, so only the holder
//! of the pinned certificate's key can complete it.
//!
//! [`client_config`] builds a rustls client configuration around [`PinnedCert`]; the e2e harness
//! uses it, and the terminal client can. A client must never send a password to a server whose
//! certificate it has not pinned, or whose certificate does not match the pin: the handshake fails
//! before any line is sent.

use std::fmt;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{ring, verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};

/// The SHA-256 of a DER certificate.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The fingerprint of a certificate in DER.
    pub fn of(cert_der: &[u8]) -> Fingerprint {
        Fingerprint(Sha256::digest(cert_der).into())
    }

    /// Read 64 hex digits (either case, as a user may type them); `None` for anything else.
    pub fn parse(hex: &str) -> Option<Fingerprint> {
        let hex = hex.as_bytes();
        if hex.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
            let digit = |c: u8| (c as char).to_digit(16);
            *byte = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
        }
        Some(Fingerprint(out))
    }
}

/// Lowercase hex, as on the wire (`tls_sha256`).
impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// A verifier that accepts exactly the server certificate whose SHA-256 is the pin (the server
/// name and the validity dates are not looked at), or, made with [`PinnedCert::first_use`], any
/// certificate; either way it notes the certificate presented ([`PinnedCert::presented`]), and it
/// checks the handshake signatures with the ring provider's algorithms, so the server holds the
/// key of what it presented.
#[derive(Debug)]
pub struct PinnedCert {
    /// `None`: any certificate (trust on first use: the caller records what was presented).
    pin: Option<Fingerprint>,
    presented: Mutex<Option<Fingerprint>>,
    provider: Arc<CryptoProvider>,
}

impl PinnedCert {
    /// Trust exactly `pin`.
    pub fn new(pin: Fingerprint) -> PinnedCert {
        PinnedCert::pinned_or_any(Some(pin))
    }

    /// Trust any certificate, to learn it: the first contact of trust on first use.
    pub fn first_use() -> PinnedCert {
        PinnedCert::pinned_or_any(None)
    }

    /// [`PinnedCert::new`] with a pin, [`PinnedCert::first_use`] without.
    pub fn pinned_or_any(pin: Option<Fingerprint>) -> PinnedCert {
        PinnedCert {
            pin,
            presented: Mutex::new(None),
            provider: Arc::new(ring::default_provider()),
        }
    }

    /// The certificate the server presented in the last handshake, if it got that far.
    pub fn presented(&self) -> Option<Fingerprint> {
        *self.presented.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl ServerCertVerifier for PinnedCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = Fingerprint::of(end_entity);
        *self.presented.lock().unwrap_or_else(|p| p.into_inner()) = Some(presented);
        if self.pin.is_none_or(|pin| pin == presented) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A client configuration (TLS 1.2 and 1.3, ring) that trusts only the pinned certificate.
pub fn client_config(pin: Fingerprint) -> rustls::ClientConfig {
    rustls::ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedCert::new(pin)))
        .with_no_client_auth()
}

/// The name a client sends in SNI: the verifier ignores it, and lanchat's own certificates
/// carry it, so a strict server-side lookup finds it too.
pub const SERVER_NAME: &str = "lanchat";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_is_lowercase() {
        // SHA-256 of the empty input, a well-known value.
        let empty = Fingerprint::of(b"");
        let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(empty.to_string(), hex);
        assert_eq!(Fingerprint::parse(hex), Some(empty));
        assert_eq!(Fingerprint::parse(&hex.to_uppercase()), Some(empty));
        for bad in ["", &hex[1..], &format!("{hex}0"), &hex.replace('e', "g")] {
            assert_eq!(Fingerprint::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn only_the_pinned_certificate_is_accepted() {
        let verifier = PinnedCert::new(Fingerprint::of(b"the cert"));
        let name = ServerName::try_from(SERVER_NAME).unwrap();
        let check = |der: &'static [u8]| {
            verifier.verify_server_cert(
                &CertificateDer::from(der),
                &[],
                &name,
                &[],
                UnixTime::now(),
            )
        };
        assert!(check(b"the cert").is_ok());
        assert!(check(b"another cert").is_err());
        assert_eq!(verifier.presented(), Some(Fingerprint::of(b"another cert")));
    }

    #[test]
    fn first_use_accepts_any_certificate_and_notes_it() {
        let verifier = PinnedCert::first_use();
        let name = ServerName::try_from(SERVER_NAME).unwrap();
        assert_eq!(verifier.presented(), None);
        let der = CertificateDer::from(&b"anything"[..]);
        assert!(verifier
            .verify_server_cert(&der, &[], &name, &[], UnixTime::now())
            .is_ok());
        assert_eq!(verifier.presented(), Some(Fingerprint::of(b"anything")));
    }
}
