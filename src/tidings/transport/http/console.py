"""The web console: static files at ``/console``, shipped inside the package.

The console is a page of plain HTML, CSS and JavaScript (no build step)
that talks to the WebSocket API and, for the extensions the WebSocket API
lacks, to the HTTP API, with the project and token the user types in. So
the files themselves hold nothing secret and load without credentials
(``auth.authenticator`` leaves ``/console`` open); every operation they
perform is checked like any other request.

The files are read once, when the app is built, into a table keyed by file
name: a request names an entry of that table or gets a 404, so no path a
client sends ever reaches the file system.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import PurePosixPath
from typing import Any

import falcon
import falcon.asgi

PATH = "/console"
INDEX = "index.html"

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
}

# Only this origin's own scripts, styles and sockets: the page renders
# message bodies, which any producer can write.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


def load_assets() -> dict[str, Asset]:
    """The console's files by name, from ``tidings/console/static``."""
    root = resources.files("tidings") / "console" / "static"
    assets: dict[str, Asset] = {}
    for entry in root.iterdir():
        suffix = PurePosixPath(entry.name).suffix
        if not entry.is_file() or suffix not in CONTENT_TYPES:
            continue
        body = entry.read_bytes()
        assets[entry.name] = Asset(body, CONTENT_TYPES[suffix],
                                   hashlib.sha256(body).hexdigest()[:32])
    return assets


def _serve(req: falcon.asgi.Request, resp: falcon.asgi.Response, asset: Asset | None
           ) -> None:
    if asset is None:
        raise falcon.HTTPNotFound()
    resp.content_type = asset.content_type
    resp.etag = asset.etag
    # The names carry no version: the browser keeps a copy but asks with
    # If-None-Match each time, so an upgraded server is seen at once.
    resp.cache_control = ["no-cache"]
    resp.set_header("X-Content-Type-Options", "nosniff")
    if asset.content_type.startswith("text/html"):
        resp.set_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        resp.set_header("Referrer-Policy", "no-referrer")
    if asset.etag in (req.if_none_match or []):
        resp.status = falcon.HTTP_304
        return
    resp.data = asset.body


class ConsolePage:
    """``/console`` and ``/console/``: the page itself."""

    def __init__(self, assets: dict[str, Asset]) -> None:
        self.assets = assets

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        _serve(req, resp, self.assets.get(INDEX))


class ConsoleFile:
    """``/console/{name}``: one of the page's files, by exact name."""

    def __init__(self, assets: dict[str, Asset]) -> None:
        self.assets = assets

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response,
                     name: str) -> None:
        _serve(req, resp, self.assets.get(name))


def routes() -> list[tuple[str, Any]]:
    assets = load_assets()
    page = ConsolePage(assets)
    return [(PATH, page), (PATH + "/", page), (PATH + "/{name}", ConsoleFile(assets))]
