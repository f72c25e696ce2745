"""Every drill's command line, built from its Options dataclass, and how it ends."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from drills.report import Result, verdict

T = TypeVar("T")


def run_drill(
    module: str,
    description: str,
    options: type[T],
    run: Callable[[T], Result],
    helps: dict[str, str],
    argv: Sequence[str] | None = None,
) -> int:
    """Parse `--field` flags for each field of `options`, run the drill, print its verdict."""
    parser = argparse.ArgumentParser(
        prog=f"python -m {module}",
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    defaults = options()
    for field in dataclasses.fields(options):  # type: ignore[arg-type]
        default = getattr(defaults, field.name)
        flag = f"--{field.name.replace('_', '-')}"
        help_text = f"{helps.get(field.name, field.name)} (%(default)s)"
        if isinstance(default, bool):
            parser.add_argument(flag, action="store_true", help=helps.get(field.name))
        elif isinstance(default, tuple):
            # argparse passes a string default through `type` too: shown and parsed as typed.
            parser.add_argument(flag, type=_words, default=",".join(default), help=help_text)
        else:
            parser.add_argument(flag, type=type(default), default=default, help=help_text)
    chosen = options(**vars(parser.parse_args(argv)))
    return verdict(lambda: run(chosen))


def _words(text: str) -> tuple[Any, ...]:
    return tuple(word for word in text.split(",") if word)
