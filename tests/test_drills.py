"""CI-sized fault drills: a notification storm, a database restart mid-load and slow clients.

Each brings up its own PostgreSQL cluster, simulator, gunicorn and workers (drills/harness.py),
so nothing here uses the test database of conftest.
"""

from __future__ import annotations

import pytest

from drills import db_restart, slow_clients, storm
from drills.report import Result

pytestmark = pytest.mark.drill


def assert_kept(result: Result) -> None:
    """Every check ran and passed; the failing lines otherwise."""
    assert result.checks
    assert not result.failures(), "\n".join(result.failures())


@pytest.mark.timeout(240)
def test_a_notification_storm_leaves_every_payment_in_its_planned_state() -> None:
    result = storm.run(storm.Options(payments=35, parallel=3, duplicates=1, seconds=120))
    assert_kept(result)
    sent = dict(result.rows)["notifications sent"]
    assert int(sent.split()[0]) >= 300


@pytest.mark.timeout(240)
def test_a_database_restart_mid_load_loses_nothing_and_needs_no_service_restart() -> None:
    options = db_restart.Options(clients=4, seconds=12, restarts=("fast",), down=1.5, patience=90)
    result = db_restart.run(options)
    assert_kept(result)


@pytest.mark.timeout(240)
def test_slow_clients_through_nginx_leave_health_and_the_notification_url_answering() -> None:
    result = slow_clients.run(slow_clients.Options(seconds=5, connections=40))
    assert_kept(result)


@pytest.mark.timeout(240)
def test_the_same_slow_clients_straight_at_gunicorn_stop_health() -> None:
    # The drill can fail: without nginx, its probes go unanswered while the connections hold.
    result = slow_clients.run(slow_clients.Options(seconds=5, connections=40, no_proxy=True))
    failed = result.failures()
    assert any(line.startswith("GET /health straight at gunicorn") for line in failed), failed
    assert any(line.startswith("POST notification straight at gunicorn") for line in failed)
    assert not any(line.startswith("slow connections") for line in failed), failed
