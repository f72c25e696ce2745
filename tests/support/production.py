"""A production configuration with nothing weak in it, for tests that start one."""

from __future__ import annotations

# As environment variables, for tiketq.config.from_environ.
PRODUCTION_ENV = {
    "MIDTRANS_IS_PRODUCTION": "true",
    "MIDTRANS_SERVER_KEY": "Mid-server-PRODTEST",
    "MIDTRANS_CLIENT_KEY": "Mid-client-PRODTEST",
    "JWT_SECRET": "production-confirmations-secret-of-40-bytes",
    "SECRET_KEY": "production-session-secret-of-at-least-32-bytes",
    "API_AUTH_REQUIRED": "true",
    "API_KEYS": "transaction-service=transaction-service-key-of-the-platform",
    "METRICS_TOKEN": "metrics-token-for-the-prometheus-scraper",
    "RATELIMIT_STORAGE_URI": "redis://127.0.0.1:6379/0",
    "PUBLIC_BASE_URL": "https://pay.tiketq.example",
}

# The same as Flask settings, for create_app(test_config).
PRODUCTION_CONFIG = {
    **PRODUCTION_ENV,
    "MIDTRANS_IS_PRODUCTION": True,
    "MIDTRANS_SIMULATOR": False,
    "MIDTRANS_BASE_URL": None,
    "API_AUTH_REQUIRED": True,
    "API_KEYS": [PRODUCTION_ENV["API_KEYS"]],
}
