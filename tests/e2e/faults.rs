//! Hostile and broken clients against the real binary. After each, a fresh client must chat
//! normally and the server's memory must be back near its baseline.

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lanchat_tests::{bin_path, proc_rss_kib, ServerProcess, TestClient, WAIT};
use serde_json::json;
use tokio::io::AsyncWriteExt;

/// Memory the server may keep above its baseline after an attack (allocator caches, buffers).
const RSS_SLACK_KIB: u64 = 24 * 1024;

/// Two fresh clients exchange a message, and the server's memory is near `baseline_kib`.
async fn assert_healthy(server: &ServerProcess, baseline_kib: u64) {
    let a = format!("fresh{}", uuid::Uuid::new_v4().simple());
    let b = format!("fresh{}", uuid::Uuid::new_v4().simple());
    let (mut ca, _) = TestClient::hello(server.addr, &a[..20]).await;
    let (mut cb, _) = TestClient::hello(server.addr, &b[..20]).await;
    let ok = ca
        .request(json!({"type":"say","room":"lobby","text":"still here?"}))
        .await;
    assert_eq!(ok["cmd"], "say", "{ok}");
    let m = cb.skip_until("message").await;
    assert_eq!(m["text"], "still here?");
    let rss = server.rss_kib();
    assert!(
        rss <= baseline_kib + RSS_SLACK_KIB,
        "server RSS {rss} KiB, baseline {baseline_kib} KiB"
    );
}

async fn baseline(server: &ServerProcess) -> u64 {
    // Warm up the paths the health check uses, so they are in the baseline.
    let (mut c, _) = TestClient::hello(server.addr, "warmup").await;
    c.sync().await;
    // Leave for good (EOF comes after the session left the state), so no event reaches the test.
    c.send(json!({"type":"quit"})).await;
    c.read_to_close().await;
    server.rss_kib()
}

#[tokio::test]
async fn a_hundred_mib_line_is_discarded_in_bounded_memory() {
    let server = ServerProcess::start(&[]);
    let base = baseline(&server).await;
    let mut c = TestClient::connect(server.addr).await;
    let chunk = vec![b'x'; 1024 * 1024];
    for _ in 0..100 {
        c.send_raw(&chunk).await;
    }
    c.send_raw(b"\n").await;
    let e = c.recv().await;
    assert_eq!(e["code"], "line_too_long");
    let peak = server.rss_kib();
    assert!(
        peak <= base + RSS_SLACK_KIB,
        "RSS {peak} KiB after a 100 MiB line, baseline {base} KiB"
    );
    // The same connection goes on.
    let w = c.request(json!({"type":"hello","nick":"bigmouth"})).await;
    assert_eq!(w["type"], "welcome");
    assert_healthy(&server, base).await;
}

#[tokio::test]
async fn closing_mid_frame_is_a_lost_connection() {
    let server = ServerProcess::start(&[]);
    let base = baseline(&server).await;
    let (mut watcher, _) = TestClient::hello(server.addr, "watcher").await;
    let (mut c, _) = TestClient::hello(server.addr, "halfway").await;
    watcher.expect_event("join").await;
    c.send_raw(b"{\"type\":\"say\",\"room\":\"lobby\",\"te")
        .await;
    drop(c);
    let q = watcher.skip_until("quit").await;
    assert_eq!(
        q,
        json!({"type":"quit","nick":"halfway","reason":"connection lost"})
    );
    assert_healthy(&server, base).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_while_the_server_is_writing() {
    let server = ServerProcess::start(&["--rate-per-sec", "0"]);
    let base = baseline(&server).await;
    let (mut sender, _) = TestClient::hello(server.addr, "sender").await;
    for i in 0..5 {
        let stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let mut victim = TestClient::from_stream(stream);
        victim
            .request(json!({"type":"hello","nick":format!("victim{i}")}))
            .await;
        // Keep the server busy writing to the victim, which does not read.
        let text = "y".repeat(2000);
        for _ in 0..300 {
            sender
                .send(json!({"type":"say","room":"lobby","text":text}))
                .await;
        }
        let stream = victim.into_stream();
        socket2::SockRef::from(&stream)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(stream); // RST
        let q = sender.skip_until("quit").await;
        assert_eq!(q["nick"], format!("victim{i}"));
    }
    sender.sync().await;
    assert_healthy(&server, base).await;
}

/// Readers that stop reading while asking for more are dropped as slow consumers, and meanwhile
/// each holds at most its outbox's bound (4 MiB of lines, counting the batch its writer is stuck
/// on, plus one 64 KiB write buffer): not a queue in the writer's hands and another queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_that_stop_reading_are_dropped_in_bounded_memory() {
    const STUCK: usize = 16;
    const BOUND_KIB: u64 = 4 * 1024 + 64;
    const ROUNDS: usize = 64;
    let server = ServerProcess::start(&["--rate-per-sec", "0"]);
    // A full page of history makes every `history` reply a fresh line of about 800 KiB.
    let (mut watcher, _) = TestClient::hello(server.addr, "watcher").await;
    let text = "h".repeat(4000);
    for _ in 0..200 {
        watcher
            .send(json!({"type":"say","room":"lobby","text":text}))
            .await;
    }
    watcher.sync().await;
    let base = baseline(&server).await;

    let mut stuck = Vec::new();
    for i in 0..STUCK {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        // A small receive window, so that the replies pile up in the server, not in our kernel.
        socket.set_recv_buffer_size(16 * 1024).unwrap();
        let stream = tokio::time::timeout(WAIT, socket.connect(server.addr))
            .await
            .expect("connect timed out")
            .unwrap();
        let mut c = TestClient::from_stream(stream);
        let nick = format!("stuck{i}");
        let w = c.request(json!({"type":"hello","nick":nick})).await;
        assert_eq!(w["type"], "welcome");
        while watcher.skip_until("join").await["nick"] != nick.as_str() {}
        // From here on it never reads.
        stuck.push(Some((nick, c.into_stream())));
    }

    let peak = Arc::new(AtomicU64::new(0));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = std::thread::spawn({
        let (peak, sampling, pid) = (peak.clone(), sampling.clone(), server.pid());
        move || {
            while sampling.load(Ordering::Relaxed) {
                peak.fetch_max(proc_rss_kib(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    });
    let request = b"{\"type\":\"history\",\"room\":\"lobby\",\"limit\":200}\n";
    let started = Instant::now();
    let mut dropped = 0;
    for _ in 0..ROUNDS {
        // In step, so that the sessions fill up together.
        for (_, stream) in stuck.iter_mut().flatten() {
            // A session may be closed already (its quit is not read yet): the write then fails.
            let _ = stream.write_all(request).await;
        }
        watcher.sync().await;
        for quit in watcher.drain_pending() {
            if quit["type"] == "ping" {
                continue;
            }
            assert_eq!(quit["type"], "quit", "{quit}");
            assert_eq!(quit["reason"], "slow consumer", "{quit}");
            let slot = stuck
                .iter_mut()
                .find(|s| s.as_ref().is_some_and(|(nick, _)| quit["nick"] == *nick))
                .expect("a stuck session");
            *slot = None;
            dropped += 1;
        }
        if dropped == STUCK {
            break;
        }
    }
    sampling.store(false, Ordering::Relaxed);
    sampler.join().unwrap();
    assert_eq!(dropped, STUCK, "dropped within {ROUNDS} rounds of requests");
    assert!(started.elapsed() < Duration::from_secs(30), "slow to drop");
    let peak = peak.load(Ordering::Relaxed);
    let allowed = base + STUCK as u64 * BOUND_KIB;
    assert!(
        peak <= allowed + RSS_SLACK_KIB,
        "RSS peaked at {peak} KiB with {STUCK} stuck readers, baseline {base} KiB"
    );
    // Freed, the lines may stay in the allocator's arenas (glibc keeps a thread's): after the
    // attack the server's memory is within what it was allowed during it, not near `base`.
    assert_healthy(&server, allowed).await;
}

#[tokio::test]
async fn few_file_descriptors_refuse_the_excess_cleanly() {
    let server_bin = bin_path("lanchat-server");
    let mut server = ServerProcess::start_with(
        Command::new("sh")
            .arg("-c")
            .arg("ulimit -n 64 && exec \"$0\" --listen 127.0.0.1:0 --no-announce --max-per-ip 1000")
            .arg(&server_bin),
    );
    let cpu_before = cpu_seconds(server.pid());
    let mut welcomed = Vec::new();
    let mut refused = 0;
    for i in 0..100 {
        let mut c = TestClient::connect(server.addr).await;
        c.send(json!({"type":"hello","nick":format!("fd{i}"),"id":1}))
            .await;
        let first = c.recv().await;
        match first["type"].as_str() {
            Some("welcome") => welcomed.push(c),
            _ => {
                assert_eq!(first["code"], "server_full", "{first}");
                let rest = c.read_to_close().await;
                assert_eq!(rest.last().unwrap()["reason"], "server_full");
                refused += 1;
            }
        }
    }
    assert!(welcomed.len() >= 16, "served {}", welcomed.len());
    assert!(refused >= 50, "refused {refused}");
    assert_eq!(welcomed.len() + refused, 100);
    // Everyone still admitted is served.
    for c in &mut welcomed {
        c.sync().await;
    }
    let cpu = cpu_seconds(server.pid()) - cpu_before;
    assert!(
        cpu < 2.0,
        "server used {cpu:.2} CPU s for 100 connections: a busy loop?"
    );
    assert!(
        server.stderr_text().contains("--max-clients lowered"),
        "{}",
        server.stderr_text()
    );
    let count = welcomed.len();
    drop(welcomed);
    // Slots come back once the sockets close.
    let deadline = Instant::now() + WAIT;
    let mut c = loop {
        let mut c = TestClient::connect(server.addr).await;
        c.send(json!({"type":"hello","nick":"afterwards","id":1}))
            .await;
        if c.recv().await["type"] == "welcome" {
            break c;
        }
        assert!(
            Instant::now() < deadline,
            "no slot freed after {count} left"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    c.sync().await;
    server.stop();
    assert_eq!(
        c.read_to_close().await.last().unwrap()["reason"],
        "shutting_down"
    );
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks as f64 / hz
}
