//! UDP discovery datagrams: the server's `beacon` and the client's `discover` query.

use serde::{Deserialize, Serialize};

/// Largest discovery datagram either side sends or accepts.
pub const MAX_DATAGRAM: usize = 1200;

/// Whether the server is serving or about to go away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerState {
    Up,
    Stopping,
}

/// A server's announcement of itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Beacon {
    pub protocol: u64,
    pub server: String,
    pub name: String,
    /// One per server process: lets a client de-duplicate beacons heard on several interfaces.
    pub instance: String,
    /// The TCP port; the address is the datagram's source address.
    pub port: u16,
    pub users: usize,
    pub rooms: usize,
    pub auth: bool,
    pub state: ServerState,
    /// Extension (issue 15): the lowercase hex SHA-256 of the server's DER certificate, present
    /// when the server accepts TLS. A client pins it (see `pin.rs`, feature `tls`); a client
    /// that does not know the field ignores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_sha256: Option<String>,
    /// Extension (issue 19): the name of the cluster this server is a node of (`--cluster-name`),
    /// present only in cluster mode. Nodes of one cluster are one chat: a client may fail over
    /// from one to another. A client that does not know the field ignores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
}

/// A discovery datagram.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Datagram {
    Beacon(Beacon),
    Discover { protocol: u64 },
}

impl Datagram {
    /// Parse a datagram; `None` for anything too large, not JSON, or of another type.
    pub fn parse(bytes: &[u8]) -> Option<Datagram> {
        if bytes.len() > MAX_DATAGRAM {
            return None;
        }
        serde_json::from_slice(bytes).ok()
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("datagrams serialise")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let b = Datagram::Beacon(Beacon {
            protocol: 1,
            server: "lanchat/0.1.0".into(),
            name: "n".into(),
            instance: "i".into(),
            port: 7878,
            users: 2,
            rooms: 1,
            auth: false,
            state: ServerState::Up,
            tls_sha256: None,
            cluster: None,
        });
        assert_eq!(Datagram::parse(&b.encode()), Some(b));
        assert_eq!(
            Datagram::parse(br#"{"type":"discover","protocol":1}"#),
            Some(Datagram::Discover { protocol: 1 })
        );
        assert_eq!(Datagram::parse(b"garbage"), None);
        assert_eq!(Datagram::parse(br#"{"type":"other"}"#), None);
        assert_eq!(Datagram::parse(&[b' '; 1201]), None);
    }

    #[test]
    fn tls_sha256_is_optional_both_ways() {
        let hex = "ab".repeat(32);
        let text = format!(
            r#"{{"type":"beacon","protocol":1,"server":"s","name":"n","instance":"i","port":1,"users":0,"rooms":0,"auth":false,"state":"up","tls_sha256":"{hex}"}}"#
        );
        let Some(Datagram::Beacon(b)) = Datagram::parse(text.as_bytes()) else {
            panic!("a beacon");
        };
        assert_eq!(b.tls_sha256.as_deref(), Some(hex.as_str()));
        // Absent when None, so an old reader sees exactly the beacon it knows.
        let plain = Beacon {
            tls_sha256: None,
            ..b
        };
        let encoded = String::from_utf8(Datagram::Beacon(plain.clone()).encode()).unwrap();
        assert!(!encoded.contains("tls_sha256"), "{encoded}");
        assert_eq!(
            Datagram::parse(encoded.as_bytes()),
            Some(Datagram::Beacon(plain))
        );
    }

    #[test]
    fn cluster_is_optional_both_ways() {
        let text = r#"{"type":"beacon","protocol":1,"server":"s","name":"n","instance":"i","port":1,"users":0,"rooms":0,"auth":false,"state":"up","cluster":"office"}"#;
        let Some(Datagram::Beacon(b)) = Datagram::parse(text.as_bytes()) else {
            panic!("a beacon");
        };
        assert_eq!(b.cluster.as_deref(), Some("office"));
        let alone = Beacon { cluster: None, ..b };
        let encoded = String::from_utf8(Datagram::Beacon(alone).encode()).unwrap();
        assert!(!encoded.contains("cluster"), "{encoded}");
    }
}
