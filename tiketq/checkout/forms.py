"""Forms of the checkout page; each carries its own CSRF token.

None asks about the traveller: the customer details are the caller's, and a form here would let
anyone holding the link change the email and phone that later attempts send to Midtrans.
"""

from __future__ import annotations

from flask_wtf import FlaskForm


class RetryForm(FlaskForm):
    """A request for a fresh attempt at paying the order: only its CSRF token."""
