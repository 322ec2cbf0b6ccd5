//! Issue 18's web chat in a real browser: headless Chromium, driven over WebDriver, on the page
//! the server serves itself. Two browser users and a terminal user (a protocol client over TCP)
//! chat in rooms and in private; scrolling back loads history in order; a restart of the server
//! is survived with the missed messages shown; hostile text stays text; a page from another
//! origin cannot open the WebSocket; a phone-sized window is usable.

use std::net::SocketAddr;

use lanchat_tests::browser::{Browser, Page};
use lanchat_tests::{ServerProcess, TempDir, TestClient};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DESKTOP: (u32, u32) = (1280, 800);
const PHONE: (u32, u32) = (390, 844);
/// WebDriver key codes.
const ENTER: &str = "\u{e007}";
const TAB: &str = "\u{e004}";
const SHIFT: &str = "\u{e008}";
const ALT: &str = "\u{e00a}";
const RELEASE: &str = "\u{e000}";

fn base(addr: SocketAddr) -> String {
    format!("http://{addr}/")
}

/// Open the chat, enter `nick` and wait until the page is connected in the default room.
async fn login(page: &Page, addr: SocketAddr, nick: &str) {
    page.goto(&base(addr)).await;
    page.type_into("#login-nick", &format!("{nick}{ENTER}"))
        .await;
    connected(page).await;
    page.wait_for(
        "the default room's title",
        "return document.getElementById('conv-title').textContent === '# lobby'",
        vec![],
    )
    .await;
}

async fn connected(page: &Page) {
    page.wait_for(
        "the connection state 'Connected'",
        "return document.getElementById('conn').textContent === 'Connected'",
        vec![],
    )
    .await;
}

/// Type a message (or command) in the composer and press Enter.
async fn say(page: &Page, text: &str) {
    page.type_into("#input", &format!("{text}{ENTER}")).await;
}

/// The messages shown in the open conversation, as [from, text] pairs in page order.
async fn shown(page: &Page) -> Vec<(String, String)> {
    let v = page
        .eval(
            "return [...document.querySelectorAll('#messages li.msg')].map(li =>
               [li.querySelector('.from').textContent, li.querySelector('.text').textContent])",
        )
        .await;
    serde_json::from_value(v).expect("pairs of strings")
}

/// Wait until the open conversation shows a message whose text is exactly `text`.
async fn wait_message(page: &Page, text: &str) {
    page.wait_for(
        &format!("the message {text:?}"),
        "return [...document.querySelectorAll('#messages li.msg .text')]
           .some(e => e.textContent === arguments[0])",
        vec![json!(text)],
    )
    .await;
}

/// Wait for the sidebar entry of `name` to satisfy `cond` (JS over `b`, the entry's button).
async fn wait_sidebar(page: &Page, what: &str, name: &str, cond: &str) -> Value {
    page.wait_for(
        what,
        &format!(
            "const b = [...document.querySelectorAll('#sidebar button.conv')]
               .find(b => b.querySelector('.conv-name').textContent.slice(2) === arguments[0]);
             if (!b) return null;
             return {cond};"
        ),
        vec![json!(name)],
    )
    .await
}

async fn click_conversation(page: &Page, name: &str) {
    page.eval_with(
        "[...document.querySelectorAll('#sidebar button.conv')]
           .find(b => b.querySelector('.conv-name').textContent.slice(2) === arguments[0]).click()",
        vec![json!(name)],
    )
    .await;
    page.wait_for(
        &format!("the conversation {name} to open"),
        "return document.getElementById('conv-title').textContent.slice(2) === arguments[0]",
        vec![json!(name)],
    )
    .await;
}

/// The next `message` or `direct` a protocol client receives, skipping everything else.
async fn next_said(c: &mut TestClient, ty: &str) -> Value {
    loop {
        let v = c.recv().await;
        if v["type"] == ty {
            return v;
        }
        if v["type"] == "ping" {
            c.send(json!({"type":"pong"})).await;
        }
    }
}

#[tokio::test]
async fn two_browsers_and_a_terminal_chat_in_rooms_and_in_private() {
    let server = ServerProcess::start(&["--rate-per-sec", "0"]);
    let mut browser = Browser::start();
    let ann = browser.page(DESKTOP.0, DESKTOP.1).await;
    let bob = browser.page(DESKTOP.0, DESKTOP.1).await;
    login(&ann, server.addr, "ann").await;
    login(&bob, server.addr, "bob").await;
    let (mut cyd, _) = TestClient::hello(server.addr, "cyd").await;

    // The terminal speaks in lobby; both pages show it.
    cyd.request(json!({"type":"say","room":"lobby","text":"hello from the terminal"}))
        .await;
    wait_message(&ann, "hello from the terminal").await;
    wait_message(&bob, "hello from the terminal").await;
    // ann answers from the page: the terminal and bob get it, ann sees her own line once.
    say(&ann, "hi cyd, hi bob").await;
    let m = next_said(&mut cyd, "message").await;
    assert_eq!(
        (m["from"].as_str(), m["text"].as_str()),
        (Some("ann"), Some("hi cyd, hi bob"))
    );
    wait_message(&bob, "hi cyd, hi bob").await;
    wait_message(&ann, "hi cyd, hi bob").await;
    assert_eq!(
        shown(&ann).await,
        vec![
            ("cyd".to_owned(), "hello from the terminal".to_owned()),
            ("ann".to_owned(), "hi cyd, hi bob".to_owned())
        ]
    );
    // The members list has everyone; the nick is remembered for the next visit.
    ann.wait_for(
        "ann's member list",
        "return [...document.querySelectorAll('#members .member-nick')].map(e => e.textContent)
           .join(',') === 'ann (you),bob,cyd'",
        vec![],
    )
    .await;
    assert_eq!(
        ann.eval("return localStorage.getItem('lanchat.nick')")
            .await,
        "ann"
    );

    // A second room: ann by command, bob by the sidebar's form, cyd by protocol.
    say(&ann, "/join rust").await;
    ann.wait_for(
        "ann in rust",
        "return document.getElementById('conv-title').textContent === '# rust'",
        vec![],
    )
    .await;
    bob.type_into("#join-room", &format!("rust{ENTER}")).await;
    bob.wait_for(
        "bob in rust",
        "return document.getElementById('conv-title').textContent === '# rust'",
        vec![],
    )
    .await;
    cyd.request(json!({"type":"join","room":"rust"})).await;
    cyd.request(json!({"type":"topic","room":"rust","topic":"borrowck support group"}))
        .await;
    ann.wait_for(
        "the topic in ann's header",
        "return document.getElementById('topic').textContent === 'borrowck support group'",
        vec![],
    )
    .await;
    say(&bob, "rust talk here").await;
    wait_message(&ann, "rust talk here").await;
    let m = next_said(&mut cyd, "message").await;
    assert_eq!(
        (m["room"].as_str(), m["text"].as_str()),
        (Some("rust"), Some("rust talk here"))
    );

    // Alt+1 goes back to lobby; a mention in rust marks rust's entry, with an unread count.
    ann.type_into("#input", &format!("{ALT}1{RELEASE}")).await;
    ann.wait_for(
        "Alt+1 to open lobby",
        "return document.getElementById('conv-title').textContent === '# lobby'",
        vec![],
    )
    .await;
    cyd.request(json!({"type":"say","room":"rust","text":"ann: what do you think?"}))
        .await;
    let unread = wait_sidebar(
        &ann,
        "rust's unread count and mention mark",
        "rust",
        "b.querySelector('.badge') && b.querySelector('.mention-mark') &&
           b.querySelector('.badge').textContent",
    )
    .await;
    assert_eq!(unread, "1");
    click_conversation(&ann, "rust").await;
    ann.wait_for(
        "the mention highlighted",
        "return [...document.querySelectorAll('#messages li.msg.mention .text')]
           .some(e => e.textContent === 'ann: what do you think?')",
        vec![],
    )
    .await;
    wait_sidebar(&ann, "rust read", "rust", "!b.querySelector('.badge')").await;

    // Tab completes a nick; Shift+Enter makes a second line; Enter sends both as one message.
    ann.type_into("#input", &format!("cy{TAB}")).await;
    assert_eq!(
        ann.eval("return document.getElementById('input').value")
            .await,
        "cyd: "
    );
    ann.type_into(
        "#input",
        &format!("line one{SHIFT}{ENTER}{RELEASE}line two{ENTER}"),
    )
    .await;
    let m = next_said(&mut cyd, "message").await;
    assert_eq!(m["text"], "cyd: line one\nline two");
    wait_message(&bob, "cyd: line one\nline two").await;

    // Away shows in the members list.
    cyd.request(json!({"type":"status","status":"away","text":"lunch"}))
        .await;
    ann.wait_for(
        "cyd away in ann's list",
        "const li = [...document.querySelectorAll('#members li')]
           .find(li => li.querySelector('.member-nick').textContent === 'cyd');
         return li && li.classList.contains('status-away') &&
           li.querySelector('.member-status').textContent === 'away: lunch'",
        vec![],
    )
    .await;

    // A DM from the terminal becomes a conversation in ann's sidebar; she answers in it.
    cyd.request(json!({"type":"dm","to":"ann","text":"psst, a secret"}))
        .await;
    wait_sidebar(
        &ann,
        "a DM conversation with cyd",
        "cyd",
        "!!b.querySelector('.mention-mark')",
    )
    .await;
    click_conversation(&ann, "cyd").await;
    wait_message(&ann, "psst, a secret").await;
    say(&ann, "my lips are sealed").await;
    let d = next_said(&mut cyd, "direct").await;
    assert_eq!(
        (d["from"].as_str(), d["text"].as_str()),
        (Some("ann"), Some("my lips are sealed"))
    );
    // bob, who was not part of it, has no such conversation.
    let bobs = bob
        .eval("return [...document.querySelectorAll('#dms .conv-name')].map(e => e.textContent)")
        .await;
    assert_eq!(bobs, json!([]));
    // Between two browsers too: bob writes to ann with /msg.
    say(&bob, "/msg ann from one browser to another").await;
    wait_sidebar(
        &ann,
        "a DM conversation with bob",
        "bob",
        "!!b.querySelector('.badge')",
    )
    .await;
    click_conversation(&ann, "bob").await;
    wait_message(&ann, "from one browser to another").await;

    // Status and nick from the page reach the others: the terminal gets the events, bob's
    // members list follows, and the page remembers the new nick.
    ann.click("#me-status").await;
    ann.find("#me-status")
        .await
        .select_by_value("busy")
        .await
        .expect("choose busy");
    let p = next_said(&mut cyd, "presence").await;
    assert_eq!(
        (p["nick"].as_str(), p["status"].as_str()),
        (Some("ann"), Some("busy"))
    );
    say(&ann, "/nick annie").await;
    let n = next_said(&mut cyd, "nick").await;
    assert_eq!(
        (n["old"].as_str(), n["new"].as_str()),
        (Some("ann"), Some("annie"))
    );
    bob.wait_for(
        "annie, busy, in bob's list",
        "const li = [...document.querySelectorAll('#members li')]
           .find(li => li.querySelector('.member-nick').textContent === 'annie');
         return li && li.classList.contains('status-busy')",
        vec![],
    )
    .await;
    ann.wait_for(
        "the new nick remembered",
        "return localStorage.getItem('lanchat.nick') === 'annie' &&
           document.getElementById('me-nick').textContent === 'annie'",
        vec![],
    )
    .await;
    // Every control has a label, and new messages have a live region.
    let unlabelled = ann
        .eval(
            "return [...document.querySelectorAll('input, select, textarea, button')]
               .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') &&
                 !e.textContent.trim())
               .map(e => e.id || e.outerHTML.slice(0, 60))",
        )
        .await;
    assert_eq!(unlabelled, json!([]));
    // Nothing on the page was blocked by the server's Content-Security-Policy.
    for page in [&ann, &bob] {
        let blocked = page
            .eval("return document.documentElement.dataset.cspViolations || null")
            .await;
        assert_eq!(blocked, Value::Null, "CSP violations");
    }
    assert!(
        ann.eval("return document.getElementById('announcer').textContent")
            .await
            .as_str()
            .unwrap()
            .contains("from one browser to another"),
        "the live region announced the DM"
    );

    ann.close().await;
    bob.close().await;
}

#[tokio::test]
async fn scrolling_up_loads_older_history_in_order() {
    let server = ServerProcess::start(&["--rate-per-sec", "0"]);
    let (mut seed, _) = TestClient::hello(server.addr, "seed").await;
    let texts: Vec<String> = (1..=150)
        .map(|i| format!("message number {i:03}"))
        .collect();
    for t in &texts {
        let ok = seed
            .request(json!({"type":"say","room":"lobby","text":t}))
            .await;
        assert_eq!(ok["cmd"], "say", "{ok}");
    }
    let mut browser = Browser::start();
    let page = browser.page(DESKTOP.0, DESKTOP.1).await;
    login(&page, server.addr, "reader").await;
    // First the newest page only.
    wait_message(&page, "message number 150").await;
    let first = shown(&page).await;
    assert_eq!(first.len(), 50, "the first page is the newest 50");
    assert_eq!(first[0].1, "message number 101");
    // Scroll to the top until the page says the history starts here. Each round counts what is
    // shown before it scrolls, then waits for more (or the start).
    let deadline = tokio::time::Instant::now() + lanchat_tests::WAIT * 2;
    loop {
        let round = page
            .eval(
                "const n = document.querySelectorAll('#messages li.msg').length;
                 const start = document.getElementById('history-state').classList.contains('history-start');
                 if (!start) document.getElementById('scroller').scrollTop = 0;
                 return { n, start }",
            )
            .await;
        if round["start"] == true {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "history never reached its start"
        );
        page.wait_for(
            "an older page, or the start",
            "return document.querySelectorAll('#messages li.msg').length > arguments[0] ||
               document.getElementById('history-state').classList.contains('history-start')",
            vec![round["n"].clone()],
        )
        .await;
    }
    let all: Vec<String> = shown(&page).await.into_iter().map(|(_, t)| t).collect();
    assert_eq!(all, texts, "every message once, oldest first");
    // The place the reader was at stays in view: the newest message was not jumped to.
    let top = page
        .eval("return document.getElementById('scroller').scrollTop")
        .await;
    assert!(top.as_f64().unwrap() < 2000.0, "scrolled to {top}");
    page.close().await;
}

#[tokio::test]
async fn the_page_reconnects_after_a_restart_and_shows_what_it_missed() {
    let data = TempDir::new("web-restart");
    let data_dir = data.path().to_str().unwrap().to_owned();
    // One message from long ago on disk, as the server writes them: its time shows with a date.
    let old_secs = 1_735_812_000; // 2025-01-02 10:00 UTC
    let old_id = uuid::Uuid::new_v7(uuid::Timestamp::from_unix(uuid::NoContext, old_secs, 0));
    std::fs::create_dir_all(data.path().join("rooms")).unwrap();
    let old_line = json!({"type":"message","id":old_id.to_string(),"ts":old_secs * 1000,
        "room":"lobby","from":"cyd","text":"from long ago"});
    std::fs::write(
        data.path().join("rooms/lobby.jsonl"),
        format!("{old_line}\n"),
    )
    .unwrap();
    let mut first = ServerProcess::start(&["--data-dir", &data_dir, "--rate-per-sec", "0"]);
    let addr = first.addr;
    let mut browser = Browser::start();
    let page = browser.page(DESKTOP.0, DESKTOP.1).await;
    login(&page, addr, "ann").await;
    let (mut cyd, _) = TestClient::hello(addr, "cyd").await;
    cyd.request(json!({"type":"say","room":"lobby","text":"before the restart"}))
        .await;
    wait_message(&page, "before the restart").await;
    let stamps = page
        .eval(
            "return [...document.querySelectorAll('#messages li.msg .ts')].map(t => t.textContent)
               .concat([String(new Date().getFullYear())])",
        )
        .await;
    let stamps: Vec<String> = serde_json::from_value(stamps).unwrap();
    assert!(
        stamps[0].contains("2025"),
        "an old message shows its date: {stamps:?}"
    );
    assert!(
        !stamps[1].contains(&stamps[2]) && stamps[1].len() < stamps[0].len(),
        "today's message shows only its time: {stamps:?}"
    );
    // A second room, to be joined again after the restart.
    say(&page, "/join rust").await;
    cyd.request(json!({"type":"join","room":"rust"})).await;
    cyd.request(json!({"type":"say","room":"rust","text":"rust before"}))
        .await;
    wait_message(&page, "rust before").await;
    click_conversation(&page, "lobby").await;

    first.stop();
    drop(cyd);
    page.wait_for(
        "the page to show it is disconnected",
        "const c = document.getElementById('conn');
         return c.classList.contains('conn-offline') && c.textContent.startsWith('Disconnected')",
        vec![],
    )
    .await;
    // While the page is away, the server runs elsewhere on the same data and people talk.
    {
        let mut elsewhere = ServerProcess::start(&["--data-dir", &data_dir, "--rate-per-sec", "0"]);
        let (mut cyd, _) = TestClient::hello(elsewhere.addr, "cyd").await;
        for t in ["missed one", "missed two", "ann: you missed this"] {
            cyd.request(json!({"type":"say","room":"lobby","text":t}))
                .await;
        }
        cyd.request(json!({"type":"join","room":"rust"})).await;
        cyd.request(json!({"type":"say","room":"rust","text":"missed in rust"}))
            .await;
        elsewhere.stop();
    }
    // Back on the page's port: the page reconnects by itself (its back-off is at most 8 s) and
    // catches up.
    let listen = addr.to_string();
    let _second = ServerProcess::start_raw(&[
        "--listen",
        &listen,
        "--no-announce",
        "--data-dir",
        &data_dir,
        "--rate-per-sec",
        "0",
    ]);
    page.wait_for_within(
        lanchat_tests::WAIT * 2,
        "the page to reconnect by itself",
        "return document.getElementById('conn').textContent === 'Connected'",
        vec![],
    )
    .await;
    page.wait_for(
        "the reconnection note with the missed count",
        "return [...document.querySelectorAll('#messages li.note')]
           .some(n => n.textContent === 'Reconnected: 3 messages while you were away.')",
        vec![],
    )
    .await;
    let texts: Vec<String> = shown(&page).await.into_iter().map(|(_, t)| t).collect();
    assert_eq!(
        texts,
        [
            "from long ago",
            "before the restart",
            "missed one",
            "missed two",
            "ann: you missed this"
        ]
    );
    // The page is back in rust too, which shows what was missed there as unread.
    let unread = wait_sidebar(
        &page,
        "rust's unread count after the catch-up",
        "rust",
        "b.querySelector('.badge') && b.querySelector('.badge').textContent",
    )
    .await;
    assert_eq!(unread, "1");
    click_conversation(&page, "rust").await;
    let texts: Vec<String> = shown(&page).await.into_iter().map(|(_, t)| t).collect();
    assert_eq!(texts, ["rust before", "missed in rust"]);
    click_conversation(&page, "lobby").await;
    // And the page chats again on the new server.
    let (mut bob, _) = TestClient::hello(addr, "bob").await;
    say(&page, "I am back").await;
    let m = next_said(&mut bob, "message").await;
    assert_eq!(
        (m["from"].as_str(), m["text"].as_str()),
        (Some("ann"), Some("I am back"))
    );
    page.close().await;
}

#[tokio::test]
async fn hostile_text_renders_as_inert_text() {
    let server = ServerProcess::start(&[]);
    let mut browser = Browser::start();
    let page = browser.page(DESKTOP.0, DESKTOP.1).await;
    login(&page, server.addr, "ann").await;
    let (mut eve, _) = TestClient::hello(server.addr, "eve").await;
    let hostile = [
        "<script>window.pwned = 1; alert(1)</script>",
        "<img src=x onerror=\"window.pwned = 2; alert(2)\">",
        "[click me](javascript:alert(3)) javascript:alert(4) <a href=\"javascript:alert(5)\">x</a>",
        "<i>a real link</i>: https://example.invalid/a?b=c&d=1. done",
        "https://example.invalid/x\"onmouseover=\"alert(7)",
    ];
    for t in hostile {
        eve.request(json!({"type":"say","room":"lobby","text":t}))
            .await;
    }
    eve.request(json!({"type":"topic","room":"lobby","topic":"<b onmouseover=alert(6)>topic</b>"}))
        .await;
    wait_message(&page, hostile[4]).await;
    // Every text appears literally, character for character.
    let texts: Vec<String> = shown(&page).await.into_iter().map(|(_, t)| t).collect();
    assert_eq!(texts, hostile);
    page.wait_for(
        "the topic as text",
        "return document.getElementById('topic').textContent === '<b onmouseover=alert(6)>topic</b>'",
        vec![],
    )
    .await;
    let report = page
        .eval(
            "const m = document.getElementById('messages');
             return {
               pwned: window.pwned === undefined ? null : window.pwned,
               scripts: m.querySelectorAll('script').length,
               imgs: m.querySelectorAll('img').length,
               bolds: document.querySelectorAll('#topic b, #messages i').length,
               links: [...document.querySelectorAll('#messages a, #topic a')].map(a =>
                 [a.getAttribute('href'), a.textContent, a.rel, a.target]),
             }",
        )
        .await;
    assert_eq!(report["pwned"], Value::Null, "{report}");
    assert_eq!(report["scripts"], 0, "{report}");
    assert_eq!(report["imgs"], 0, "{report}");
    assert_eq!(report["bolds"], 0, "{report}");
    // Only the real http link became a link, to where its text says, opened safely.
    assert_eq!(
        report["links"],
        json!([
            [
                "https://example.invalid/a?b=c&d=1",
                "https://example.invalid/a?b=c&d=1",
                "noopener noreferrer",
                "_blank"
            ],
            [
                "https://example.invalid/x",
                "https://example.invalid/x",
                "noopener noreferrer",
                "_blank"
            ]
        ]),
        "{report}"
    );
    // No dialog was opened by anything above.
    assert!(
        page.client.get_alert_text().await.is_err(),
        "a dialog is open"
    );
    page.close().await;
}

/// Serve one HTML page over HTTP on 127.0.0.1 (a hostile site on another origin), for a few
/// requests; returns its address.
async fn serve_page(html: String) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        // The page and perhaps a favicon request: a handful of requests is plenty.
        for _ in 0..8 {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let mut buf = [0u8; 4096];
            let _ = sock.read(&mut buf).await;
            let is_page = buf.starts_with(b"GET / ");
            let (status, body) = if is_page {
                ("200 OK", html.as_str())
            } else {
                ("404 Not Found", "")
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
        }
    });
    addr
}

#[tokio::test]
async fn a_page_on_another_origin_cannot_open_the_websocket() {
    let server = ServerProcess::start(&[]);
    // A script that tries the chat's WebSocket and would join as "intruder" if it opened.
    let html = format!(
        "<!doctype html><title>hostile</title><script>
         const ws = new WebSocket('ws://{addr}/ws');
         ws.onopen = () => {{ document.title = 'opened';
           ws.send(JSON.stringify({{type:'hello', nick:'intruder'}})); }};
         ws.onmessage = (e) => {{ document.title = 'message ' + e.data; }};
         ws.onclose = () => {{ if (document.title === 'hostile') document.title = 'closed'; }};
         </script>",
        addr = server.addr
    );
    let hostile = serve_page(html).await;
    let mut browser = Browser::start();
    let page = browser.page(DESKTOP.0, DESKTOP.1).await;
    page.goto(&format!("http://{hostile}/")).await;
    let title = page
        .wait_for(
            "the hostile page's WebSocket to open or close",
            "return document.title === 'hostile' ? '' : document.title",
            vec![],
        )
        .await;
    assert_eq!(title, "closed", "the cross-origin WebSocket must not open");
    // Nobody joined the server.
    let (mut watcher, _) = TestClient::hello(server.addr, "watcher").await;
    let who = watcher.request(json!({"type":"who","room":"lobby"})).await;
    assert_eq!(
        who["members"],
        json!([{"nick":"watcher","status":"online"}])
    );
    // The same browser on the chat's own origin connects, so the refusal was the origin's.
    login(&page, server.addr, "ann").await;
    page.close().await;
}

#[tokio::test]
async fn a_phone_sized_window_is_usable() {
    // A server with a password, which the page asks for once the server says it needs one.
    let server = ServerProcess::start(&["--password", "letmein"]);
    let mut cyd = TestClient::connect(server.addr).await;
    let w = cyd
        .request(json!({"type":"hello","nick":"cyd","password":"letmein"}))
        .await;
    assert_eq!(w["type"], "welcome", "{w}");
    cyd.request(json!({"type":"join","room":"rust"})).await;
    let mut browser = Browser::start();
    let page = browser.page(PHONE.0, PHONE.1).await;
    page.goto(&base(server.addr)).await;
    page.type_into("#login-nick", &format!("ann{ENTER}")).await;
    page.wait_for(
        "the password field after auth_failed",
        "return !document.getElementById('login-password-row').hidden &&
           document.getElementById('login-error').textContent !== ''",
        vec![],
    )
    .await;
    page.type_into("#login-password", &format!("letmein{ENTER}"))
        .await;
    connected(&page).await;
    cyd.request(json!({"type":"say","room":"lobby","text":"hello, small screen"}))
        .await;
    wait_message(&page, "hello, small screen").await;
    // What a phone user needs is on screen, nothing is wider than the screen, the sidebar waits
    // behind its button.
    let layout = page
        .eval(
            "const vis = (id) => { const r = document.getElementById(id).getBoundingClientRect();
               return r.width > 0 && r.height > 0 && r.left >= 0 && r.top >= 0 &&
                 r.right <= innerWidth && r.bottom <= innerHeight; };
             const side = document.getElementById('sidebar').getBoundingClientRect();
             return { w: innerWidth, h: innerHeight,
               scrollWidth: document.documentElement.scrollWidth,
               input: vis('input'), send: vis('send'), scroller: vis('scroller'),
               toggle: vis('nav-toggle'), conn: vis('conn'),
               inputWidth: document.getElementById('input').getBoundingClientRect().width,
               sidebarOnScreen: side.right > 0 && side.left < innerWidth &&
                 getComputedStyle(document.getElementById('sidebar')).visibility === 'visible' }",
        )
        .await;
    assert_eq!(
        (layout["w"].as_u64(), layout["h"].as_u64()),
        (Some(390), Some(844)),
        "{layout}"
    );
    assert!(layout["scrollWidth"].as_u64().unwrap() <= 390, "{layout}");
    for part in ["input", "send", "scroller", "toggle", "conn"] {
        assert_eq!(layout[part], true, "{part} not on screen: {layout}");
    }
    assert!(layout["inputWidth"].as_f64().unwrap() > 200.0, "{layout}");
    assert_eq!(layout["sidebarOnScreen"], false, "{layout}");
    // The sidebar opens from its button and takes the user to another room.
    page.click("#nav-toggle").await;
    page.wait_for(
        "the sidebar on screen",
        "const r = document.getElementById('sidebar').getBoundingClientRect();
         return r.left >= 0 && r.right <= innerWidth &&
           getComputedStyle(document.getElementById('sidebar')).visibility === 'visible'",
        vec![],
    )
    .await;
    page.type_into("#join-room", &format!("rust{ENTER}")).await;
    page.wait_for(
        "rust open and the sidebar closed",
        "return document.getElementById('conv-title').textContent === '# rust' &&
           !document.body.classList.contains('nav-open')",
        vec![],
    )
    .await;
    say(&page, "typed on a phone").await;
    let m = next_said(&mut cyd, "message").await;
    assert_eq!(
        (m["room"].as_str(), m["text"].as_str()),
        (Some("rust"), Some("typed on a phone"))
    );
    page.close().await;
}

/// Not a check: makes docs/screenshots/web-desktop.png and web-phone.png from a realistic
/// session, for the README. Run it by name with `--ignored` after changing the page.
#[tokio::test]
#[ignore]
async fn screenshots_for_the_readme() {
    let server = ServerProcess::start(&["--rate-per-sec", "0"]);
    let addr = server.addr;
    let (mut bob, _) = TestClient::hello(addr, "bob").await;
    let (mut cyd, _) = TestClient::hello(addr, "cyd").await;
    let (mut dee, _) = TestClient::hello(addr, "dee").await;
    for c in [&mut bob, &mut cyd, &mut dee] {
        c.request(json!({"type":"join","room":"rust"})).await;
    }
    bob.request(json!({"type":"join","room":"design"})).await;
    bob.request(json!({"type":"topic","room":"rust","topic":"Rust talk · release on Friday · https://example.invalid/roadmap"}))
        .await;
    let script = [
        (0, "anyone tried the new borrow checker yet?"),
        (1, "yes, it accepted code I had to rewrite last year"),
        (2, "/me is reading the release notes"),
        (0, "the notes are at https://example.invalid/blog/release"),
    ];
    for (who, t) in script {
        let c = [&mut bob, &mut cyd, &mut dee].into_iter().nth(who).unwrap();
        c.request(json!({"type":"say","room":"rust","text":t}))
            .await;
    }
    let mut browser = Browser::start();
    let ann = browser.page(DESKTOP.0, DESKTOP.1).await;
    login(&ann, addr, "ann").await;
    say(&ann, "/join rust").await;
    wait_message(
        &ann,
        "the notes are at https://example.invalid/blog/release",
    )
    .await;
    say(&ann, "/join design").await;
    ann.type_into("#input", &format!("{ALT}2{RELEASE}")).await;
    say(&ann, "I can walk through the changes after lunch").await;
    wait_message(&ann, "I can walk through the changes after lunch").await;
    cyd.request(json!({"type":"say","room":"rust","text":"ann: great, 14:00 in the small room?\nI'll bring the projector"}))
        .await;
    dee.request(json!({"type":"status","status":"away","text":"in a meeting"}))
        .await;
    cyd.request(json!({"type":"status","status":"busy"})).await;
    bob.request(json!({"type":"say","room":"lobby","text":"the coffee machine is fixed"}))
        .await;
    bob.request(json!({"type":"dm","to":"ann","text":"can you review my PR?"}))
        .await;
    wait_message(
        &ann,
        "ann: great, 14:00 in the small room?\nI'll bring the projector",
    )
    .await;
    wait_sidebar(&ann, "bob's DM", "bob", "!!b.querySelector('.badge')").await;
    ann.wait_for(
        "dee away",
        "return !!document.querySelector('#members li.status-away')",
        vec![],
    )
    .await;
    let dir = lanchat_tests::workspace_root().join("docs/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("web-desktop.png"), ann.screenshot().await).unwrap();

    let phone = browser.page(PHONE.0, PHONE.1).await;
    login(&phone, addr, "eve").await;
    say(&phone, "/join rust").await;
    wait_message(
        &phone,
        "ann: great, 14:00 in the small room?\nI'll bring the projector",
    )
    .await;
    say(&phone, "count me in!").await;
    wait_message(&phone, "count me in!").await;
    std::fs::write(dir.join("web-phone.png"), phone.screenshot().await).unwrap();
    ann.close().await;
    phone.close().await;
}
