//! The shared test vectors in interop/vectors, which the Python and C clients also consume.

use lanchat_protocol::validate::{
    check_nick, check_room, check_short_text, check_text, look_alike,
};
use lanchat_protocol::{
    ErrorCode, Request, ServerFrame, DEFAULT_MAX_TEXT, MAX_STATUS_TEXT_CHARS, MAX_TOPIC_CHARS,
};
use serde_json::Value;

fn vectors(file: &str) -> Vec<Value> {
    let path = format!("{}/../interop/vectors/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let out: Vec<Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{file}: {e}: {l}")))
        .collect();
    assert!(out.len() > 5, "{file} has vectors");
    out
}

fn line_bytes(v: &Value) -> Vec<u8> {
    match (v.get("line"), v.get("line_hex")) {
        (Some(Value::String(s)), _) => s.as_bytes().to_vec(),
        (_, Some(Value::String(h))) => (0..h.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
            .collect(),
        _ => panic!("vector without line: {v}"),
    }
}

#[test]
fn valid_requests_decode_to_their_canonical_form() {
    for v in vectors("requests.jsonl") {
        let name = &v["name"];
        let req = Request::decode(&line_bytes(&v)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let encoded: Value = serde_json::to_value(&req).unwrap();
        assert_eq!(encoded, v["request"], "{name}");
        // And the encoding decodes back to the same request.
        let line = req.encode_line();
        assert_eq!(
            Request::decode(&line[..line.len() - 1]).unwrap(),
            req,
            "{name}"
        );
    }
}

#[test]
fn invalid_lines_get_their_error_code() {
    for v in vectors("invalid.jsonl") {
        let name = &v["name"];
        let err = Request::decode(&line_bytes(&v)).expect_err(name.as_str().unwrap());
        let code: ErrorCode = serde_json::from_value(v["code"].clone()).unwrap();
        assert_eq!(err.code, code, "{name}: {}", err.message);
        let re = err.re.map(|r| serde_json::to_value(r).unwrap());
        assert_eq!(re.as_ref(), v.get("re"), "{name}");
    }
}

#[test]
fn validation_rules() {
    for v in vectors("validate.jsonl") {
        let name = &v["name"];
        let value = v["value"].as_str().unwrap();
        let result = match v["kind"].as_str().unwrap() {
            "nick" => check_nick(value),
            "room" => check_room(value),
            "text" => check_text(value, DEFAULT_MAX_TEXT),
            "status_text" => check_short_text("status text", value, MAX_STATUS_TEXT_CHARS),
            "topic" => check_short_text("topic", value, MAX_TOPIC_CHARS),
            other => panic!("{name}: unknown kind {other}"),
        };
        match (v["ok"].as_bool().unwrap(), result) {
            (true, Ok(())) => {}
            (false, Err((code, _))) => assert_eq!(code.as_str(), v["code"], "{name}"),
            (want, got) => panic!("{name}: want ok={want}, got {got:?}"),
        }
    }
}

#[test]
fn server_frames_decode() {
    for v in vectors("server.jsonl") {
        let name = &v["name"];
        let line = line_bytes(&v);
        let frame = ServerFrame::decode(&line).unwrap_or_else(|e| panic!("{name}: {e}"));
        // Re-encoding keeps every field the frame had (history messages keep their own type).
        let back: Value = serde_json::to_value(&frame).unwrap();
        let original: Value = serde_json::from_slice(&line).unwrap();
        if original["cmd"] != "history" {
            assert_eq!(back, original, "{name}");
        }
    }
}

#[test]
fn frames_from_a_newer_server() {
    for v in vectors("server_future.jsonl") {
        let name = &v["name"];
        let line = line_bytes(&v);
        let decoded = ServerFrame::decode(&line);
        let expect = v["expect"].as_str().unwrap();
        match expect {
            // An unknown event type: the typed decoder refuses it and clients skip the line.
            "ignore" => assert!(decoded.is_err(), "{name}"),
            // Unknown codes, reasons and extra fields still decode as the known frame type.
            "error" | "bye" | "message" | "welcome" => {
                let frame = decoded.unwrap_or_else(|e| panic!("{name}: {e}"));
                let ty = serde_json::to_value(&frame).unwrap()["type"].clone();
                assert_eq!(ty, expect, "{name}");
            }
            // A new ok cmd or status value: typed decoding may fail, but `type` and `re` stay
            // readable from the raw object so a client can still match the reply.
            _ => {
                let raw: Value = serde_json::from_slice(&line).unwrap();
                assert_eq!(
                    raw["type"],
                    if expect == "ok" { "ok" } else { expect },
                    "{name}"
                );
            }
        }
    }
}

#[test]
fn name_rules_of_the_server() {
    for v in vectors("names.jsonl") {
        let name = &v["name"];
        let (value, a, b) = (v["value"].as_str(), v["a"].as_str(), v["b"].as_str());
        match v["kind"].as_str().unwrap() {
            kind @ ("nick" | "room") => {
                let value = value.unwrap();
                let result = if kind == "nick" {
                    check_nick(value)
                } else {
                    check_room(value)
                };
                match (v["ok"].as_bool().unwrap(), result) {
                    (true, Ok(())) => {}
                    (false, Err((code, _))) => assert_eq!(code.as_str(), v["code"], "{name}"),
                    (want, got) => panic!("{name}: want ok={want}, got {got:?}"),
                }
            }
            "same" => assert!(look_alike(a.unwrap(), b.unwrap()), "{name}"),
            "different" => assert!(!look_alike(a.unwrap(), b.unwrap()), "{name}"),
            other => panic!("{name}: unknown kind {other}"),
        }
    }
}

#[test]
fn discovery_datagrams() {
    use lanchat_protocol::discovery::Datagram;
    for v in vectors("discovery.jsonl") {
        let name = &v["name"];
        let bytes = v["datagram"].as_str().unwrap().as_bytes();
        let datagram = Datagram::parse(bytes).unwrap_or_else(|| panic!("{name}: not parsed"));
        // Re-encoding gives back every field, and no `tls_sha256` where there was none.
        let back: Value = serde_json::from_slice(&datagram.encode()).unwrap();
        let original: Value = serde_json::from_slice(bytes).unwrap();
        assert_eq!(back, original, "{name}");
        if let Datagram::Beacon(beacon) = datagram {
            match (&beacon.tls_sha256, original.get("tls_sha256")) {
                (Some(hex), Some(_)) => assert!(
                    hex.len() == 64
                        && hex
                            .bytes()
                            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
                    "{name}: 64 lowercase hex digits"
                ),
                (None, None) => {}
                other => panic!("{name}: {other:?}"),
            }
        }
    }
}
