"""Security headers of HTML pages: a nonce-based CSP that lets in Snap's host and nothing else."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Response, current_app, g, request

from tiketq.config import snap_js_url

# The in-app simulator's pages stand in for Midtrans's own host: they are framed by the
# checkout page, so they must not carry its rules.
_EXEMPT_BLUEPRINT = "midtrans_simulator"
HSTS_SECONDS = 365 * 24 * 3600
# Where Midtrans's Core API serves a wallet payment's QR image (midtransclient's base URLs).
CORE_API_PRODUCTION = "https://api.midtrans.com"
CORE_API_SANDBOX = "https://api.sandbox.midtrans.com"


def nonce() -> str:
    """This request's CSP nonce, made on first use."""
    if "csp_nonce" not in g:
        g.csp_nonce = secrets.token_urlsafe(16)
    return str(g.csp_nonce)


def _forget_nonce() -> None:
    # An app context (and its g) can outlive one request, as in tests; a nonce must not.
    g.pop("csp_nonce", None)
    g.pop("csp_image_origin", None)


def allow_images_from(origin: str) -> None:
    """Let this response's page load images from `origin` too (a receipt's QR image)."""
    g.csp_image_origin = origin


def core_api_origin(config: Mapping[str, Any]) -> str:
    """The origin of the Core API this service asks, where Midtrans's QR images live."""
    base = config.get("MIDTRANS_BASE_URL")
    if base:
        parts = urlsplit(str(base))
        return f"{parts.scheme}://{parts.netloc}"
    return CORE_API_PRODUCTION if config.get("MIDTRANS_IS_PRODUCTION") else CORE_API_SANDBOX


def snap_origin(config: Mapping[str, Any]) -> str | None:
    """The origin Snap.js and its payment frame come from; None when it is this service."""
    parts = urlsplit(snap_js_url(config))
    return f"{parts.scheme}://{parts.netloc}" if parts.netloc else None


def content_security_policy(nonce: str, snap: str | None, images: str | None = None) -> str:
    """The policy of a page that may open Snap: own files, nonce'd scripts and Snap's origin.

    `images` is one more origin the page may load images from, for a page that shows one.
    """
    snap_sources = f" {snap}" if snap else ""
    image_sources = snap_sources + (f" {images}" if images and images != snap else "")
    directives = {
        "default-src": "'self'",
        "script-src": f"'self' 'nonce-{nonce}'{snap_sources}",
        "style-src": f"'self'{snap_sources}",
        "img-src": f"'self' data:{image_sources}",
        "connect-src": f"'self'{snap_sources}",
        "frame-src": snap or "'self'",
        "frame-ancestors": "'none'",
        "form-action": "'self'",
        "base-uri": "'none'",
        "object-src": "'none'",
    }
    return "; ".join(f"{name} {value}" for name, value in directives.items())


def _add_headers(response: Response) -> Response:
    if response.mimetype != "text/html" or (request.blueprint or "").startswith(_EXEMPT_BLUEPRINT):
        return response
    headers = response.headers
    headers["Content-Security-Policy"] = content_security_policy(
        nonce(), snap_origin(current_app.config), g.get("csp_image_origin")
    )
    # Pages show amounts, names and payment codes: no cache, shared or private, keeps them.
    headers.setdefault("Cache-Control", "no-store")
    headers["X-Content-Type-Options"] = "nosniff"
    headers["X-Frame-Options"] = "DENY"
    # Page addresses carry the payment id; other sites learn only our origin.
    headers["Referrer-Policy"] = "strict-origin-when-cross-origin"
    # Snap may open a bank's 3-D Secure or e-wallet page in a popup that reports back.
    headers["Cross-Origin-Opener-Policy"] = "same-origin-allow-popups"
    if request.is_secure:
        headers["Strict-Transport-Security"] = f"max-age={HSTS_SECONDS}"
    return response


def init_app(app: Flask) -> None:
    """Add the headers to every HTML response, and `csp_nonce` to every template."""
    app.before_request(_forget_nonce)
    app.after_request(_add_headers)
    app.context_processor(lambda: {"csp_nonce": nonce()})
