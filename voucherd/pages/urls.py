"""Where a voucher's public page and its images live (``pages/routes.py`` serves them).

A leaf on purpose: the answers of every face, the delivery messages and the order exports
link to the page, and none of them should import the page's routes to do it.
"""

from __future__ import annotations

PAGE_PATH = "/v"


def page_url(base_url: str, public_token: str) -> str:
    """The holder's voucher page: the public token is its only secret."""
    return f"{base_url}{PAGE_PATH}/{public_token}"


def qr_url(base_url: str, public_token: str) -> str:
    return f"{page_url(base_url, public_token)}/qr.svg"


def barcode_url(base_url: str, public_token: str) -> str:
    return f"{page_url(base_url, public_token)}/barcode.svg"
