//! The cluster's one TLS certificate: nodes that make and keep their own pair (no `--tls-cert`)
//! serve the pair of the first node that joined, so that a client that pinned one node's
//! certificate trusts every node it fails over to (`lanchat HOST:PORT,HOST:PORT`, or the nodes
//! discovery heard with the same `tls_sha256`).
//!
//! The pair is kept in a bucket of its own (`lanchat_<name>_identity`, one key, never expiring):
//! the first node creates the key with its own pair; every later one finds it there and serves
//! it instead of its own, which stays untouched in its directory. The private key is then stored
//! by JetStream: whoever can read the cluster's NATS subjects can read it, the same trust
//! boundary as the rest of cluster mode (ARCHITECTURE.md). A pair given with `--tls-cert` is the
//! operator's choice and is served as given.

use std::path::Path;

use async_nats::jetstream::kv;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::Joined;
use crate::tls::Tls;

/// The bucket's one key.
const KEY: &str = "pair";

/// The pair as stored.
#[derive(Serialize, Deserialize)]
struct Pair {
    cert: String,
    key: String,
}

impl Joined {
    /// The certificate this node serves: `own` if it was given (or this is the first node),
    /// else the cluster's.
    pub async fn identity(&self, own: Tls) -> Result<Tls, String> {
        if !own.kept {
            return Ok(own);
        }
        let bucket = &self.names.identity_bucket;
        let fail = |e: &dyn std::fmt::Display| format!("the cluster's certificate ({bucket}): {e}");
        super::open_stream(&self.js, super::bucket_config(bucket, self.config.replicas))
            .await
            .map_err(|e| fail(&e))?;
        let store = self.js.get_key_value(bucket).await.map_err(|e| fail(&e))?;
        let (cert, key) = own.pem().map_err(|e| fail(&e))?;
        let mine = serde_json::to_vec(&Pair { cert, key }).expect("a pair always serialises");
        match store.create(KEY, mine.into()).await {
            Ok(_) => {
                info!(
                    tls_sha256 = own.fingerprint(),
                    "this node's certificate is the cluster's"
                );
                return Ok(own);
            }
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
            Err(e) => return Err(fail(&e)),
        }
        let stored = store
            .get(KEY)
            .await
            .map_err(|e| fail(&e))?
            .ok_or_else(|| fail(&"the pair is gone"))?;
        let pair: Pair = serde_json::from_slice(&stored).map_err(|e| fail(&e))?;
        let label = Path::new(bucket);
        let cluster = Tls::from_pem(pair.cert.as_bytes(), pair.key.as_bytes(), label)
            .map_err(|e| fail(&e))?;
        if cluster.fingerprint() != own.fingerprint() {
            warn!(
                tls_sha256 = cluster.fingerprint(),
                own = own.fingerprint(),
                "serving the cluster's certificate (the first node's); this node's own stays in {}",
                own.cert_path.display()
            );
        }
        Ok(cluster)
    }
}
