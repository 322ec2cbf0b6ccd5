//! The line codec and the request decoder on arbitrary bytes, split at arbitrary points: no
//! panic, no frame longer than max_line, bounded buffering, and decode never panics.
#![no_main]

use bytes::BytesMut;
use lanchat_protocol::{Line, LineCodec, Request};
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let max_line = 1 + data[0] as usize;
    let step = 1 + data[1] as usize % 64;
    let input = &data[2..];
    let mut codec = LineCodec::new(max_line);
    let mut buf = BytesMut::new();
    for chunk in input.chunks(step) {
        buf.extend_from_slice(chunk);
        while let Some(item) = codec.decode(&mut buf).unwrap() {
            check(item, max_line);
        }
        assert!(
            buf.len() <= max_line + 2,
            "buffered {} > {}",
            buf.len(),
            max_line + 2
        );
    }
    while let Some(item) = codec.decode_eof(&mut buf).unwrap() {
        check(item, max_line);
    }
    let _ = Request::decode(input);
});

fn check(item: Line, max_line: usize) {
    if let Line::Frame(f) = item {
        assert!(!f.is_empty() && f.len() <= max_line && !f.contains(&b'\n'));
        if let Ok(req) = Request::decode(&f) {
            let line = req.encode_line();
            assert_eq!(Request::decode(&line[..line.len() - 1]).unwrap(), req);
        }
    }
}
