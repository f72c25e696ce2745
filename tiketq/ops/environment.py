"""Which Midtrans the service talks to, and whether its keys belong there."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

PRODUCTION = "production"
SANDBOX = "sandbox"
SIMULATOR = "simulator"

MEANINGS = {
    PRODUCTION: "Midtrans production: real money moves.",
    SANDBOX: "Midtrans sandbox: test payments, no real money.",
    SIMULATOR: "Local Midtrans simulator: nothing reaches Midtrans, no money moves.",
}
# Midtrans key prefixes; anything after them is secret and never shown.
_PREFIXES = {
    "MIDTRANS_SERVER_KEY": (("SB-Mid-server-", SANDBOX), ("Mid-server-", PRODUCTION)),
    "MIDTRANS_CLIENT_KEY": (("SB-Mid-client-", SANDBOX), ("Mid-client-", PRODUCTION)),
}


@dataclass(frozen=True)
class KeyCheck:
    """What a configured key's prefix says about where it belongs."""

    setting: str
    prefix: str | None
    kind: str | None
    expected: str

    @property
    def ok(self) -> bool:
        """Whether the key belongs to the environment the service runs in."""
        return self.kind == self.expected


def mode(config: Mapping[str, Any]) -> str:
    """PRODUCTION, SIMULATOR or SANDBOX, as the ops banner says it."""
    if config.get("MIDTRANS_IS_PRODUCTION"):
        return PRODUCTION
    if config.get("MIDTRANS_SIMULATOR"):
        return SIMULATOR
    return SANDBOX


def key_checks(config: Mapping[str, Any]) -> list[KeyCheck]:
    """The server and client keys' prefixes against the mode (the simulator takes sandbox keys)."""
    expected = PRODUCTION if config.get("MIDTRANS_IS_PRODUCTION") else SANDBOX
    checks = []
    for setting, prefixes in _PREFIXES.items():
        key = config.get(setting) or ""
        prefix, kind = next(((p, k) for p, k in prefixes if key.startswith(p)), (None, None))
        checks.append(KeyCheck(setting, prefix, kind, expected))
    return checks
