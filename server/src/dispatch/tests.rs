//! The small pure helpers of dispatch.

use super::*;

#[test]
fn quit_reasons() {
    assert_eq!(quit_reason(None), "quit");
    assert_eq!(quit_reason(Some(String::new())), "quit");
    assert_eq!(quit_reason(Some("\u{1}\u{7}\n".into())), "quit");
    assert_eq!(quit_reason(Some("lunch\u{1b}[2J".into())), "lunch[2J");
    assert_eq!(quit_reason(Some("x".repeat(400))).len(), MAX_TOPIC_CHARS);
}

#[test]
fn client_strings_are_cut_at_64_bytes_on_a_character_boundary() {
    assert_eq!(truncate_bytes("short", 64), "short");
    let long = "é".repeat(40); // 80 bytes
    let cut = truncate_bytes(&long, 64);
    assert_eq!(cut.len(), 64);
    let odd = format!("a{}", "é".repeat(40));
    assert_eq!(truncate_bytes(&odd, 64).len(), 63);
}
