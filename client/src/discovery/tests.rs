//! Discovery without a LAN: keying and conflicts as pure functions, and the real sockets on
//! loopback.

use super::*;

fn beacon_from(instance: &str, name: &str, fp: Option<&str>, users: usize) -> Beacon {
    Beacon {
        protocol: 1,
        server: "lanchat/0.1.0".into(),
        name: name.into(),
        instance: instance.into(),
        port: 7878,
        users,
        rooms: 1,
        auth: false,
        state: ServerState::Up,
        tls_sha256: fp.map(|f| Fingerprint::of(f.as_bytes()).to_string()),
        cluster: None,
    }
}

fn hear(heard: &mut Heard, from: &str, beacon: Beacon) {
    heard.beacon(beacon, from.parse().unwrap());
}

#[test]
fn one_server_on_several_addresses_keeps_loopback_or_the_first_address() {
    let mut heard = Heard::default();
    hear(
        &mut heard,
        "10.0.0.5:1",
        beacon_from("i1", "box", Some("c"), 1),
    );
    hear(
        &mut heard,
        "10.0.1.5:1",
        beacon_from("i1", "box", Some("c"), 2),
    );
    let servers = heard.servers();
    assert_eq!(servers.len(), 1, "{servers:?}");
    assert_eq!(servers[0].address, "10.0.0.5:7878".parse().unwrap());
    assert!(!servers[0].conflict);
    hear(
        &mut heard,
        "127.0.0.1:1",
        beacon_from("i1", "box", Some("c"), 3),
    );
    hear(
        &mut heard,
        "10.0.0.5:1",
        beacon_from("i1", "box", Some("c"), 4),
    );
    let servers = heard.servers();
    assert_eq!(servers.len(), 1);
    assert_eq!(servers[0].address, "127.0.0.1:7878".parse().unwrap());
}

#[test]
fn two_sources_claiming_one_instance_or_name_are_both_listed_as_a_conflict() {
    // The rogue copies the instance and the name but cannot present the certificate, so
    // it announces another one (or none).
    for rogue_fp in [Some("rogue"), None] {
        let mut heard = Heard::default();
        hear(
            &mut heard,
            "127.0.0.1:1",
            beacon_from("i1", "office", Some("c"), 1),
        );
        hear(
            &mut heard,
            "127.0.0.2:1",
            beacon_from("i1", "office", rogue_fp, 1),
        );
        let servers = heard.servers();
        assert_eq!(servers.len(), 2, "{servers:?}");
        assert!(servers.iter().all(|s| s.conflict), "{servers:?}");
    }
    // The name alone is enough.
    let mut heard = Heard::default();
    hear(
        &mut heard,
        "127.0.0.1:1",
        beacon_from("i1", "office", Some("c"), 1),
    );
    hear(
        &mut heard,
        "127.0.0.2:1",
        beacon_from("i2", "office", Some("c"), 1),
    );
    hear(
        &mut heard,
        "127.0.0.3:1",
        beacon_from("i3", "annex", Some("d"), 1),
    );
    let conflicts: Vec<(String, bool)> = heard
        .servers()
        .into_iter()
        .map(|s| (s.address.ip().to_string(), s.conflict))
        .collect();
    assert_eq!(
        conflicts,
        vec![
            ("127.0.0.3".to_owned(), false),
            ("127.0.0.1".to_owned(), true),
            ("127.0.0.2".to_owned(), true)
        ]
    );
    // Two servers of one name on one host are not two sources.
    let mut heard = Heard::default();
    hear(
        &mut heard,
        "127.0.0.1:1",
        beacon_from("i1", "office", Some("c"), 1),
    );
    hear(
        &mut heard,
        "127.0.0.1:1",
        beacon_from("i2", "office", Some("d"), 1),
    );
    assert!(heard.servers().iter().all(|s| !s.conflict));
}

#[test]
fn stopping_removes_only_the_entry_of_its_own_source() {
    let mut heard = Heard::default();
    hear(
        &mut heard,
        "127.0.0.1:1",
        beacon_from("i1", "office", Some("c"), 1),
    );
    hear(
        &mut heard,
        "127.0.0.2:1",
        beacon_from("i1", "office", Some("r"), 1),
    );
    let mut stopping = beacon_from("i1", "office", Some("r"), 1);
    stopping.state = ServerState::Stopping;
    hear(&mut heard, "127.0.0.2:1", stopping.clone());
    let servers = heard.servers();
    assert_eq!(servers.len(), 1);
    assert_eq!(servers[0].address.ip().to_string(), "127.0.0.1");
    assert!(!servers[0].conflict);
    // A stale `up` from the source that stopped does not bring it back; the others' still count.
    hear(
        &mut heard,
        "127.0.0.2:1",
        beacon_from("i1", "office", Some("r"), 1),
    );
    hear(
        &mut heard,
        "127.0.0.1:1",
        beacon_from("i1", "office", Some("c"), 5),
    );
    let servers = heard.servers();
    assert_eq!((servers.len(), servers[0].users), (1, 5));
    // A forged stopping from elsewhere cannot remove the real server.
    hear(&mut heard, "127.0.0.3:1", stopping);
    assert_eq!(heard.servers().len(), 1);
}

#[test]
fn unreadable_fingerprints_are_ignored_and_pins_marked_first() {
    let mut heard = Heard::default();
    let mut bad = beacon_from("i9", "bad", None, 1);
    bad.tls_sha256 = Some("xyz".into());
    hear(&mut heard, "127.0.0.9:1", bad);
    assert!(heard.servers().is_empty());

    hear(
        &mut heard,
        "127.0.0.1:1",
        beacon_from("i1", "zeta", Some("z"), 1),
    );
    hear(
        &mut heard,
        "127.0.0.2:1",
        beacon_from("i2", "alpha", Some("a"), 1),
    );
    hear(
        &mut heard,
        "127.0.0.3:1",
        beacon_from("i3", "beta", None, 1),
    );
    hear(
        &mut heard,
        "127.0.0.4:1",
        beacon_from("i4", "gamma", Some("g"), 1),
    );
    let dir = std::env::temp_dir().join(format!("lanchat-marks-{}", uuid::Uuid::new_v4()));
    let mut known = KnownServers::load(dir.join("known_servers")).unwrap();
    known.set("zeta", Fingerprint::of(b"z")).unwrap();
    known.set("beta", Fingerprint::of(b"b")).unwrap();
    known.set("gamma", Fingerprint::of(b"other")).unwrap();
    let mut servers = heard.servers();
    mark_pins(&mut servers, &known);
    let marked: Vec<(&str, PinState)> = servers.iter().map(|s| (s.name.as_str(), s.pin)).collect();
    assert_eq!(
        marked,
        vec![
            ("zeta", PinState::Pinned),
            ("alpha", PinState::New),
            ("beta", PinState::Downgraded),
            ("gamma", PinState::Changed)
        ]
    );
    let rows = table(&servers);
    assert!(rows[1].contains("pinned") && rows[1].contains(&trust::short(&Fingerprint::of(b"z"))));
    assert!(rows[3].contains("plain") && rows[3].contains("NO-TLS"));
    assert!(rows[4].contains("CHANGED"));
    std::fs::remove_dir_all(dir).unwrap();
}

fn beacon(instance: &str, port: u16, state: ServerState) -> Vec<u8> {
    Datagram::Beacon(Beacon {
        protocol: 1,
        server: "lanchat/0.1.0".into(),
        name: format!("srv-{instance}"),
        instance: instance.into(),
        port,
        users: 2,
        rooms: 1,
        auth: false,
        state,
        tls_sha256: None,
        cluster: None,
    })
    .encode()
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn loopback_gets_its_network_top_as_broadcast() {
    let targets = broadcast_targets(Some(&["lo".to_owned()])).unwrap();
    assert_eq!(
        targets,
        vec![Target {
            interface: "lo".into(),
            broadcast: Ipv4Addr::new(127, 255, 255, 255)
        }]
    );
    assert!(broadcast_targets(Some(&[])).unwrap().is_empty());
}

#[test]
fn hosts_list_from_env() {
    assert_eq!(
        hosts_from_env(Some("a, b c,,d:1")),
        vec!["a", "b", "c", "d:1"]
    );
    assert!(hosts_from_env(None).is_empty());
}

/// A fake server on 127.0.0.1 answering discover by unicast, plus a garbage datagram and a
/// duplicate answer: one server is reported, at the source IP with the beacon's port.
#[tokio::test]
async fn unicast_query_is_answered_and_deduplicated() {
    let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = server.local_addr().unwrap().port();
    let answer = tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        for _ in 0..2 {
            let (n, from) = server.recv_from(&mut buf).await.unwrap();
            assert_eq!(
                Datagram::parse(&buf[..n]),
                Some(Datagram::Discover { protocol: 1 })
            );
            server.send_to(b"not json", from).await.unwrap();
            server
                .send_to(&beacon("one", 4321, ServerState::Up), from)
                .await
                .unwrap();
        }
    });
    let opts = Options {
        timeout: Duration::from_millis(400),
        port,
        hosts: vec!["127.0.0.1".into()],
        interfaces: None,
        broadcast: false,
    };
    let report = discover(&opts).await.unwrap();
    answer.await.unwrap();
    assert_eq!(report.servers.len(), 1, "{:?}", report.servers);
    let s = &report.servers[0];
    assert_eq!(s.address, "127.0.0.1:4321".parse().unwrap());
    assert_eq!((s.name.as_str(), s.users, s.auth), ("srv-one", 2, false));
    assert!(report.targets.is_empty());
}

/// A beacon broadcast on loopback reaches the passive listener; a server that says it is
/// stopping is dropped.
#[tokio::test]
async fn passive_beacons_are_heard() {
    let port = free_udp_port();
    let opts = Options {
        timeout: Duration::from_millis(600),
        port,
        hosts: vec![],
        interfaces: Some(vec!["lo".into()]),
        broadcast: true,
    };
    let announcer = tokio::spawn(async move {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_broadcast(true).unwrap();
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(80)).await;
            for (instance, state) in [("two", ServerState::Up), ("three", ServerState::Stopping)] {
                s.send_to(&beacon(instance, 7000, state), ("127.255.255.255", port))
                    .unwrap();
            }
        }
    });
    let report = discover(&opts).await.unwrap();
    announcer.await.unwrap();
    assert!(report.listened);
    assert_eq!(report.servers.len(), 1, "{:?}", report.servers);
    assert_eq!(report.servers[0].instance, "two");
    assert_eq!(report.servers[0].address.port(), 7000);
}

#[test]
fn explanation_and_table() {
    let report = Report {
        targets: vec![Target {
            interface: "lo".into(),
            broadcast: Ipv4Addr::new(127, 255, 255, 255),
        }],
        hosts: vec![("nowhere.invalid".into(), None)],
        port: 7879,
        listened: true,
        timeout: Duration::from_secs(1),
        ..Report::default()
    };
    let text = report.nothing_found().join("\n");
    assert!(text.contains("127.255.255.255 (lo)"));
    assert!(text.contains("nowhere.invalid (did not resolve)"));
    assert!(text.contains("UDP port 7879"));
    assert!(text.contains("firewall"));
    assert!(text.contains("lanchat HOST[:PORT]"));
    let office = Found {
        name: "office".into(),
        address: "127.0.0.1:7878".parse().unwrap(),
        users: 3,
        rooms: 2,
        auth: true,
        state: ServerState::Up,
        instance: "i".into(),
        server: "lanchat/0.1.0".into(),
        protocol: 1,
        tls_sha256: None,
        cluster: None,
        conflict: true,
        pin: PinState::New,
    };
    let rows = table(std::slice::from_ref(&office));
    assert_eq!(rows.len(), 2);
    assert!(rows[0].starts_with("#  NAME"));
    assert!(!rows[0].contains("CLUSTER"), "{rows:?}");
    // A cluster node adds the CLUSTER column; a lone server shows `-` in it.
    let node = Found {
        name: "office-2".into(),
        cluster: Some("hq".into()),
        conflict: false,
        ..office.clone()
    };
    let both = table(&[office.clone(), node]);
    assert!(both[0].ends_with("CLUSTER"), "{both:?}");
    assert!(both[1].ends_with("CONFLICT  -"), "{both:?}");
    assert!(both[2].ends_with("hq"), "{both:?}");
    assert!(
        rows[1].contains("office")
            && rows[1].contains("127.0.0.1:7878")
            && rows[1].contains("password")
            && rows[1].contains("plain")
            && rows[1].ends_with("CONFLICT")
    );
}

#[test]
fn an_unknown_interface_is_named() {
    let asked = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(unknown_interfaces(&asked(&["lo"]), &["lo", "eth0"]), None);
    assert_eq!(unknown_interfaces(&[], &[]), None);
    assert_eq!(
        unknown_interfaces(&asked(&["lo", "nosuch0"]), &["lo", "eth0"]).unwrap(),
        "no IPv4 interface named nosuch0 (the IPv4 interfaces here: lo, eth0)"
    );
    let err = check_interfaces(Some(&asked(&["nosuch0"]))).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("nosuch0"), "{err}");
}

#[test]
fn beacon_strings_are_made_safe_for_the_terminal() {
    let mut beacon = beacon_from("i\u{1b}[2J", "office\u{1b}]0;pwned\u{7}", None, 1);
    beacon.server = "lanchat\u{9b}31m".into();
    beacon.cluster = Some("hq\u{1b}[2J".into());
    let found = found_from(beacon, "127.0.0.1:7879".parse().unwrap());
    assert_eq!(found.cluster.as_deref(), Some("hq<U+001B>[2J"));
    assert_eq!(found.name, "office<U+001B>]0;pwned<U+0007>");
    assert_eq!(found.instance, "i<U+001B>[2J");
    assert_eq!(found.server, "lanchat<U+009B>31m");
    for row in table(&[found]) {
        assert!(!row.chars().any(char::is_control), "{row:?}");
    }
}

#[test]
fn a_cluster_nodes_mates_are_its_clusters_other_nodes_with_its_certificate() {
    let node = |instance: &str, last: u8, cluster: Option<&str>, fp: Option<&str>| {
        let mut beacon = beacon_from(instance, &format!("node-{instance}"), fp, 1);
        beacon.cluster = cluster.map(str::to_owned);
        found_from(beacon, SocketAddr::from(([10, 0, 0, last], 7879)))
    };
    let chosen = node("a", 1, Some("hq"), Some("cert"));
    let mut conflicted = node("e", 5, Some("hq"), Some("cert"));
    conflicted.conflict = true;
    let servers = [
        chosen.clone(),
        node("b", 2, Some("hq"), Some("cert")),
        node("c", 3, Some("other"), Some("cert")),
        node("d", 4, Some("hq"), Some("another cert")),
        conflicted,
        node("f", 6, None, Some("cert")),
    ];
    assert_eq!(
        cluster_mates(&chosen, &servers),
        vec![SocketAddr::from(([10, 0, 0, 2], 7878))]
    );
    // A server that is no cluster node has no mates.
    assert!(cluster_mates(&servers[5], &servers).is_empty());
}
