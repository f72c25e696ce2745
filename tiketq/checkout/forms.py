"""Forms of the checkout page; each carries its own CSRF token.

Error messages are text keys (see texts.py), so that a form speaks the page's language.
"""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import EmailField, StringField, TelField
from wtforms.validators import DataRequired, Length, Regexp

# The API's rules for customer_details (schemas.CustomerDetails), so both accept the same.
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
PHONE_PATTERN = r"^\+?[0-9 ()\-]{4,30}$"
NO_CONTROL_PATTERN = r"^[^\x00-\x1f\x7f]*$"


def _strip(value: str | None) -> str | None:
    return value.strip() if isinstance(value, str) else value


class CustomerForm(FlaskForm):
    """The traveller's name, email and mobile number, asked for before paying."""

    name = StringField(
        filters=[_strip],
        validators=[
            DataRequired("error.required"),
            Length(max=255, message="error.too_long"),
            Regexp(NO_CONTROL_PATTERN, message="error.invalid"),
        ],
    )
    email = EmailField(
        filters=[_strip],
        validators=[
            DataRequired("error.required"),
            Length(max=255, message="error.too_long"),
            Regexp(EMAIL_PATTERN, message="error.email"),
        ],
    )
    phone = TelField(
        filters=[_strip],
        validators=[DataRequired("error.required"), Regexp(PHONE_PATTERN, message="error.phone")],
    )


class RetryForm(FlaskForm):
    """A request for a fresh attempt at paying the order: only its CSRF token."""
