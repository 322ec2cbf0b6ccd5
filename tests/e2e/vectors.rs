//! The shared invalid-input vectors, sent to the real server: each gets its documented error code
//! and `re`, and the connection goes on.

use lanchat_tests::{workspace_root, ServerProcess, TestClient};
use serde_json::Value;

fn invalid_vectors() -> Vec<(String, Vec<u8>, Value)> {
    let path = workspace_root().join("interop/vectors/invalid.jsonl");
    std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let bytes = match (&v["line"], &v["line_hex"]) {
                (Value::String(s), _) => s.as_bytes().to_vec(),
                (_, Value::String(h)) => (0..h.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
                    .collect(),
                _ => panic!("{v}"),
            };
            (v["name"].as_str().unwrap().to_owned(), bytes, v)
        })
        .collect()
}

#[tokio::test]
async fn every_invalid_vector_gets_its_error_from_the_server() {
    let server = ServerProcess::start(&[]);
    let vectors = invalid_vectors();
    // Fewer than 20 per connection, so too_many_errors never interferes.
    for chunk in vectors.chunks(15) {
        let (mut c, _) = TestClient::hello(server.addr, "tester").await;
        for (name, bytes, v) in chunk {
            let mut line = bytes.clone();
            line.push(b'\n');
            c.send_raw(&line).await;
            let e = c.recv().await;
            assert_eq!(e["type"], "error", "{name}: {e}");
            assert_eq!(e["code"], v["code"], "{name}: {e}");
            assert_eq!(e.get("re"), v.get("re"), "{name}: {e}");
        }
        c.sync().await;
        c.send(serde_json::json!({"type":"quit"})).await;
        c.read_to_close().await;
    }
}
