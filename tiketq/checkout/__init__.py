"""Blueprint: the traveller's checkout and receipt pages."""

from tiketq.checkout.views import bp, checkout_url, finish_url

__all__ = ["bp", "checkout_url", "finish_url"]
