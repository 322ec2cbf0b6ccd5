//! Many members, many senders: exactly-once delivery and one order per room.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use lanchat_tests::{ServerProcess, TestClient};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_members_see_one_order_while_several_send() {
    one_order_while_several_send(&["--rate-per-sec", "0"]).await;
}

/// The same with two runtime threads: pushes from both, the flusher on either, writer tasks
/// taking a queue over (issue 17) while the other thread pushes to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_members_see_one_order_on_two_server_threads() {
    one_order_while_several_send(&["--rate-per-sec", "0", "--threads", "2"]).await;
}

async fn one_order_while_several_send(flags: &[&str]) {
    let server = ServerProcess::start(flags);
    const SENDERS: usize = 4;
    const PER_SENDER: usize = 100;
    let mut listeners = Vec::new();
    for i in 0..3 {
        let (mut c, _) = TestClient::hello(server.addr, &format!("l{i}")).await;
        c.request(json!({"type":"join","room":"busy"})).await;
        listeners.push(c);
    }
    let mut senders = Vec::new();
    for i in 0..SENDERS {
        let (mut c, _) = TestClient::hello(server.addr, &format!("s{i}")).await;
        c.request(json!({"type":"join","room":"busy"})).await;
        senders.push(c);
    }
    // Everyone has joined; drain join events by syncing after the last join.
    let total = SENDERS * PER_SENDER;
    let mut tasks = Vec::new();
    for (i, mut s) in senders.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            for k in 0..PER_SENDER {
                s.send(json!({"type":"say","room":"busy","text":format!("s{i}-{k}")}))
                    .await;
            }
            // Collect what this sender saw from the others.
            let mut seen = Vec::new();
            while seen.len() < total - PER_SENDER {
                let v = s.recv().await;
                if v["type"] == "message" {
                    seen.push(v["id"].as_str().unwrap().to_owned());
                }
            }
            (format!("s{i}"), seen)
        }));
    }
    let mut orders = Vec::new();
    for l in &mut listeners {
        let mut seen = Vec::new();
        let mut from: HashMap<String, String> = HashMap::new();
        while seen.len() < total {
            let v = l.recv().await;
            if v["type"] == "message" {
                let id = v["id"].as_str().unwrap().to_owned();
                from.insert(id.clone(), v["from"].as_str().unwrap().to_owned());
                seen.push(id);
            }
        }
        assert_eq!(
            seen.iter().collect::<HashSet<_>>().len(),
            total,
            "no duplicates"
        );
        orders.push((seen, from));
    }
    let (reference, from) = &orders[0];
    for (other, _) in &orders[1..] {
        assert_eq!(other, reference, "every member sees one order");
    }
    for t in tasks {
        let (nick, seen) = tokio::time::timeout(Duration::from_secs(30), t)
            .await
            .unwrap()
            .unwrap();
        let expected: Vec<_> = reference
            .iter()
            .filter(|id| from[*id] != nick)
            .cloned()
            .collect();
        assert_eq!(
            seen, expected,
            "{nick} sees the others' messages in the same order"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_clients_each_send_to_all() {
    let server = ServerProcess::start(&["--max-per-ip", "1000"]);
    const N: usize = 200;
    let mut clients = Vec::new();
    for i in 0..N {
        clients.push(TestClient::hello(server.addr, &format!("n{i}")).await.0);
    }
    let mut tasks = Vec::new();
    for (i, mut c) in clients.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let ok = c
                .request(json!({"type":"say","room":"lobby","text":format!("from n{i}")}))
                .await;
            assert_eq!(ok["cmd"], "say");
            let mut got = HashSet::new();
            let mut count = 0;
            while count < N - 1 {
                let v = c.recv().await;
                if v["type"] == "message" {
                    count += 1;
                    got.insert(v["text"].as_str().unwrap().to_owned());
                }
            }
            c.sync().await;
            let extra = c.drain_pending();
            assert!(
                extra.iter().all(|v| v["type"] != "message"),
                "n{i}: extra {extra:?}"
            );
            (i, got, count)
        }));
    }
    for t in tasks {
        let (i, got, count) = tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(count, N - 1);
        let expected: HashSet<String> = (0..N)
            .filter(|j| *j != i)
            .map(|j| format!("from n{j}"))
            .collect();
        assert_eq!(got, expected, "n{i} got every other message exactly once");
    }
}
