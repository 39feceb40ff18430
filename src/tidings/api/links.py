"""Next links of listings, written as Zaqar writes them.

The next page's query keeps the parameters the request gave (and only
those: no ``limit`` unless it was given) and adds ``marker``, in name
order: ``/v2/queues?detailed=true&marker=q9``,
``.../messages?echo=true&limit=3&marker=<id>``. Clients follow the href
as it is, so any parameter left out would change the next page.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def next_links(path: str, given: Mapping[str, Any], marker: str) -> list[dict[str, str]]:
    """``[{"rel": "next", "href": ...}]`` for the page after ``marker``;
    ``given`` holds the request's parameters, None for those it left out."""
    query = {key: _text(value) for key, value in given.items()
             if value is not None and key != "marker"}
    query["marker"] = marker
    return [{"rel": "next", "href": f"{path}?{urlencode(sorted(query.items()))}"}]
