use super::*;
use crate::validate::check_name;

#[test]
fn fold_is_the_nfkc_case_fold() {
    assert_eq!(fold("ALICE"), "alice");
    assert_eq!(fold("ａｌｉｃｅ"), "alice");
    assert_eq!(fold("𝐚𝐥𝐢𝐜𝐞"), "alice");
    assert_eq!(fold("Straße"), "strasse");
    assert_eq!(fold("ΣΑΣ"), fold("σας"));
    assert_eq!(fold("x²"), "x2");
    assert_eq!(fold("Zoë"), "zoë");
    assert_eq!(fold("Zoe\u{308}"), "zoë", "composed at the end");
}

#[test]
fn lookalikes_share_a_key() {
    for (a, b) in [
        ("alice", "ALICE"),
        ("alice", "аlice"),
        ("alice", "alicе"),
        ("alice", "ａｌｉｃｅ"),
        ("alice", "𝐚𝐥𝐢𝐜𝐞"),
        ("rn", "m"),
        ("l", "1"),
        ("bob", "b0b"),
        ("ace", "асе"),
        ("paypal", "раураl"),
    ] {
        assert_eq!(skeleton_key(a), skeleton_key(b), "{a} / {b}");
        assert!(look_alike(a, b), "{a} / {b}");
    }
}

#[test]
fn plain_names_skeletons_match_the_unicode_tables() {
    // Every name of one or two of the plain characters, and some longer ones: the byte map
    // gives what the Unicode path gives, so it may stand in for it.
    let plain: Vec<char> = ('a'..='z')
        .chain('A'..='Z')
        .chain('0'..='9')
        .chain(['_', '-', '.'])
        .collect();
    let singles = plain.iter().map(|c| c.to_string());
    let pairs = plain
        .iter()
        .flat_map(|a| plain.iter().map(move |b| format!("{a}{b}")));
    let longer = ["Ian", "m1ll10n", "IIlI1", "Room_42.lobby-mm", "Zoe"].map(String::from);
    for name in singles.chain(pairs).chain(longer) {
        let folded: String = unicode_security::skeleton(&fold(&name)).collect();
        assert_eq!(
            plain_skeleton(&name, Case::Folded),
            Some(fold(&folded)),
            "{name}"
        );
        let shown: String = unicode_security::skeleton(&name).collect();
        assert_eq!(plain_skeleton(&name, Case::Kept), Some(shown), "{name}");
    }
    for other in ["a b", "a#b", "zoë", "|", "a%"] {
        assert_eq!(plain_skeleton(other, Case::Kept), None, "{other}");
    }
}

#[test]
fn capitals_look_like_what_they_look_like() {
    // `I` folds to `i` but looks like `l` and `1`; `i` and `l` stay apart.
    for (a, b) in [
        ("l", "I"),
        ("1", "I"),
        ("lan", "Ian"),
        ("Ian", "IAN"),
        ("ｌａｎ", "Ian"),
    ] {
        assert!(look_alike(a, b), "{a} / {b}");
        assert!(look_alike(b, a), "{b} / {a}");
    }
    for (a, b) in [("i", "l"), ("ian", "lan"), ("alice", "allce")] {
        assert!(!look_alike(a, b), "{a} / {b}");
    }
    assert_eq!(lookalike_keys("alice"), ["alice"]);
    assert_eq!(lookalike_keys("Ian"), ["ian", "lan"]);
}

#[test]
fn different_names_keep_different_keys() {
    for (a, b) in [
        ("alice", "alicia"),
        ("ann", "anne"),
        ("a_b", "a-b"),
        ("山田", "山口"),
        ("zoë", "zoe"),
        ("иван", "ivan"),
    ] {
        assert_ne!(skeleton_key(a), skeleton_key(b), "{a} / {b}");
        assert!(!look_alike(a, b), "{a} / {b}");
    }
}

#[test]
fn invisible_characters_are_refused() {
    for (name, code) in [
        ("\u{3164}", 0x3164),
        ("a\u{3164}", 0x3164),
        ("\u{115F}", 0x115F),
        ("\u{1160}a", 0x1160),
        ("\u{FFA0}", 0xFFA0),
        ("a\u{200B}b", 0x200B),
        ("a\u{FEFF}", 0xFEFF),
        ("a\u{FE0F}", 0xFE0F),
        ("a\u{034F}b", 0x034F),
        ("a\u{00AD}b", 0x00AD),
    ] {
        let why = check_name(name).expect_err(name);
        // Not every one of them gets past the character rule (U+200B is no letter); those that do
        // are named.
        if why.contains("invisible") {
            assert!(why.contains(&format!("U+{code:04X}")), "{name:?}: {why}");
        }
    }
    // The Hangul fillers are letters (Lo): only the invisibility rule stops them.
    for filler in ["\u{3164}", "\u{115F}", "\u{1160}", "\u{FFA0}"] {
        assert!(filler.chars().all(char::is_alphanumeric));
        assert!(check_name(filler).unwrap_err().contains("invisible"));
        assert!(check_name(&format!("ann{filler}"))
            .unwrap_err()
            .contains("invisible"));
    }
}

#[test]
fn characters_not_allowed_in_identifiers_are_refused() {
    // Letters Unicode keeps out of identifiers: historic scripts and deprecated forms.
    for name in [
        "\u{10300}",
        "\u{10330}\u{10331}",
        "\u{1681}\u{1682}",
        "\u{16A0}\u{16A1}",
    ] {
        let why = check_name(name).expect_err(name);
        assert!(why.contains("identifiers"), "{name:?}: {why}");
    }
}

#[test]
fn mixed_scripts_are_refused() {
    for (name, scripts) in [
        ("alicе", "Latin, Cyrillic"),
        ("аlice", "Cyrillic, Latin"),
        ("pαypal", "Latin, Greek"),
        ("λόγοςlogos", "Greek, Latin"),
        ("иван東京", "Cyrillic, Han"),
    ] {
        assert_eq!(
            check_name(name),
            Err(format!("must not mix scripts ({scripts})")),
            "{name}"
        );
    }
}

#[test]
fn names_of_one_script_are_valid() {
    for name in [
        "alice",
        "Zoë",
        "Ünïcødé",
        "Straße",
        "İstanbul",
        "Ελληνικά",
        "Иван",
        "иван_2",
        "山田",
        "東京タワーとうきょう",
        "한국어",
        "Tokyo東京",
        "서울Seoul",
        "abc한국",
        "עברית",
        "العربية",
        "٣٤٥",
        "2024",
        "a_b-c.d",
        "..",
        "ＡＢＣ",
        "𝐚𝐥𝐢𝐜𝐞",
        "x²",
        &"é".repeat(32),
    ] {
        assert_eq!(check_name(name), Ok(()), "{name}");
    }
}

/// How long the checks and keys of a name take, in release builds: `cargo test --release -p
/// lanchat-protocol --lib names_cost -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, not a test"]
fn names_cost() {
    use std::hint::black_box;
    use std::time::Instant;
    for name in ["alice_42", "Ünïcødé", "東京タワーとうきょう"] {
        let rounds = 100_000;
        let start = Instant::now();
        for _ in 0..rounds {
            black_box(check_name(black_box(name)).is_ok());
            black_box(lookalike_keys(black_box(name)));
        }
        let each = start.elapsed() / rounds;
        eprintln!("check_name + lookalike_keys({name}): {each:?}");
    }
}
