"""Reading the HTML pages the app renders, as a person reads them."""

from __future__ import annotations

import html
import re


def text_of(page: str, element_id: str) -> str:
    """The text of the element with this id, its tags removed and spaces collapsed."""
    found = re.search(rf'<(\w+)[^>]*\bid="{re.escape(element_id)}"[^>]*>(.*?)</\1>', page, re.S)
    assert found, f"no element with id {element_id}"
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", found.group(2))).split())
