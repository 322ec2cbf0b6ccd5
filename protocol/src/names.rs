//! What makes two names look alike, and which names are refused for hiding what they are: the
//! Unicode rules (TR39, "Unicode Security Mechanisms") behind [`crate::validate::check_name`] and
//! the server's lookalike checks.
//!
//! Forms of a name used for comparison, never shown (names are shown as given):
//! - [`fold`], its NFKC case fold: `ALICE`, `ａｌｉｃｅ` and `𝐚𝐥𝐢𝐜𝐞` all fold to `alice`;
//! - [`skeleton_key`], the TR39 skeleton of the fold: names that render alike in any case share
//!   it (`аlice` with a Cyrillic `а`, `rn`/`m`, `l`/`1`, `0`/`o`);
//! - [`lookalike_keys`]: the skeleton key and, when it differs, the skeleton of the name as shown.
//!   Folding first loses what capitals look like (`I` folds to `i`, yet looks like `l`), and no
//!   one key can say both "`I` is `i`" and "`I` looks like `l`" without making `i` and `l` one.
//!   Two names look alike ([`look_alike`]) when they share a key.
//!
//! The map keys of the server and the file names of rooms stay [`crate::validate::name_key`]:
//! changing those would orphan the rooms kept on disk. Clients need not implement any of this;
//! the server is the authority.

use caseless::Caseless;
use unicode_normalization::UnicodeNormalization;
use unicode_script::{Script, UnicodeScript};
use unicode_security::{GeneralSecurityProfile, RestrictionLevel, RestrictionLevelDetection};

/// The NFKC case fold of `name`: `NFKC(toCasefold(NFKD(toCasefold(NFD(name)))))`, the
/// compatibility caseless form of the Unicode Standard (definition D146 in section 3.13), with
/// full case folding (`ß` folds to `ss`) and composed at the end. It is NFKC_Casefold except that
/// default-ignorable characters are kept (names holding one are refused anyway).
pub fn fold(name: &str) -> String {
    if name.is_ascii() {
        return name.to_ascii_lowercase();
    }
    name.chars()
        .nfd()
        .default_case_fold()
        .nfkd()
        .default_case_fold()
        .nfkc()
        .collect()
}

/// The key under which names are compared for looking alike: the TR39 skeleton of the [`fold`],
/// folded again because the skeleton can bring back capitals (`0` becomes `O`). Names with the same
/// key look alike, or differ only in case or width. For comparison only: it is never shown,
/// stored or sent.
pub fn skeleton_key(name: &str) -> String {
    if let Some(key) = plain_skeleton(name, Case::Folded) {
        return key;
    }
    let skeleton: String = unicode_security::skeleton(&fold(name)).collect();
    fold(&skeleton)
}

/// Whether [`plain_skeleton`] folds the name first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    Folded,
    Kept,
}

/// The skeleton of a name of ASCII letters, digits and `_-.` only (every ASCII nick and room
/// name), without Unicode tables: of those characters, TR39's confusables map only `0` to `O`,
/// `1` and `I` to `l`, and `m` to `rn`, all ASCII, so the skeleton is a map byte by byte.
/// Folded: [`skeleton_key`]'s key (lowercase first and again after, so `0` gives `o`). `None` for
/// any other name (the Unicode path). The unit tests check it against `unicode_security` for
/// every pair of these characters.
fn plain_skeleton(name: &str, case: Case) -> Option<String> {
    let plain = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.');
    if !name.bytes().all(plain) {
        return None;
    }
    let mut out = String::with_capacity(name.len() + 4);
    for b in name.bytes() {
        let b = match case {
            Case::Folded => b.to_ascii_lowercase(),
            Case::Kept => b,
        };
        match (b, case) {
            (b'm', _) => out.push_str("rn"),
            (b'0', Case::Folded) => out.push('o'),
            (b'0', Case::Kept) => out.push('O'),
            (b'1' | b'I', _) => out.push('l'),
            _ => out.push(char::from(b)),
        }
    }
    Some(out)
}

/// The keys under which `name` is compared for looking alike: its [`skeleton_key`], then the TR39
/// skeleton of its NFKC form (case kept) when that is another string. `Ian` has the keys `ian` and
/// `lan`; `alice` has one.
pub fn lookalike_keys(name: &str) -> Vec<String> {
    let folded = skeleton_key(name);
    let shown: String = if let Some(shown) = plain_skeleton(name, Case::Kept) {
        shown
    } else if name.is_ascii() {
        unicode_security::skeleton(name).collect()
    } else {
        unicode_security::skeleton(&name.nfkc().collect::<String>()).collect()
    };
    if shown == folded {
        vec![folded]
    } else {
        vec![folded, shown]
    }
}

/// Whether `a` and `b` look alike: they share one of their [`lookalike_keys`].
pub fn look_alike(a: &str, b: &str) -> bool {
    let b = lookalike_keys(b);
    lookalike_keys(a).iter().any(|key| b.contains(key))
}

/// The Unicode rules of a name (after the character rules of `check_name`): no invisible
/// character, as sent or once folded; every character of the fold allowed in identifiers; and
/// the fold at most Highly Restrictive (one script, or Han with Japanese, Korean or Bopomofo).
/// The message completes "a nick ..." or "a room name ...".
pub(crate) fn check_unicode(name: &str) -> Result<(), String> {
    // ASCII letters, digits and `_-.` pass every rule: the common case costs one scan.
    if name.is_ascii() {
        return Ok(());
    }
    if let Some(c) = name.chars().find(|&c| is_invisible(c)) {
        return Err(format!(
            "must not contain the invisible character U+{:04X}",
            c as u32
        ));
    }
    let folded = fold(name);
    if let Some(c) = folded.chars().find(|&c| is_invisible(c)) {
        return Err(format!(
            "must not contain the invisible character U+{:04X} (once folded)",
            c as u32
        ));
    }
    if let Some(c) = folded.chars().find(|&c| !allowed_in_identifiers(c)) {
        return Err(format!(
            "must not contain U+{:04X}, which Unicode does not allow in identifiers",
            c as u32
        ));
    }
    // `_`, `-` and `.` are Common: they belong to every script and never mix.
    let letters: String = folded
        .chars()
        .filter(|c| !matches!(c, '_' | '-' | '.'))
        .collect();
    if !letters
        .as_str()
        .check_restriction_level(RestrictionLevel::HighlyRestrictive)
    {
        return Err(format!("must not mix scripts ({})", scripts(&letters)));
    }
    Ok(())
}

/// A default-ignorable code point (zero-width and format characters, variation selectors, the
/// Hangul fillers U+115F, U+1160, U+3164 and U+FFA0, ...): rendered as nothing, or as a blank.
/// These are exactly the characters that the TR39 skeleton drops, which is how they are found
/// here: unicode-security keeps its table of them private.
fn is_invisible(c: char) -> bool {
    let mut buf = [0; 4];
    !c.is_ascii()
        && unicode_security::skeleton(c.encode_utf8(&mut buf))
            .next()
            .is_none()
}

/// TR39 Identifier_Status=Allowed; ASCII letters, digits and `_-.` always are.
fn allowed_in_identifiers(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') || c.identifier_allowed()
}

/// The scripts of `name` in the order they first appear, for a message: "Latin, Cyrillic".
fn scripts(name: &str) -> String {
    let mut seen: Vec<Script> = Vec::new();
    for c in name.chars() {
        let script = c.script();
        if !matches!(script, Script::Common | Script::Inherited | Script::Unknown)
            && !seen.contains(&script)
        {
            seen.push(script);
        }
    }
    seen.iter()
        .map(|s| s.full_name())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
#[path = "names_tests.rs"]
mod tests;
