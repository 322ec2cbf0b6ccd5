//! A whole session fed arbitrary client bytes (with a second, well-behaved session in the same
//! server to receive fan-out): no panic, and everything the server writes is a valid frame line.
#![no_main]

use std::time::Duration;

use lanchat_protocol::ServerFrame;
use lanchat_server::session::serve;
use lanchat_server::{Config, Peer, Shared};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

fuzz_target!(|data: &[u8]| {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let mut config = Config::default();
        // The smallest limits the server accepts (2 x max_text + 512 <= max_line).
        config.limits.max_line = 1024;
        config.limits.max_text = 256;
        config.history = 8;
        let shared = Shared::new(config);
        let shutdown = CancellationToken::new();

        let mut outputs = Vec::new();
        for input in [&b"{\"type\":\"hello\",\"nick\":\"watcher\"}\n"[..], data] {
            let (client, server) = tokio::io::duplex(64 * 1024);
            let (r, w) = tokio::io::split(server);
            let permit = shared.admit(lanchat_server::admission::Source::Unknown).unwrap();
            tokio::spawn(serve(
                r,
                w,
                Peer(None),
                shared.clone(),
                shutdown.clone(),
                permit,
            ));
            let (mut cr, mut cw) = tokio::io::split(client);
            let input = input.to_vec();
            let last = outputs.len() == 1;
            tokio::spawn(async move {
                let _ = cw.write_all(&input).await;
                if last {
                    let _ = cw.shutdown().await;
                } else {
                    // The watcher stays until shutdown.
                    std::future::pending::<()>().await;
                }
            });
            outputs.push(tokio::spawn(async move {
                let mut out = Vec::new();
                let _ = cr.read_to_end(&mut out).await;
                out
            }));
        }
        // Let the fuzzed session run to its end, then stop the server.
        tokio::time::sleep(Duration::from_secs(30)).await;
        shutdown.cancel();
        for task in outputs {
            let out = tokio::time::timeout(Duration::from_secs(60), task)
                .await
                .expect("session ended")
                .unwrap();
            for line in out.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                ServerFrame::decode(line).unwrap_or_else(|e| {
                    panic!(
                        "server wrote an invalid frame {:?}: {e}",
                        String::from_utf8_lossy(line)
                    )
                });
            }
        }
    });
});
