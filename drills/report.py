"""How every drill ends: one line per check with its verdict, and an exit code."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Check:
    """One thing a drill promises, and whether this run kept it."""

    ok: bool
    line: str


def verdict(title: str, rows: list[tuple[str, str]], checks: list[Check]) -> int:
    """Print the drill's measurements and checks; 0 if every check passed, else 1."""
    print(f"\n{title}")
    width = max((len(name) for name, _ in rows), default=0)
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    for check in checks:
        print(f"{'ok  ' if check.ok else 'FAIL'} {check.line}")
    return 0 if all(check.ok for check in checks) else 1
