"""A local HTTP receiver that records what it is sent and answers from a script."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, request

from tests.support.servers import serve_in_thread


@dataclass
class Received:
    """One request as the receiver saw it."""

    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


@dataclass
class Receiver:
    """Stands in for the transaction service or an event subscriber."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    # Statuses to answer with, in order; once used up, every request gets 200.
    script: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self) -> tuple[str, int]:
        with self.lock:
            self.received.append(Received(request.path, dict(request.headers), request.get_data()))
            status = self.script.pop(0) if self.script else 200
        return "{}", status


def start_receiver() -> Iterator[Receiver]:
    """Run a receiver on a free loopback port until the generator is closed."""
    receiver = Receiver()
    app = Flask("receiver")
    app.add_url_rule("/<path:path>", "any", lambda path: receiver.answer(), methods=["POST"])
    receiver.url, server = serve_in_thread(app)
    try:
        yield receiver
    finally:
        server.shutdown()
