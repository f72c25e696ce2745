"""How every drill ends: one line per check with its verdict, and an exit code."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

from benchmarks.common import SetupError


@dataclass(frozen=True)
class Check:
    """One thing a drill promises, and whether this run kept it."""

    ok: bool
    line: str


# One measurement of a drill: what it is, and its value as printed.
Row = tuple[str, str]


@dataclass(frozen=True)
class Result:
    """One drill run: what it measured and the checks it made."""

    title: str
    rows: list[Row]
    checks: list[Check]

    def failures(self) -> list[str]:
        """The lines of the checks this run did not keep."""
        return [check.line for check in self.checks if not check.ok]


def verdict(run: Callable[[], Result]) -> int:
    """Run a drill and print its measurements and checks; exit code 0, 1 (a check failed) or 2."""
    try:
        result = run()
    except SetupError as exc:
        print(f"setup failed: {exc}", file=sys.stderr)
        return 2
    print(f"\n{result.title}")
    width = max((len(name) for name, _ in result.rows), default=0)
    for name, value in result.rows:
        print(f"  {name:<{width}}  {value}")
    for check in result.checks:
        print(f"{'ok  ' if check.ok else 'FAIL'} {check.line}")
    return 1 if result.failures() else 0
