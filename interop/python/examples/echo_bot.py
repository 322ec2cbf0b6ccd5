#!/usr/bin/env python3
"""A lanchat bot: answers "!ping" with "pong" and "!time" with the time, in rooms and DMs.

Usage: python3 echo_bot.py HOST[:PORT] [NICK [ROOM]]
"""

import sys
import time
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout
from lanchat import Client, LanchatError, parse_address  # noqa: E402


def answer(text: str) -> Optional[str]:
    """The bot's reply to a message, or None to stay quiet."""
    return {"!ping": "pong", "!time": time.strftime("%Y-%m-%d %H:%M:%S %Z")}.get(text.strip())


def main() -> None:
    host, port = parse_address(sys.argv[1])
    with Client().connect(host, port) as bot:
        bot.hello(sys.argv[2] if len(sys.argv) > 2 else "echobot")
        if len(sys.argv) > 3:
            bot.join(sys.argv[3])
        for event in bot.events():  # until the server closes the connection
            reply = answer(event.get("text", "")) if event["type"] in ("message", "direct") else None
            try:
                if reply and event["type"] == "message":
                    bot.say(event["room"], reply)
                elif reply:
                    bot.dm(event["from"], reply)
            except LanchatError as error:  # e.g. rate_limited: skip this one
                print(f"echo_bot: {error}", file=sys.stderr)


if __name__ == "__main__":
    main()
