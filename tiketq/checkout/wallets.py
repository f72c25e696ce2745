"""What a pending QRIS or e-wallet payment shows the traveller: its QR code and its app link."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import segno
from markupsafe import Markup

# Midtrans gives QRIS a QR string (and an image); GoPay an image and an app link; ShopeePay a link.
QR_STRING_TYPES = frozenset({"qris"})
QR_IMAGE_TYPES = frozenset({"qris", "gopay"})
APP_LINK_TYPES = frozenset({"gopay", "shopeepay"})
# Web addresses and the GoPay app's own scheme; never javascript: or data:, which run in our page.
_APP_SCHEMES = frozenset({"http", "https", "gojek"})


@dataclass(frozen=True)
class WalletSteps:
    """How to pay a pending wallet payment: a QR drawn here, Midtrans's QR image, an app link."""

    qr_svg: Markup | None = None
    qr_image_url: str | None = None
    app_url: str | None = None

    def __bool__(self) -> bool:
        """Whether there is anything to show."""
        return any((self.qr_svg, self.qr_image_url, self.app_url))


def wallet_steps(
    payment_type: str | None, details: Mapping[str, Any], *, image_origin: str, qr_title: str
) -> WalletSteps:
    """The steps Midtrans's details allow for this payment type; empty for other types.

    Details are merged over attempts at paying in Snap, so a field is read only for the payment
    type that sends it: a QRIS string left from an earlier choice is not GoPay's.
    """
    qr_string = details.get("qr_string") if payment_type in QR_STRING_TYPES else None
    image = details.get("qr_code_url") if payment_type in QR_IMAGE_TYPES else None
    link = details.get("deeplink_url") if payment_type in APP_LINK_TYPES else None
    svg = qr_svg(qr_string, qr_title) if isinstance(qr_string, str) and qr_string else None
    return WalletSteps(
        qr_svg=svg,
        qr_image_url=None if svg else _from_origin(image, image_origin),
        app_url=_app_link(link),
    )


def qr_svg(text: str, title: str) -> Markup:
    """`text` as a QR code in inline SVG, sized by CSS; no script, no style attribute."""
    code = segno.make(text, error="m")
    svg = code.svg_inline(
        border=4, omitsize=True, light="#fff", title=title, svgclass="qr-code", lineclass=None
    )
    # segno escapes the title; the rest is numbers. role=img lets screen readers name it.
    return Markup(svg.replace("<svg ", '<svg role="img" ', 1))


def _from_origin(url: object, origin: str) -> str | None:
    # Only an image the page's policy lets in, so that the traveller never sees a broken one.
    if not isinstance(url, str):
        return None
    parts = urlsplit(url)
    return url if f"{parts.scheme}://{parts.netloc}" == origin and parts.netloc else None


def _app_link(url: object) -> str | None:
    if not isinstance(url, str) or urlsplit(url).scheme not in _APP_SCHEMES:
        return None
    return url
