"""Turning server frames into one line of readable text each (pure functions)."""

import datetime
import time
import unicodedata
from typing import Any, Iterable, List, Mapping, Optional

__all__ = ["format_event", "format_reply", "format_time"]


def _one_line(text: Any) -> str:
    """Keep a text on one line: LF is shown as ``\\n``, other controls but TAB as ``\\xNN``."""
    out: List[str] = []
    for char in str(text):
        if char == "\n":
            out.append("\\n")
        elif char != "\t" and unicodedata.category(char) == "Cc":
            out.append(f"\\x{ord(char):02x}")
        else:
            out.append(char)
    return "".join(out)


def format_time(ts: Any) -> str:
    """Milliseconds since the epoch -> local ``HH:MM:SS`` (empty if not a number)."""
    if not isinstance(ts, int):
        return ""
    return datetime.datetime.fromtimestamp(ts / 1000).strftime("%H:%M:%S")


def _member(member: Mapping[str, Any]) -> str:
    nick = ("@" if member.get("op") is True else "") + str(member.get("nick", "?"))
    status = member.get("status", "online")
    if member.get("text"):
        return f"{nick} ({status}: {_one_line(member['text'])})"
    return nick if status == "online" else f"{nick} ({status})"


def _members(members: Iterable[Mapping[str, Any]]) -> str:
    return ", ".join(_member(m) for m in members) or "(nobody)"


def _modes(frame: Mapping[str, Any]) -> str:
    """A room's modes in words: what makes it private (or "public"), and a locked topic."""
    words = [w for w, on in (("invite-only", frame.get("invite_only")),
                             ("key", frame.get("has_key"))) if on is True] or ["public"]
    if frame.get("topic_lock") is True:
        words.append("topic locked")
    return ", ".join(words)


def format_event(event: Mapping[str, Any], now_ms: Optional[int] = None) -> str:
    """One readable line for an event (or any frame: unknown ones are shown as key=value).

    Messages carry their server time (``ts``); the room events that have none (``join``,
    ``leave``, ``quit``, ``nick``, ``presence``, ``topic``) are stamped with ``now_ms``
    (milliseconds since the epoch; default: the time of the call), in the same
    ``HH:MM:SS`` form.  A message whose text starts with ``/me `` is an action, shown as
    ``* nick waves`` (the Rust client sends ``/me`` that way and shows it so).
    """
    e = {key: _one_line(value) if isinstance(value, str) else value
         for key, value in event.items()}
    kind = e.get("type")
    if kind == "message":
        text = e["text"]
        if isinstance(text, str) and text.startswith("/me "):
            return f"{format_time(e.get('ts'))} [{e['room']}] * {e['from']} {text[4:]}"
        return f"{format_time(e.get('ts'))} [{e['room']}] <{e['from']}> {text}"
    if kind == "direct":
        return f"{format_time(e.get('ts'))} *{e['from']} -> {e['to']}* {e['text']}"
    now = format_time(int(time.time() * 1000) if now_ms is None else now_ms)
    if kind == "join":
        return f"{now} [{e['room']}] * {e['nick']} joined"
    if kind == "leave" and e.get("kicked_by"):
        reason = f" ({e['reason']})" if e.get("reason") else ""
        return f"{now} [{e['room']}] * {e['nick']} was kicked by {e['kicked_by']}{reason}"
    if kind == "leave":
        return f"{now} [{e['room']}] * {e['nick']} left"
    if kind == "mode":
        return f"{now} [{e['room']}] * {e['by']} set the modes: {_modes(e)}"
    if kind == "invite":
        return f"{now} [{e['room']}] * {e['by']} invited you (join it with /join {e['room']})"
    if kind == "quit":
        return f"{now} * {e['nick']} quit ({e.get('reason', '')})"
    if kind == "nick":
        return f"{now} * {e['old']} is now known as {e['new']}"
    if kind == "presence":
        text = f": {e['text']}" if e.get("text") else ""
        return f"{now} * {e['nick']} is {e['status']}{text}"
    if kind == "topic":
        if e.get("topic"):
            return f"{now} [{e['room']}] * {e['by']} set the topic: {e['topic']}"
        return f"{now} [{e['room']}] * {e['by']} cleared the topic"
    if kind == "error":
        return f"! error {e.get('code')}: {e.get('message', '')}"
    if kind == "bye":
        return f"! disconnected ({e.get('reason')}): {e.get('message', '')}"
    fields = " ".join(f"{k}={v}" for k, v in e.items() if k != "type")
    return f"* {kind} {fields}".rstrip()


def format_reply(reply: Mapping[str, Any]) -> List[str]:
    """Readable lines for a reply worth showing (welcome, join, who, rooms, topic, history,
    and a dm whose recipient is away)."""
    kind, cmd = reply.get("type"), reply.get("cmd")
    if kind == "welcome":
        lines = [f"* connected to {reply.get('name')} ({reply.get('server')}) as {reply.get('nick')}"]
        if reply.get("motd"):
            lines.append(f"* {_one_line(reply['motd'])}")
        return lines
    if kind == "error":
        return [format_event(reply)]
    if cmd == "join":
        lines = [f"[{reply['room']}] * you joined; members: {_members(reply.get('members', []))}"]
        if reply.get("topic"):
            lines.append(f"[{reply['room']}] * topic: {_one_line(reply['topic'])}")
        return lines
    if cmd == "who":
        return [f"[{reply['room']}] members: {_members(reply.get('members', []))}"]
    if cmd == "rooms":
        rooms = reply.get("rooms", [])
        if not rooms:
            return ["* no rooms"]
        lines = [f"* {r.get('name')} ({r.get('members')} members)"
                 + (f": {_one_line(r['topic'])}" if r.get("topic") else "") for r in rooms]
        if reply.get("next"):
            lines.append(f"* more rooms follow: /rooms {_one_line(reply['next'])}")
        return lines
    if cmd == "dm" and reply.get("away") is True:
        # The server's extension: the recipient is away or busy (the message was delivered).
        text = reply.get("away_text")
        return [f"* {reply.get('to')} is away" + (f": {_one_line(text)}" if text else "")]
    if cmd == "topic":
        topic = _one_line(reply.get("topic", "")) or "(no topic)"
        return [f"[{reply['room']}] * topic: {topic}"]
    if cmd == "history":
        messages = reply.get("messages", [])
        return [format_event(m) for m in messages] or [f"[{reply['room']}] * no history"]
    if cmd == "nick":
        return [f"* you are now known as {_one_line(reply.get('nick', ''))}"]
    if cmd == "status":
        text = f": {_one_line(reply['text'])}" if reply.get("text") else ""
        return [f"* you are {reply.get('status')}{text}"]
    if cmd == "ping":
        return ["* pong"]
    if cmd == "mode":
        return [f"[{reply['room']}] * modes: {_modes(reply)}"]
    if cmd in ("invite", "kick", "op"):
        done = {"invite": "invited", "kick": "removed", "op": "made an operator:"}[cmd]
        return [f"[{reply['room']}] * {done} {_one_line(reply.get('nick', ''))}"]
    return []
