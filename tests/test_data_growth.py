"""The data growth benchmark at tiny sizes: it runs, prints every row, and its exit code says so."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.data_growth import ROWS

# The benchmark itself, in a subprocess, seeding two sizes of history.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
SIZES = ("200", "2000")


def test_the_benchmark_prints_every_row_and_exits_as_its_verdicts_say() -> None:
    # Databases of this run's own, so that a kept benchmark database is never touched.
    prefix = f"tiketq_growth_test_{os.getpid()}"
    command = [
        sys.executable, "-m", "benchmarks.data_growth", "--sizes", *SIZES, "--runs", "1",
        "--requests", "2", "--batch", "10", "--day-changes", "300", "--wait-quiet", "0",
        "--prefix", prefix, "--drop",
    ]  # fmt: skip
    # Below pytest's own 120 s timeout, so that a hung run fails here with its output.
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=110)

    assert done.returncode in (0, 1), done.stdout[-3000:] + done.stderr[-3000:]
    table = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| operation | 200 | 2,000 | growth (2,000/200) |"), table
    verdicts = {}
    for row in ROWS:
        line = next((x for x in table if x.startswith(f"| {row.label} ({row.unit}) |")), None)
        assert line is not None, f"no row {row.label!r} in:\n" + "\n".join(table)
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        # Label, one figure per size, growth, target, verdict.
        assert len(cells) == len(SIZES) + 4, line
        assert all(re.fullmatch(r"[\d,.]+|n/a", cell) for cell in cells[1:3]), line
        verdicts[row.key] = cells[-1]
    missed = [key for key, verdict in verdicts.items() if verdict.startswith("MISS")]
    assert done.returncode == (1 if missed else 0), (missed, done.stdout[-3000:])
    assert ("TARGET MISSED" in done.stdout) == bool(missed)
    assert f"dropped database {prefix}_200" in done.stdout
    assert f"dropped database {prefix}_2000" in done.stdout
