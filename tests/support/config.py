"""The test run's configuration: its own database, sandbox keys, the app's test settings."""

from __future__ import annotations

import os
from typing import Any

# A database of this run's own (dropped afterwards), so that parallel runs never collide.
TEST_DATABASE_URL = os.environ.get(
    "TEST_DATABASE_URL",
    f"postgresql+psycopg2://postgres@127.0.0.1:5432/tiketq_test_{os.getpid()}",
)
SERVER_KEY = "SB-Mid-server-TESTKEY"
CLIENT_KEY = "SB-Mid-client-TESTKEY"
# The transaction service's JWT secret in tests whose confirmations are received and decoded.
CONFIRMATION_SECRET = "test-confirmation-secret-of-32-bytes!"


def app_config(**overrides: Any) -> dict[str, Any]:
    """Test configuration: PostgreSQL, an external simulator, sandbox keys."""
    return {
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": TEST_DATABASE_URL,
        "MIDTRANS_SERVER_KEY": SERVER_KEY,
        "MIDTRANS_CLIENT_KEY": CLIENT_KEY,
        "MIDTRANS_IS_PRODUCTION": False,
        "MIDTRANS_SIMULATOR": True,
        "MIDTRANS_SIMULATOR_IN_APP": False,
        # The session's app is shared by every test: an open circuit would leak from one test
        # into the next. The breaker's own tests turn it on.
        "MIDTRANS_BREAKER_FAILURES": 0,
        # The Flask test client's host, so that the addresses we hand out open in it.
        "PUBLIC_BASE_URL": "http://localhost",
        **overrides,
    }
