// lanchat web chat: protocol v1 over a WebSocket (one JSON frame per text message), no framework.
// Everything a peer sends is rendered with textContent or as a checked http(s) link, never as HTML.
'use strict';

const STORE_NICK = 'lanchat.nick';
const STORE_ROOMS = 'lanchat.rooms';
const PAGE = 50;
const CATCH_UP_PAGE = 200;
// A LAN server is back within seconds of a restart; a refused connection costs it nothing. The
// jitter spreads a roomful of pages reconnecting at once.
const MAX_BACKOFF_MS = 8000;

const $ = (id) => document.getElementById(id);

/** Everything the page knows; the DOM is drawn from it. */
const state = {
  nick: '',
  wantedNick: '',
  preferredNick: '', // the nick the user chose (wantedNick may be nick_ after a reconnect)
  password: '', // the server password, if it has one: memory only
  retryAt: 0,
  ws: null,
  conn: 'offline', // 'connecting' | 'online' | 'offline'
  everConnected: false,
  backoffMs: 500,
  retryTimer: null,
  nextId: 1,
  pending: new Map(), // request id -> callback(reply)
  pendingOrder: [], // ids in send order, for replies without `re`
  convs: new Map(), // key -> conversation
  order: [], // conversation keys in sidebar order
  current: null,
  limits: { max_text: 4096 },
  defaultRoom: 'lobby',
  completion: null,
};

// ---------- conversations ----------

function roomKey(name) { return 'r:' + name.toLowerCase(); }
function dmKey(nick) { return 'd:' + nick.toLowerCase(); }

function conversation(key, kind, name) {
  let c = state.convs.get(key);
  if (!c) {
    c = {
      key, kind, name,
      items: [], // {kind:'msg', id, ts, from, text, mention} or {kind:'note', text, cls}
      ids: new Set(),
      unread: 0,
      mention: false,
      topic: '',
      members: new Map(), // lower nick -> {nick, status, text, op}
      joined: kind === 'dm',
      reachedStart: kind === 'dm',
      loadingOlder: false,
      historyLoaded: kind === 'dm',
      scrollTop: null,
    };
    state.convs.set(key, c);
    state.order.push(key);
    sortOrder();
  }
  return c;
}

function sortOrder() {
  const rank = (k) => (k.startsWith('r:') ? 0 : 1);
  state.order.sort((a, b) => rank(a) - rank(b));
}

function removeConversation(key) {
  state.convs.delete(key);
  state.order = state.order.filter((k) => k !== key);
  if (state.current === key) state.current = state.order[0] || null;
  renderAll();
}

function lastMessageId(c) {
  for (let i = c.items.length - 1; i >= 0; i--) if (c.items[i].kind === 'msg' && c.items[i].id) return c.items[i].id;
  return null;
}

function firstMessageId(c) {
  for (const it of c.items) if (it.kind === 'msg' && it.id) return it.id;
  return null;
}

function saveRooms() {
  const rooms = state.order.filter((k) => k.startsWith('r:') && state.convs.get(k).joined)
    .map((k) => state.convs.get(k).name);
  try { localStorage.setItem(STORE_ROOMS, JSON.stringify(rooms)); } catch (_) { /* private mode */ }
}

function isMention(text) {
  if (!state.nick) return false;
  const esc = state.nick.replace(/[.*+?^${}()|[\]\\-]/g, '\\$&');
  return new RegExp('(^|[^\\p{L}\\p{N}_])' + esc + '($|[^\\p{L}\\p{N}_])', 'iu').test(text);
}

/** Adds a message to a conversation unless its id is known; returns whether it was new. */
function addMessage(c, m, where) {
  if (m.id && c.ids.has(m.id)) return false;
  const item = {
    kind: 'msg', id: m.id, ts: m.ts, from: m.from, text: m.text,
    mention: m.from !== state.nick && (c.kind === 'dm' || isMention(m.text)),
    own: m.from === state.nick,
  };
  if (m.id) c.ids.add(m.id);
  if (where === undefined) c.items.push(item); else c.items.splice(where, 0, item);
  return true;
}

function note(c, text, cls) {
  c.items.push({ kind: 'note', text, cls: cls || '' });
  if (c.key === state.current) appendItem(c, c.items[c.items.length - 1]);
}

function noteCurrent(text, cls) {
  const c = state.convs.get(state.current);
  if (c) note(c, text, cls); else $('login-error').textContent = text;
}

/** A message that arrived live (or our own, at its ok). */
function receive(c, m) {
  const shown = c.key === state.current && !document.hidden;
  if (!addMessage(c, m)) return;
  const item = c.items[c.items.length - 1];
  if (!item.own) {
    if (!shown) {
      c.unread += 1;
      if (item.mention) c.mention = true;
    }
    if (item.mention && document.hidden) notify(c, item);
    if (c.key === state.current || item.mention) {
      announce((c.kind === 'room' && c.key !== state.current ? c.name + ': ' : '') + displayLine(item));
    }
  }
  if (c.key === state.current) appendItem(c, item);
  renderSidebar();
}

// ---------- protocol ----------

function wsUrl() {
  return (location.protocol === 'https:' ? 'wss:' : 'ws:') + '//' + location.host + '/ws';
}

function send(frame, onReply) {
  if (!state.ws || state.ws.readyState !== WebSocket.OPEN) return false;
  const id = state.nextId++;
  frame.id = id;
  if (onReply) state.pending.set(id, onReply);
  state.pendingOrder.push(id);
  state.ws.send(JSON.stringify(frame));
  return true;
}

function connect() {
  clearTimeout(state.retryTimer);
  state.retryTimer = null;
  if (state.ws) return;
  setConn('connecting');
  let ws;
  try {
    ws = new WebSocket(wsUrl());
  } catch (e) {
    scheduleReconnect();
    return;
  }
  state.ws = ws;
  state.pending.clear();
  state.pendingOrder = [];
  ws.onopen = () => hello(state.wantedNick);
  ws.onmessage = (ev) => {
    let f;
    try { f = JSON.parse(ev.data); } catch (_) { return; }
    if (f && typeof f === 'object') onFrame(f);
  };
  ws.onclose = () => {
    if (state.ws !== ws) return;
    state.ws = null;
    scheduleReconnect();
  };
}

function hello(nick) {
  const frame = { type: 'hello', nick, protocol: 1, client: 'lanchat-web/0.1' };
  if (state.password) frame.password = state.password;
  send(frame, (r) => {
    if (r.type === 'welcome') return onWelcome(r);
    if (r.type !== 'error') return;
    if (r.code === 'auth_failed') {
      // Kept in memory only, for reconnecting; asked for again after a reload.
      state.password = '';
      $('login-password-row').hidden = false;
      $('login-password').value = '';
      state.everConnected = false;
    }
    if (state.everConnected && (r.code === 'nick_taken')) {
      // Our old session may not have timed out yet: come back under a nearby nick.
      state.wantedNick = (nick + '_').slice(0, 32);
      return hello(state.wantedNick);
    }
    state.retryTimer = null;
    const ws = state.ws;
    state.ws = null;
    if (ws) { ws.onclose = null; ws.close(); }
    setConn('offline');
    showLogin(r.message || r.code);
    if (r.code === 'auth_failed') $('login-password').focus();
  });
}

function onFrame(f) {
  if (f.re !== undefined && f.re !== null) {
    const cb = state.pending.get(f.re);
    state.pending.delete(f.re);
    state.pendingOrder = state.pendingOrder.filter((id) => id !== f.re);
    if (cb) cb(f);
    else if (f.type === 'error') noteCurrent(errorText(f), 'error');
    return;
  }
  switch (f.type) {
    case 'ok': case 'welcome': case 'error': {
      if (f.type === 'error' && (f.code === 'server_full' || f.code === 'too_many_errors')) {
        noteCurrent(errorText(f), 'error');
        return;
      }
      const id = state.pendingOrder.shift();
      const cb = state.pending.get(id);
      state.pending.delete(id);
      if (cb) cb(f); else if (f.type === 'error') noteCurrent(errorText(f), 'error');
      return;
    }
    case 'ping': state.ws && state.ws.send('{"type":"pong"}'); return;
    case 'message': return receive(conversation(roomKey(f.room), 'room', f.room), f);
    case 'direct': {
      const peer = f.from === state.nick ? f.to : f.from;
      return receive(conversation(dmKey(peer), 'dm', peer), f);
    }
    case 'join': return onJoin(f);
    case 'leave': return onLeave(f);
    case 'quit': return onQuit(f);
    case 'nick': return onNick(f.old, f.new);
    case 'presence': return onPresence(f);
    case 'topic': return onTopic(f);
    case 'invite': return noteCurrent(f.by + ' invited you to ' + f.room + ' (/join ' + f.room + ')');
    case 'bye':
      if (f.reason !== 'quit') noteCurrent('Server: ' + (f.message || f.reason), 'error');
      return;
    default: return; // an event of a newer server
  }
}

function errorText(e) {
  if (e.code === 'rate_limited') return 'Not sent: you are going too fast (' + (e.message || '') + ')';
  return e.message || e.code || 'error';
}

function onWelcome(w) {
  const wasConnected = state.everConnected;
  state.everConnected = true;
  state.nick = w.nick;
  state.backoffMs = 500;
  state.limits = w.limits || state.limits;
  // A nick taken in a hurry on reconnecting (nick_) is not the one to remember.
  if (!state.preferredNick || w.nick.toLowerCase() === state.preferredNick.toLowerCase()) {
    try { localStorage.setItem(STORE_NICK, w.nick); } catch (_) { /* private mode */ }
  }
  setConn('online');
  showApp();
  $('me-nick').textContent = w.nick;
  $('me-status').value = 'online';
  const rooms = w.rooms || [];
  if (rooms.length) state.defaultRoom = rooms[0];
  const toJoin = [];
  for (const k of state.order) {
    const c = state.convs.get(k);
    if (c.kind === 'room' && c.joined && !rooms.some((r) => r.toLowerCase() === c.name.toLowerCase())) toJoin.push(c.name);
  }
  if (!wasConnected) {
    let saved = [];
    try { saved = JSON.parse(localStorage.getItem(STORE_ROOMS) || '[]'); } catch (_) { saved = []; }
    for (const r of saved) if (typeof r === 'string' && !rooms.includes(r) && !toJoin.includes(r)) toJoin.push(r);
  }
  for (const r of rooms) {
    const c = conversation(roomKey(r), 'room', r);
    c.joined = true;
    enterRoom(c, wasConnected);
    send({ type: 'who', room: r }, (rep) => { if (rep.type === 'ok') setMembers(c, rep.members); });
    send({ type: 'topic', room: r }, (rep) => { if (rep.type === 'ok') { c.topic = rep.topic || ''; renderHeader(); } });
  }
  for (const r of toJoin) joinRoom(r, false, wasConnected);
  if (!state.current || !state.convs.has(state.current)) state.current = roomKey(rooms[0] || state.defaultRoom);
  saveRooms();
  renderAll();
  if (!wasConnected) $('input').focus();
}

/** After joining (again): load the newest page, or catch up from the last message we saw. */
function enterRoom(c, reconnect) {
  const last = lastMessageId(c);
  if (!last) {
    loadNewest(c);
    return;
  }
  const marker = c.items.length;
  let missed = 0;
  const page = (after) => send({ type: 'history', room: c.name, after, limit: CATCH_UP_PAGE }, (r) => {
    if (r.type !== 'ok') return;
    const msgs = r.messages || [];
    let pos = marker + missed;
    for (const m of msgs) {
      if (c.ids.has(m.id)) {
        const i = c.items.findIndex((it) => it.id === m.id);
        if (i >= 0) pos = i + 1;
        continue;
      }
      addMessage(c, m, pos);
      pos += 1;
      missed += 1;
      if (c.key !== state.current) c.unread += 1;
      if (c.items[pos - 1].mention && c.key !== state.current) c.mention = true;
    }
    if (msgs.length === CATCH_UP_PAGE) return page(msgs[msgs.length - 1].id);
    if (reconnect) {
      c.items.push({ kind: 'note', cls: 'reconnected', text: missed === 0
        ? 'Reconnected: you missed nothing.'
        : 'Reconnected: ' + missed + (missed === 1 ? ' message' : ' messages') + ' while you were away.' });
    }
    if (c.key === state.current) renderMessages(true);
    renderSidebar();
  });
  page(last);
}

function loadNewest(c) {
  c.loadingOlder = true;
  send({ type: 'history', room: c.name, limit: PAGE }, (r) => {
    c.loadingOlder = false;
    if (r.type !== 'ok') return;
    const msgs = r.messages || [];
    // Live messages may have arrived first: history goes before them.
    let pos = 0;
    for (const m of msgs) {
      if (c.ids.has(m.id)) { const i = c.items.findIndex((it) => it.id === m.id); if (i >= 0) pos = i + 1; continue; }
      addMessage(c, m, pos);
      pos += 1;
    }
    c.historyLoaded = true;
    if (msgs.length < PAGE) c.reachedStart = true;
    if (c.key === state.current) { renderMessages(true); fillScreen(c); }
  });
}

function loadOlder(c) {
  if (c.loadingOlder || c.reachedStart || !c.historyLoaded || state.conn !== 'online') return;
  const before = firstMessageId(c);
  if (!before) { c.reachedStart = true; renderHistoryState(c); return; }
  c.loadingOlder = true;
  renderHistoryState(c);
  send({ type: 'history', room: c.name, before, limit: PAGE }, (r) => {
    c.loadingOlder = false;
    if (r.type !== 'ok') { renderHistoryState(c); return; }
    const msgs = r.messages || [];
    let pos = 0;
    for (const m of msgs) if (addMessage(c, m, pos)) pos += 1;
    if (msgs.length < PAGE) c.reachedStart = true;
    if (c.key !== state.current) return;
    const sc = $('scroller');
    const fromBottom = sc.scrollHeight - sc.scrollTop;
    renderMessages(false);
    sc.scrollTop = sc.scrollHeight - fromBottom;
    fillScreen(c);
  });
}

/** Keeps loading older pages while the list does not fill the screen (nothing to scroll yet). */
function fillScreen(c) {
  const sc = $('scroller');
  if (!c.reachedStart && sc.scrollHeight <= sc.clientHeight + 40) loadOlder(c);
}

function joinRoom(name, focus, reconnect) {
  name = name.replace(/^#/, '');
  const parts = name.split(/\s+/);
  const frame = { type: 'join', room: parts[0] };
  if (parts[1]) frame.key = parts[1];
  send(frame, (r) => {
    if (r.type !== 'ok') {
      if (focus) noteCurrent('Cannot join ' + parts[0] + ': ' + errorText(r), 'error');
      const stale = state.convs.get(roomKey(parts[0]));
      if (stale && !focus) { stale.joined = false; note(stale, 'You are no longer in this room: ' + errorText(r), 'error'); saveRooms(); }
      return;
    }
    const c = conversation(roomKey(r.room), 'room', r.room);
    c.name = r.room;
    c.joined = true;
    c.topic = r.topic || '';
    setMembers(c, r.members);
    enterRoom(c, reconnect);
    if (focus) switchTo(c.key);
    saveRooms();
    renderAll();
  });
}

function setMembers(c, members) {
  c.members = new Map();
  for (const m of members || []) c.members.set(m.nick.toLowerCase(), { nick: m.nick, status: m.status, text: m.text || '', op: !!m.op });
  if (c.key === state.current) renderMembers();
}

function onJoin(f) {
  const c = conversation(roomKey(f.room), 'room', f.room);
  c.members.set(f.nick.toLowerCase(), { nick: f.nick, status: 'online', text: '', op: false });
  note(c, f.nick + ' joined', 'event');
  if (c.key === state.current) renderMembers();
}

function onLeave(f) {
  const c = state.convs.get(roomKey(f.room));
  if (!c) return;
  if (f.nick.toLowerCase() === state.nick.toLowerCase()) {
    c.joined = false;
    note(c, 'You were removed from ' + f.room + (f.kicked_by ? ' by ' + f.kicked_by : '') + (f.reason ? ': ' + f.reason : ''), 'error');
    saveRooms();
  } else {
    c.members.delete(f.nick.toLowerCase());
    note(c, f.nick + ' left' + (f.kicked_by ? ' (removed by ' + f.kicked_by + ')' : ''), 'event');
  }
  if (c.key === state.current) renderMembers();
}

function onQuit(f) {
  for (const c of state.convs.values()) {
    if (c.kind === 'room' && c.members.delete(f.nick.toLowerCase())) note(c, f.nick + ' quit (' + f.reason + ')', 'event');
  }
  renderMembers();
}

function onNick(oldNick, newNick) {
  const lo = oldNick.toLowerCase();
  for (const c of state.convs.values()) {
    const m = c.members.get(lo);
    if (m) {
      c.members.delete(lo);
      m.nick = newNick;
      c.members.set(newNick.toLowerCase(), m);
      note(c, oldNick + ' is now known as ' + newNick, 'event');
    }
  }
  const dm = state.convs.get(dmKey(oldNick));
  if (dm && !state.convs.has(dmKey(newNick))) {
    state.convs.delete(dm.key);
    dm.key = dmKey(newNick);
    dm.name = newNick;
    state.convs.set(dm.key, dm);
    state.order = state.order.map((k) => (k === dmKey(oldNick) ? dm.key : k));
    if (state.current === dmKey(oldNick)) state.current = dm.key;
    note(dm, oldNick + ' is now known as ' + newNick, 'event');
  }
  renderAll();
}

function onPresence(f) {
  for (const c of state.convs.values()) {
    const m = c.members.get(f.nick.toLowerCase());
    if (m) { m.status = f.status; m.text = f.text || ''; }
  }
  renderMembers();
}

function onTopic(f) {
  const c = conversation(roomKey(f.room), 'room', f.room);
  c.topic = f.topic;
  note(c, f.topic ? f.by + ' set the topic: ' + f.topic : f.by + ' cleared the topic', 'event');
  renderHeader();
}

// ---------- sending ----------

function say(text) {
  const c = state.convs.get(state.current);
  if (!c) return;
  if (state.conn !== 'online') { noteCurrent('Not connected: your message was not sent.', 'error'); return false; }
  if (new TextEncoder().encode(text).length > state.limits.max_text) {
    noteCurrent('Too long: at most ' + state.limits.max_text + ' bytes.', 'error');
    return false;
  }
  if (c.kind === 'room') {
    send({ type: 'say', room: c.name, text }, (r) => {
      if (r.type === 'ok') receive(c, { id: r.id, ts: r.ts, from: state.nick, text });
      else note(c, 'Not sent: ' + errorText(r), 'error');
    });
  } else {
    dm(c.name, text);
  }
  return true;
}

function dm(to, text) {
  send({ type: 'dm', to, text }, (r) => {
    if (r.type !== 'ok') { noteCurrent('Message to ' + to + ' not sent: ' + errorText(r), 'error'); return; }
    const c = conversation(dmKey(r.to), 'dm', r.to);
    if (r.to.toLowerCase() !== state.nick.toLowerCase()) receive(c, { id: r.id, ts: r.ts, from: state.nick, text });
    if (r.away) note(c, r.to + ' is away' + (r.away_text ? ': ' + r.away_text : ''), 'event');
    renderSidebar();
  });
}

function setStatus(status, text) {
  const frame = { type: 'status', status };
  if (text) frame.text = text;
  send(frame, (r) => {
    if (r.type !== 'ok') { noteCurrent(errorText(r), 'error'); return; }
    $('me-status').value = r.status;
    const me = { status: r.status, text: r.text || '' };
    for (const c of state.convs.values()) {
      const m = c.members.get(state.nick.toLowerCase());
      if (m) Object.assign(m, me);
    }
    noteCurrent('You are ' + r.status + (r.text ? ': ' + r.text : ''), 'event');
    renderMembers();
  });
}

function changeNick(n) {
  send({ type: 'nick', nick: n }, (r) => {
    if (r.type !== 'ok') { noteCurrent('Cannot change nick: ' + errorText(r), 'error'); return; }
    const old = state.nick;
    state.nick = r.nick;
    state.wantedNick = r.nick;
    state.preferredNick = r.nick;
    try { localStorage.setItem(STORE_NICK, r.nick); } catch (_) { /* private mode */ }
    $('me-nick').textContent = r.nick;
    onNick(old, r.nick);
  });
}

const HELP = [
  '/join ROOM [KEY] — enter a room', '/part [ROOM] — leave a room', '/msg NICK TEXT — direct message',
  '/me ACTION — an action', '/nick NEW — change your nick', '/topic [TEXT] — show or set the topic',
  '/away [TEXT], /busy [TEXT], /back — your status', '/quit — disconnect',
];

/** A line from the input box: a slash command or a message. Returns whether to clear the box. */
function submit(line) {
  if (!line.trim()) return false;
  if (!line.startsWith('/') || line.startsWith('//')) return say(line.startsWith('//') ? line.slice(1) : line) !== false;
  const m = /^\/(\S+)\s*([\s\S]*)$/.exec(line);
  const cmd = m[1].toLowerCase();
  const arg = m[2].trim();
  const c = state.convs.get(state.current);
  switch (cmd) {
    case 'me': if (!arg) break; return say('/me ' + arg) !== false;
    case 'join': case 'j': if (!arg) break; joinRoom(arg, true, false); return true;
    case 'part': case 'leave': {
      const room = arg || (c && c.kind === 'room' ? c.name : '');
      if (!room) break;
      send({ type: 'leave', room }, (r) => {
        if (r.type !== 'ok') { noteCurrent(errorText(r), 'error'); return; }
        removeConversation(roomKey(r.room));
        saveRooms();
      });
      return true;
    }
    case 'msg': case 'query': {
      const mm = /^(\S+)\s*([\s\S]*)$/.exec(arg);
      if (!mm) break;
      const conv = conversation(dmKey(mm[1]), 'dm', mm[1]);
      switchTo(conv.key);
      if (mm[2]) dm(mm[1], mm[2]);
      return true;
    }
    case 'nick': if (!arg) break; changeNick(arg); return true;
    case 'topic': {
      if (!c || c.kind !== 'room') break;
      if (!arg) { noteCurrent(c.topic ? 'Topic: ' + c.topic : 'No topic set.', 'event'); return true; }
      send({ type: 'topic', room: c.name, topic: arg === '-' ? '' : arg }, (r) => {
        if (r.type !== 'ok') { noteCurrent(errorText(r), 'error'); return; }
        c.topic = r.topic;
        note(c, r.topic ? 'You set the topic: ' + r.topic : 'You cleared the topic', 'event');
        renderHeader();
      });
      return true;
    }
    case 'away': setStatus('away', arg); return true;
    case 'busy': case 'dnd': setStatus('busy', arg); return true;
    case 'back': setStatus('online', ''); return true;
    case 'quit':
      send({ type: 'quit', reason: arg || undefined });
      state.everConnected = false;
      state.quitting = true;
      return true;
    case 'help': HELP.forEach((h) => noteCurrent(h, 'event')); return true;
    default:
      noteCurrent('Unknown command /' + cmd + ' (type // to send a line starting with /; /help lists commands)', 'error');
      return false;
  }
  noteCurrent('Usage: ' + (HELP.find((h) => h.startsWith('/' + cmd)) || '/help'), 'error');
  return false;
}

// ---------- connection state ----------

function setConn(s, detail) {
  state.conn = s;
  const el = $('conn');
  el.className = 'conn conn-' + s;
  el.textContent = s === 'online' ? 'Connected' : s === 'connecting' ? 'Connecting…' : (detail || 'Disconnected');
  $('retry').hidden = s !== 'offline' || !state.everConnected;
  $('input').placeholder = s === 'online' ? 'Message' : 'Offline: reconnecting…';
}

function scheduleReconnect() {
  if (!state.everConnected) {
    setConn('offline');
    showLogin(state.quitting ? 'You left the chat.' : 'Could not reach the server. Try again.');
    state.quitting = false;
    return;
  }
  const delay = Math.round(state.backoffMs * (0.75 + Math.random() / 4));
  state.backoffMs = Math.min(state.backoffMs * 2, MAX_BACKOFF_MS);
  state.retryAt = Date.now() + delay;
  showCountdown();
  for (const c of state.convs.values()) if (c.kind === 'room') c.members.clear();
  renderMembers();
  state.retryTimer = setTimeout(connect, delay);
}

/** The offline state with the seconds left before the next attempt (updated every second). */
function showCountdown() {
  const left = Math.max(1, Math.ceil((state.retryAt - Date.now()) / 1000));
  setConn('offline', 'Disconnected: retrying in ' + left + ' s');
}

// ---------- rendering ----------

function showLogin(error) {
  $('app').hidden = true;
  $('login').hidden = false;
  $('login-error').textContent = error || '';
  $('login-nick').value = state.wantedNick || $('login-nick').value;
  $('login-nick').focus();
}

function showApp() {
  $('login').hidden = true;
  $('app').hidden = false;
}

function renderAll() {
  renderSidebar();
  renderHeader();
  renderMembers();
  renderMessages(true);
}

function renderSidebar() {
  const rooms = $('rooms');
  const dms = $('dms');
  rooms.textContent = '';
  dms.textContent = '';
  state.order.forEach((k, i) => {
    const c = state.convs.get(k);
    const li = document.createElement('li');
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'conv' + (k === state.current ? ' current' : '') + (c.unread ? ' has-unread' : '') + (c.joined ? '' : ' parted');
    b.dataset.key = k;
    if (k === state.current) b.setAttribute('aria-current', 'page');
    const name = document.createElement('span');
    name.className = 'conv-name';
    name.textContent = (c.kind === 'room' ? '# ' : '@ ') + c.name;
    b.appendChild(name);
    if (c.mention) {
      const at = document.createElement('span');
      at.className = 'mention-mark';
      at.textContent = '@';
      at.title = 'You were mentioned';
      b.appendChild(at);
    }
    if (c.unread) {
      const n = document.createElement('span');
      n.className = 'badge';
      n.textContent = c.unread > 99 ? '99+' : String(c.unread);
      b.appendChild(n);
    }
    let label = (c.kind === 'room' ? 'Room ' : 'Direct messages with ') + c.name;
    if (c.unread) label += ', ' + c.unread + ' unread';
    if (c.mention) label += ', mentioned';
    if (i < 9) { label += ' (Alt+' + (i + 1) + ')'; b.title = 'Alt+' + (i + 1); }
    b.setAttribute('aria-label', label);
    li.appendChild(b);
    (c.kind === 'room' ? rooms : dms).appendChild(li);
  });
  const total = [...state.convs.values()].reduce((n, c) => n + c.unread, 0);
  document.title = (total ? '(' + total + ') ' : '') + (state.current ? state.convs.get(state.current)?.name + ' · ' : '') + 'lanchat';
}

function renderHeader() {
  const c = state.convs.get(state.current);
  $('conv-title').textContent = c ? (c.kind === 'room' ? '# ' + c.name : '@ ' + c.name) : '';
  const t = $('topic');
  t.textContent = '';
  if (c && c.kind === 'room' && c.topic) appendLinkified(t, c.topic);
  else if (c && c.kind === 'dm') t.textContent = 'Direct messages are not kept by the server.';
}

function renderMembers() {
  const ul = $('members');
  ul.textContent = '';
  const c = state.convs.get(state.current);
  if (!c) return;
  let list;
  if (c.kind === 'dm') {
    list = [{ nick: c.name, status: findStatus(c.name), text: '' }];
  } else {
    list = [...c.members.values()].sort((a, b) => a.nick.toLowerCase().localeCompare(b.nick.toLowerCase()));
  }
  $('members-heading').textContent = c.kind === 'dm' ? 'Conversation with' : 'Members (' + list.length + ')';
  for (const m of list) {
    const li = document.createElement('li');
    li.className = 'member status-' + (['online', 'away', 'busy'].includes(m.status) ? m.status : 'other');
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'member-btn';
    b.dataset.nick = m.nick;
    b.title = m.nick === state.nick ? 'You' : 'Send ' + m.nick + ' a direct message';
    const dot = document.createElement('span');
    dot.className = 'dot';
    dot.setAttribute('aria-hidden', 'true');
    const name = document.createElement('span');
    name.className = 'member-nick';
    name.textContent = m.nick + (m.op ? ' (op)' : '') + (m.nick === state.nick ? ' (you)' : '');
    const st = document.createElement('span');
    st.className = 'member-status';
    st.textContent = m.status === 'online' ? '' : m.status + (m.text ? ': ' + m.text : '');
    if (m.status === 'online' && m.text) st.textContent = m.text;
    b.append(dot, name, st);
    li.appendChild(b);
    ul.appendChild(li);
  }
}

function findStatus(nick) {
  for (const c of state.convs.values()) {
    const m = c.members.get(nick.toLowerCase());
    if (m) return m.status;
  }
  return 'unknown';
}

function renderHistoryState(c) {
  const el = $('history-state');
  if (!c || c.kind === 'dm') { el.textContent = ''; return; }
  el.textContent = c.reachedStart ? 'This is the start of ' + c.name + '’s history.'
    : c.loadingOlder ? 'Loading older messages…' : 'Scroll up for older messages';
  el.className = 'history-state' + (c.reachedStart ? ' history-start' : '');
}

function renderMessages(stickToBottom) {
  const ol = $('messages');
  const c = state.convs.get(state.current);
  ol.textContent = '';
  if (!c) return;
  const frag = document.createDocumentFragment();
  let prev = null;
  for (const it of c.items) {
    frag.appendChild(itemNode(it, prev));
    if (it.kind === 'msg') prev = it;
  }
  ol.appendChild(frag);
  renderHistoryState(c);
  if (stickToBottom) scrollToBottom();
}

function appendItem(c, it) {
  const ol = $('messages');
  const sc = $('scroller');
  const atBottom = sc.scrollHeight - sc.scrollTop - sc.clientHeight < 80;
  let prev = null;
  for (let i = c.items.length - 2; i >= 0; i--) if (c.items[i].kind === 'msg') { prev = c.items[i]; break; }
  ol.appendChild(itemNode(it, prev));
  if (atBottom || it.own) scrollToBottom();
}

function scrollToBottom() {
  const sc = $('scroller');
  sc.scrollTop = sc.scrollHeight;
}

function sameDay(a, b) {
  const x = new Date(a); const y = new Date(b);
  return x.getFullYear() === y.getFullYear() && x.getMonth() === y.getMonth() && x.getDate() === y.getDate();
}

function stamp(ts) {
  const d = new Date(ts);
  const time = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  if (sameDay(ts, Date.now())) return time;
  const opts = { day: 'numeric', month: 'short' };
  if (d.getFullYear() !== new Date().getFullYear()) opts.year = 'numeric';
  return d.toLocaleDateString([], opts) + ' ' + time;
}

function displayLine(it) {
  return it.text.startsWith('/me ') ? '* ' + it.from + ' ' + it.text.slice(4) : it.from + ': ' + it.text;
}

function itemNode(it, prev) {
  const li = document.createElement('li');
  if (it.kind === 'note') {
    li.className = 'note ' + it.cls;
    li.textContent = it.text;
    return li;
  }
  const action = it.text.startsWith('/me ');
  li.className = 'msg' + (it.mention ? ' mention' : '') + (it.own ? ' own' : '') + (action ? ' action' : '');
  if (it.id) li.dataset.id = it.id;
  if (prev && it.ts && prev.ts && !sameDay(prev.ts, it.ts)) {
    li.classList.add('new-day');
  }
  const time = document.createElement('time');
  time.className = 'ts';
  if (it.ts) {
    const d = new Date(it.ts);
    time.dateTime = d.toISOString();
    time.textContent = stamp(it.ts);
    time.title = d.toLocaleString();
  }
  const from = document.createElement('span');
  from.className = 'from';
  from.textContent = action ? '* ' + it.from : it.from;
  const body = document.createElement('span');
  body.className = 'text';
  appendLinkified(body, action ? it.text.slice(4) : it.text);
  li.append(time, from, body);
  return li;
}

const URL_RE = /\bhttps?:\/\/[^\s<>"'`]+/gi;

/** Appends `text` to `parent` as text nodes, with http(s) URLs as safe links. */
function appendLinkified(parent, text) {
  let last = 0;
  for (const m of text.matchAll(URL_RE)) {
    let raw = m[0];
    const trail = /[.,;:!?)\]}]+$/.exec(raw);
    if (trail && !(trail[0].startsWith(')') && raw.includes('('))) raw = raw.slice(0, raw.length - trail[0].length);
    let url = null;
    try { url = new URL(raw); } catch (_) { url = null; }
    if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) continue;
    if (m.index > last) parent.appendChild(document.createTextNode(text.slice(last, m.index)));
    const a = document.createElement('a');
    a.href = url.href;
    a.textContent = raw;
    a.target = '_blank';
    a.rel = 'noopener noreferrer';
    parent.appendChild(a);
    last = m.index + raw.length;
  }
  if (last < text.length) parent.appendChild(document.createTextNode(text.slice(last)));
}

function announce(text) {
  const el = $('announcer');
  const p = document.createElement('p');
  p.textContent = text;
  el.appendChild(p);
  while (el.childNodes.length > 5) el.removeChild(el.firstChild);
}

function notify(c, it) {
  if (!('Notification' in window) || Notification.permission !== 'granted') return;
  try {
    const n = new Notification(c.kind === 'dm' ? it.from : it.from + ' in ' + c.name, { body: it.text.slice(0, 200), tag: c.key });
    n.onclick = () => { window.focus(); switchTo(c.key); n.close(); };
  } catch (_) { /* some browsers only notify from a service worker */ }
}

function switchTo(key) {
  if (!state.convs.has(key)) return;
  const old = state.convs.get(state.current);
  if (old) old.scrollTop = $('scroller').scrollTop;
  state.current = key;
  const c = state.convs.get(key);
  c.unread = 0;
  c.mention = false;
  state.completion = null;
  document.body.classList.remove('nav-open');
  $('nav-toggle').setAttribute('aria-expanded', 'false');
  renderAll();
  if (c.kind === 'room' && !c.historyLoaded && !c.loadingOlder && state.conn === 'online') loadNewest(c);
  else fillScreen(c);
}

// ---------- input ----------

function completeNick(input) {
  const c = state.convs.get(state.current);
  if (!c) return false;
  const pos = input.selectionStart;
  const v = input.value;
  let comp = state.completion;
  if (!comp || comp.value !== v || comp.pos !== pos) {
    const start = v.slice(0, pos).search(/[^\s]*$/);
    const word = v.slice(start, pos);
    if (!word) return false;
    const nicks = c.kind === 'room' ? [...c.members.values()].map((m) => m.nick) : [c.name];
    const found = nicks.filter((n) => n.toLowerCase().startsWith(word.toLowerCase()) && n !== state.nick)
      .sort((a, b) => a.toLowerCase().localeCompare(b.toLowerCase()));
    if (!found.length) return false;
    comp = { start, found, i: -1, tail: v.slice(pos) };
  }
  comp.i = (comp.i + 1) % comp.found.length;
  const suffix = comp.start === 0 ? ': ' : ' ';
  const text = comp.found[comp.i] + suffix;
  input.value = v.slice(0, comp.start) + text + comp.tail;
  const caret = comp.start + text.length;
  input.setSelectionRange(caret, caret);
  comp.value = input.value;
  comp.pos = caret;
  state.completion = comp;
  return true;
}

function autoGrow(input) {
  const lines = input.value.split('\n').length;
  input.rows = Math.min(Math.max(lines, 1), 8);
}

function init() {
  let saved = '';
  try { saved = localStorage.getItem(STORE_NICK) || ''; } catch (_) { saved = ''; }
  $('login-nick').value = saved;
  $('login-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const nick = $('login-nick').value.trim();
    if (!nick) return;
    state.wantedNick = nick;
    state.preferredNick = nick;
    state.password = $('login-password').value;
    $('login-error').textContent = '';
    if ('Notification' in window && Notification.permission === 'default') {
      try { Notification.requestPermission().catch(() => {}); } catch (_) { /* old API */ }
    }
    connect();
  });

  const input = $('input');
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      $('composer').requestSubmit();
    } else if (e.key === 'Tab' && !e.shiftKey && !e.altKey && !e.ctrlKey && !e.metaKey) {
      if (completeNick(input)) e.preventDefault();
    } else if (e.key !== 'Shift') {
      state.completion = null;
    }
  });
  input.addEventListener('input', () => autoGrow(input));
  $('composer').addEventListener('submit', (e) => {
    e.preventDefault();
    if (submit(input.value)) { input.value = ''; autoGrow(input); }
    input.focus();
  });

  document.addEventListener('keydown', (e) => {
    if (e.altKey && !e.ctrlKey && !e.metaKey && /^Digit[1-9]$/.test(e.code)) {
      const key = state.order[Number(e.code.slice(5)) - 1];
      if (key) { e.preventDefault(); switchTo(key); input.focus(); }
    } else if (e.key === 'Escape' && document.body.classList.contains('nav-open')) {
      document.body.classList.remove('nav-open');
      $('nav-toggle').setAttribute('aria-expanded', 'false');
    }
  });

  const clickConv = (e) => {
    const b = e.target.closest('button.conv');
    if (b) { switchTo(b.dataset.key); input.focus(); }
  };
  $('rooms').addEventListener('click', clickConv);
  $('dms').addEventListener('click', clickConv);
  $('members').addEventListener('click', (e) => {
    const b = e.target.closest('button.member-btn');
    if (!b || b.dataset.nick === state.nick) return;
    const c = conversation(dmKey(b.dataset.nick), 'dm', b.dataset.nick);
    document.body.classList.remove('members-open');
    switchTo(c.key);
    input.focus();
  });
  $('join-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const v = $('join-room').value.trim();
    if (!v) return;
    joinRoom(v, true, false);
    $('join-room').value = '';
  });
  $('me-nick').addEventListener('click', () => {
    input.value = '/nick ';
    input.focus();
  });
  $('retry').addEventListener('click', () => { state.backoffMs = 500; connect(); });
  $('me-status').addEventListener('change', (e) => setStatus(e.target.value, ''));
  $('nav-toggle').addEventListener('click', () => {
    const open = document.body.classList.toggle('nav-open');
    $('nav-toggle').setAttribute('aria-expanded', String(open));
    if (open) { const cur = document.querySelector('#sidebar button.conv.current'); if (cur) cur.focus(); }
  });
  $('members-toggle').addEventListener('click', () => {
    const open = document.body.classList.toggle('members-open');
    $('members-toggle').setAttribute('aria-expanded', String(open));
  });
  $('scroller').addEventListener('scroll', () => {
    const c = state.convs.get(state.current);
    if (c && $('scroller').scrollTop < 60) loadOlder(c);
  }, { passive: true });
  document.addEventListener('visibilitychange', () => {
    const c = state.convs.get(state.current);
    if (!document.hidden && c && (c.unread || c.mention)) { c.unread = 0; c.mention = false; renderSidebar(); }
    if (!document.hidden && state.conn === 'offline' && state.everConnected) connect();
  });
  setInterval(() => { if (state.conn === 'offline' && state.retryTimer) showCountdown(); }, 1000);
  window.addEventListener('online', () => { if (state.conn === 'offline' && state.everConnected) connect(); });

  if (saved) { state.wantedNick = saved; state.preferredNick = saved; connect(); } else { $('login-nick').focus(); }
}

// Anything the Content-Security-Policy blocks is a bug in this page: say so where a developer
// (and the browser tests) will see it. This script runs in <head>, before the body is parsed, so
// that a blocked attribute in the markup is caught too.
document.addEventListener('securitypolicyviolation', (e) => {
  const root = document.documentElement;
  root.dataset.cspViolations = String(Number(root.dataset.cspViolations || 0) + 1);
  console.error('blocked by the Content-Security-Policy:', e.violatedDirective, e.blockedURI);
});
document.addEventListener('DOMContentLoaded', init);
