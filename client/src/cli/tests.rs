//! The command line: its shapes, targets, nicks, and which certificate a connection trusts.

use super::*;

#[test]
fn targets() {
    assert_eq!(parse_target("127.0.0.1").unwrap(), "127.0.0.1:7878");
    assert_eq!(parse_target("127.0.0.1:9000").unwrap(), "127.0.0.1:9000");
    assert_eq!(parse_target("chat.lan").unwrap(), "chat.lan:7878");
    assert_eq!(parse_target("chat.lan:1").unwrap(), "chat.lan:1");
    assert_eq!(parse_target("::1").unwrap(), "[::1]:7878");
    assert_eq!(parse_target("[::1]:80").unwrap(), "[::1]:80");
    assert!(matches!(parse_target("host:x"), Err(Error::Usage(_))));
    assert!(matches!(parse_target(""), Err(Error::Usage(_))));
}

#[test]
fn command_line_shapes() {
    let cli =
        Cli::try_parse_from(["lanchat", "127.0.0.1:9", "--nick", "ann", "--room", "dev"]).unwrap();
    assert_eq!(cli.chat.host.as_deref(), Some("127.0.0.1:9"));
    assert!(cli.command.is_none());
    let cli = Cli::try_parse_from([
        "lanchat",
        "discover",
        "--timeout",
        "0.5",
        "--host",
        "a,b",
        "--json",
    ])
    .unwrap();
    let Some(Sub::Discover(d)) = cli.command else {
        panic!()
    };
    assert_eq!(d.hosts, vec!["a", "b"]);
    assert!(d.json);
    assert!(Cli::try_parse_from(["lanchat", "--bogus"]).is_err());
    assert!(seconds(0.0, "--timeout").is_err());
    assert!(seconds(f64::NAN, "--timeout").is_err());
}

#[test]
fn a_recorded_pin_wins_over_a_beacon_and_only_no_tls_is_plain() {
    let dir = std::env::temp_dir().join(format!("lanchat-cli-{}", uuid::Uuid::new_v4()));
    let path = dir.join("known_servers");
    let mut known = KnownServers::load(path.clone()).unwrap();
    let (pinned, beacon, flag) = (
        Fingerprint::of(b"pinned"),
        Fingerprint::of(b"beacon"),
        Fingerprint::of(b"flag"),
    );
    known.set("office", pinned).unwrap();
    let found = |server: &str, fp: Option<Fingerprint>| Target {
        address: "127.0.0.1:7878".into(),
        server: server.into(),
        discovered: Some(fp),
    };
    let given = Target {
        address: "10.0.0.1:7878".into(),
        server: "10.0.0.1:7878".into(),
        discovered: None,
    };
    let k = Some(&known);
    let is_pin = |s: Security, want: Fingerprint, source: PinSource, record: bool| {
        assert_eq!(
            s,
            Security::Pinned {
                pin: want,
                source,
                record
            }
        );
    };
    let recorded = PinSource::Known(path.clone());
    is_pin(
        security(false, None, k, &found("office", Some(beacon))),
        pinned,
        recorded.clone(),
        false,
    );
    // A beacon without TLS cannot downgrade a pinned server.
    is_pin(
        security(false, None, k, &found("office", None)),
        pinned,
        recorded,
        false,
    );
    is_pin(
        security(false, None, k, &found("annex", Some(beacon))),
        beacon,
        PinSource::Beacon,
        true,
    );
    assert_eq!(
        security(false, None, k, &found("annex", None)),
        Security::Plain
    );
    assert_eq!(security(false, None, k, &given), Security::Learn);
    assert_eq!(security(false, None, None, &given), Security::Learn);
    is_pin(
        security(false, Some(flag), k, &found("office", Some(beacon))),
        flag,
        PinSource::Flag,
        false,
    );
    assert_eq!(
        security(true, None, k, &found("office", Some(beacon))),
        Security::Plain
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn trust_flags_and_subcommand() {
    let cli = Cli::try_parse_from(["lanchat", "h:1", "--tls-fingerprint", "ab"]).unwrap();
    assert_eq!(cli.chat.tls_fingerprint.as_deref(), Some("ab"));
    assert!(
        Cli::try_parse_from(["lanchat", "h:1", "--tls-fingerprint", "ab", "--no-tls"]).is_err()
    );
    let cli = Cli::try_parse_from(["lanchat", "trust", "office lan", "ab"]).unwrap();
    let Some(Sub::Trust(t)) = cli.command else {
        panic!()
    };
    assert_eq!(
        (t.server.as_deref(), t.fingerprint.as_deref()),
        (Some("office lan"), Some("ab"))
    );
}

#[test]
fn login_names_become_valid_nicks() {
    assert_eq!(sanitise_nick("ann"), "ann");
    assert_eq!(sanitise_nick("ann smith@corp"), "ann_smith_corp");
    assert_eq!(sanitise_nick(""), "guest");
    assert_eq!(sanitise_nick(&"y".repeat(40)).chars().count(), 32);
}
