//! Lookalike and invisible names (issue 14, finding 9) against the real server.

use lanchat_tests::{ServerProcess, TestClient};
use serde_json::json;

#[tokio::test]
async fn lookalikes_of_an_online_nick_and_invisible_nicks_are_refused() {
    let server = ServerProcess::start(&[]);
    let (mut alice, _) = TestClient::hello(server.addr, "alice").await;
    let mut c = TestClient::connect(server.addr).await;
    // Cyrillic а among Latin letters: mixed scripts.
    let e = c.request(json!({"type":"hello","nick":"аlice"})).await;
    assert_eq!(e["code"], "nick_invalid", "{e}");
    assert!(e["message"].as_str().unwrap().contains("scripts"), "{e}");
    // All Cyrillic, or fullwidth: valid names, but they look like alice.
    for lookalike in ["аӏісе", "ａｌｉｃｅ", "𝐚𝐥𝐢𝐜𝐞"] {
        let e = c.request(json!({"type":"hello","nick":lookalike})).await;
        assert_eq!(e["code"], "nick_taken", "{lookalike}: {e}");
        assert!(e["message"].as_str().unwrap().contains("\"alice\""), "{e}");
    }
    // A Hangul filler renders as a blank.
    let e = c.request(json!({"type":"hello","nick":"\u{3164}"})).await;
    assert_eq!(e["code"], "nick_invalid", "{e}");
    assert!(e["message"].as_str().unwrap().contains("U+3164"), "{e}");
    // The connection goes on, and a name of its own is welcome.
    let w = c.request(json!({"type":"hello","nick":"аӏла"})).await;
    assert_eq!(w["type"], "welcome", "{w}");
    alice.expect_event("join").await;
    // Once alice is called something else, her old nick's lookalikes are free.
    let ok = alice.request(json!({"type":"nick","nick":"alicia"})).await;
    assert_eq!(ok["nick"], "alicia", "{ok}");
    let (_, w) = TestClient::hello(server.addr, "ａｌｉｃｅ").await;
    assert_eq!(w["nick"], "ａｌｉｃｅ");
}
