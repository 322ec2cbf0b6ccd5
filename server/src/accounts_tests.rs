//! The accounts table alone, and its file.

use std::os::unix::fs::PermissionsExt;

use super::*;

/// A stand-in for a PHC string: the table never looks inside.
fn h(n: u8) -> String {
    format!("hash-{n}")
}

#[test]
fn a_registered_nick_is_claimed_in_any_case_and_its_lookalikes_are_nobodys() {
    let mut t = Table::default();
    t.insert("Ann", h(1), 10).unwrap();
    let registered = Claim::Registered {
        key: "ann".into(),
        hash: h(1),
    };
    assert_eq!(t.claim("ann", None), registered);
    assert_eq!(t.claim("ANN", None), registered);
    // Cyrillic а: looks like it, and nobody may use it, with or without a secret.
    assert_eq!(
        t.claim("\u{430}nn", None),
        Claim::LooksLike { nick: "Ann".into() }
    );
    assert_eq!(t.claim("bob", None), Claim::Free);
    let (code, message) = t.admits("\u{430}nn", Some("ann"), None).unwrap_err();
    assert_eq!(code, ErrorCode::NickTaken);
    assert!(message.contains("registered nick \"Ann\""), "{message}");
    assert_eq!(
        t.admits("ann", None, None).unwrap_err().0,
        ErrorCode::NickRegistered
    );
    assert!(
        t.admits("ann", Some("ann"), None).is_ok(),
        "with its secret"
    );
    assert!(t.admits("ANN", None, Some("ann")).is_ok(), "its holder");
    assert!(
        t.admits("\u{430}nn", None, Some("ann")).is_ok(),
        "its holder may take a lookalike of it"
    );
    assert!(t.admits("bob", None, None).is_ok());
}

#[test]
fn registering_again_replaces_the_secret_and_keeps_the_date() {
    let mut t = Table::default();
    t.insert("ann", h(1), 10).unwrap();
    let created = t.by_key["ann"].created;
    t.insert("Ann", h(2), 1).unwrap();
    assert_eq!(t.len(), 1, "the cap counts new accounts only");
    assert_eq!(t.by_key["ann"].hash, h(2));
    assert_eq!(t.by_key["ann"].nick, "Ann");
    assert_eq!(t.by_key["ann"].created, created);
}

#[test]
fn the_table_is_capped() {
    let mut t = Table::default();
    t.insert("ann", h(1), 2).unwrap();
    t.insert("bob", h(2), 2).unwrap();
    let (code, _) = t.insert("cyd", h(3), 2).unwrap_err();
    assert_eq!(code, ErrorCode::TooManyAccounts);
    t.remove("bob").unwrap();
    t.insert("cyd", h(3), 2).unwrap();
}

#[test]
fn a_nick_like_another_registered_one_cannot_be_registered() {
    let mut t = Table::default();
    t.insert("bob", h(1), 10).unwrap();
    let (code, _) = t.insert("b0b", h(2), 10).unwrap_err();
    assert_eq!(code, ErrorCode::NickTaken);
}

#[test]
fn unregistering_frees_the_nick_and_its_lookalikes() {
    let mut t = Table::default();
    t.insert("ann", h(1), 10).unwrap();
    assert!(t.remove("ann").is_some());
    assert!(t.remove("ann").is_none());
    assert_eq!(t.claim("ann", None), Claim::Free);
    assert_eq!(t.claim("\u{430}nn", None), Claim::Free);
    assert!(t.is_empty());
}

#[test]
fn secrets_verify_against_their_argon2id_hash_only() {
    let hash = hash_now("correct horse battery");
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{hash}"
    );
    assert!(verify("correct horse battery", &hash));
    assert!(!verify("correct horse battery!", &hash));
    assert!(!verify("correct horse battery", "not a phc string"));
    assert_ne!(
        hash,
        hash_now("correct horse battery"),
        "a fresh salt each time"
    );
}

#[tokio::test]
async fn the_file_is_private_and_read_back() {
    let dir = std::env::temp_dir().join(format!(
        "lanchat-accounts-{}-{}",
        std::process::id(),
        now_ms()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let accounts = Accounts::open(Some(&dir), 10).unwrap();
    assert!(accounts.persistent());
    let hash = accounts.hash("correct horse battery".into()).await.unwrap();
    accounts.table().insert("Zoë", hash.clone(), 10).unwrap();
    assert!(accounts.save().await);
    let path = dir.join(FILE_NAME);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains("correct horse"), "only the hash is kept");

    let again = Accounts::open(Some(&dir), 10).unwrap();
    assert_eq!(
        again.table().claim("zoë", None),
        Claim::Registered {
            key: "zoë".into(),
            hash: hash.clone()
        }
    );
    assert!(again.verify("correct horse battery".into(), hash).await);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn without_a_directory_accounts_are_in_memory() {
    let accounts = Accounts::open(None, 10).unwrap();
    assert!(!accounts.persistent());
}

/// The cost of one verification, for PROTOCOL.md (run with `--release -- --ignored
/// --nocapture`): no assertion on time.
#[test]
#[ignore]
fn measure_verification_cost() {
    let hash = hash_now("correct horse battery");
    let rounds = 20;
    let start = std::time::Instant::now();
    for _ in 0..rounds {
        assert!(verify("correct horse battery", &hash));
    }
    let each = start.elapsed() / rounds;
    println!("one Argon2id verification (m=19 MiB, t=2, p=1): {each:?}");
}

#[test]
fn prepare_checks_the_rules_and_changes_nothing_and_store_keeps_what_it_is_given() {
    let mut t = Table::default();
    t.insert("bob", h(1), 2).unwrap();
    let created = t.prepare("bob", h(2), 2).unwrap().1.created;
    // A new secret for a registered nick keeps its creation time; the table is unchanged.
    assert_eq!(t.prepare("BOB", h(2), 2).unwrap().1.created, created);
    assert_eq!(
        t.claim("bob", None),
        Claim::Registered {
            key: "bob".into(),
            hash: h(1)
        }
    );
    let (key, account) = t.prepare("ann", h(3), 2).unwrap();
    assert_eq!((key.as_str(), account.nick.as_str()), ("ann", "ann"));
    assert!(!t.is_registered("ann"));
    assert_eq!(
        t.prepare("b0b", h(4), 2).unwrap_err().0,
        ErrorCode::NickTaken
    );
    // Stored whatever the rules: the cluster's bucket decided already.
    t.store(key, account);
    assert_eq!(
        t.prepare("cat", h(5), 2).unwrap_err().0,
        ErrorCode::TooManyAccounts
    );
    t.store(
        "cat".into(),
        Account {
            nick: "cat".into(),
            hash: h(5),
            created: 7,
        },
    );
    assert_eq!(t.len(), 3);
    // Stored again under the same key: replaced, its old lookalike keys gone.
    t.store(
        "bob".into(),
        Account {
            nick: "Bob".into(),
            hash: h(6),
            created: 1,
        },
    );
    assert_eq!(t.len(), 3);
    assert_eq!(
        t.claim("b0b", None),
        Claim::LooksLike { nick: "Bob".into() }
    );
}
