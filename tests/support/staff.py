"""The member of staff the ops tests configure, and signing in as her through a test client."""

from __future__ import annotations

import re
from typing import Any

from werkzeug.security import generate_password_hash

PASSWORD = "correct horse battery staple"
# A cheap hash keeps the tests fast; `flask payments ops-user` makes the real (scrypt) ones.
STAFF = "alice:" + generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000")


def csrf_token(page: str) -> str:
    """The CSRF token of the form on an ops page."""
    return re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)


def log_in(client: Any, name: str = "alice", password: str = PASSWORD, **extra: Any) -> Any:
    """Post the ops login form with a fresh CSRF token; returns the response."""
    token = csrf_token(client.get("/ops/login").text)
    return client.post(
        "/ops/login", data={"csrf_token": token, "name": name, "password": password, **extra}
    )
