"""Forms of the ops pages; each carries its own CSRF token."""

from __future__ import annotations

import re
from typing import Any

from flask_wtf import FlaskForm
from wtforms import Field, HiddenField, PasswordField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional, Regexp
from wtforms.widgets import TextInput

NOTE_MAX_LENGTH = 500
# Refund.reason and the API's reasons hold this much.
REASON_MAX_LENGTH = 255
# Whole rupiah as staff write them: 150000, 150.000 or Rp 150.000.
_RUPIAH = re.compile(r"(?:Rp\.?\s*)?(\d{1,3}(?:\.\d{3})+|\d+)")
AMOUNT_MESSAGE = "Give the amount in whole rupiah, e.g. 150000 or 150.000."


class LoginForm(FlaskForm):
    """A member of staff's name and password."""

    name = StringField("Name", validators=[DataRequired(), Length(max=64)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])
    next = HiddenField()


class ActionForm(FlaskForm):
    """A button that changes something (sign out, resend): only its CSRF token and the way back."""

    next = HiddenField()


def entered(field: StringField) -> str:
    """The text of a field that DataRequired validated, which WTForms still types as optional."""
    assert field.data is not None, f"{field.name} is read before the form is validated"
    return field.data


def _stripped(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


class RupiahField(Field):
    """An amount in whole rupiah, more than zero; empty means none was given."""

    # Typed in as text, but its data is the number (a StringField's would be text).
    widget = TextInput()
    data: int | None

    def process_formdata(self, valuelist: list[Any]) -> None:
        """Read 150000, 150.000 or Rp 150.000; refuse anything else, decimals included."""
        text = valuelist[0].strip() if valuelist else ""
        self.data = None
        if not text:
            return
        found = _RUPIAH.fullmatch(text)
        amount = int(found.group(1).replace(".", "")) if found else 0
        if amount <= 0:
            raise ValueError(AMOUNT_MESSAGE)
        self.data = amount

    def _value(self) -> str:
        return "" if self.data is None else str(self.data)


class ResolveForm(FlaskForm):
    """The end of a payment's review: what was done about it, in words."""

    note = TextAreaField(
        "Note",
        filters=[_stripped],
        validators=[
            DataRequired("Write a note: what was done about this payment, and why."),
            Length(max=NOTE_MAX_LENGTH, message=f"Keep the note to {NOTE_MAX_LENGTH} characters."),
        ],
    )


class CancelForm(FlaskForm):
    """Why an open payment is canceled; `confirmed` once staff saw what it cancels."""

    reason = StringField(
        "Reason",
        filters=[_stripped],
        validators=[
            Length(
                max=REASON_MAX_LENGTH,
                message=f"Keep the reason to {REASON_MAX_LENGTH} characters.",
            )
        ],
    )
    confirmed = HiddenField()


class RefundForm(FlaskForm):
    """How much to refund (none: all that is left) and why; `key` once staff saw the amount."""

    amount = RupiahField("Amount", validators=[Optional()])
    reason = StringField(
        "Reason",
        filters=[_stripped],
        validators=[
            DataRequired("Give the reason for the refund."),
            Length(
                max=REASON_MAX_LENGTH,
                message=f"Keep the reason to {REASON_MAX_LENGTH} characters.",
            ),
        ],
    )
    # One per confirmation page: pressing its button twice sends the same key, which refunds once.
    key = HiddenField(
        validators=[
            Optional(),
            Regexp(r"^[0-9a-f]{32}$", message="The confirmation expired; start the refund again."),
        ]
    )
