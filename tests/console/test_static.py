"""The console's static files (transport/http/console.py) over plain HTTP:
content types, caching, no way out of the console's own files, and open
to anyone under Keystone auth while the API stays closed."""

from __future__ import annotations

import http.client
from importlib import resources

import httpx
import pytest

from tests.support.server import ServerProcess

FILES = {
    "/console": "text/html; charset=utf-8",
    "/console/": "text/html; charset=utf-8",
    "/console/index.html": "text/html; charset=utf-8",
    "/console/app.js": "text/javascript; charset=utf-8",
    "/console/app.css": "text/css; charset=utf-8",
}
# Sent byte for byte (http.client does not resolve dot segments as httpx
# and browsers do): none may reach a file outside the console's own.
ESCAPES = [
    "/console/../../etc/passwd",
    "/console/..%2F..%2Fetc%2Fpasswd",
    "/console/%2e%2e/%2e%2e/etc/passwd",
    "/console/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/console/%252e%252e%252fetc%252fpasswd",
    "/console/..%5c..%5cetc%5cpasswd",
    "/console/%2e%2e",
    "/console/..",
    "/console/./app.js",
    "/console//etc/passwd",
    "/console/%2Fetc%2Fpasswd",
    "/console/app.js%00.png",
    "/console/static/app.js",
    "/console/__init__.py",
    "/console/../console.py",
    "/console/app.js/..",
]


def raw_get(server: ServerProcess, path: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return (response.status, {k.lower(): v for k, v in response.getheaders()},
                response.read())
    finally:
        connection.close()


def shipped(name: str) -> bytes:
    return (resources.files("tidings") / "console" / "static" / name).read_bytes()


@pytest.mark.parametrize("path", sorted(FILES))
def test_each_file_has_its_content_type_and_caching(console_server: ServerProcess,
                                                    path: str) -> None:
    response = httpx.get(console_server.url + path, timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"] == FILES[path]
    name = path.removeprefix("/console").strip("/") or "index.html"
    assert response.content == shipped(name)
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-content-type-options"] == "nosniff"
    etag = response.headers["etag"]
    again = httpx.get(console_server.url + path, headers={"If-None-Match": etag}, timeout=10)
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == etag


def test_the_page_forbids_anything_but_its_own_files(console_server: ServerProcess) -> None:
    response = httpx.get(console_server.url + "/console", timeout=10)
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy
    assert "connect-src 'self'" in policy
    html = response.text
    assert 'src="/console/app.js"' in html and 'href="/console/app.css"' in html
    assert "http://" not in html and "https://" not in html  # nothing from elsewhere


@pytest.mark.parametrize("path", ESCAPES)
def test_no_path_leaves_the_console_files(console_server: ServerProcess, path: str) -> None:
    status, headers, body = raw_get(console_server, path)
    assert status == 404, (path, status, body[:200])
    assert b"root:" not in body
    assert headers["content-type"] == "application/json"


def test_the_console_is_open_under_keystone_and_the_api_is_not(
        ks_console_server: ServerProcess) -> None:
    for path in FILES:
        status, headers, _ = raw_get(ks_console_server, path)
        assert (status, headers["content-type"]) == (200, FILES[path]), path
    assert raw_get(ks_console_server, "/console/missing.js")[0] == 404
    project = {"X-Project-ID": "p", "Client-ID": "0c8b6e8e-9f0e-4a55-9b4c-1d2d3e4f5a6b"}
    assert raw_get(ks_console_server, "/v2/queues", **project)[0] == 401
    # A dot segment after /console/ must not lend the API the console's openness.
    for sneaky in ("/console/../v2/queues", "/console/%2e%2e/v2/queues",
                   "/console/./../v2/queues"):
        assert raw_get(ks_console_server, sneaky, **project)[0] in (401, 404), sneaky
    # Nothing else under the console's prefix answers without a token either.
    status, _, _ = raw_get(ks_console_server, "/console", **{"X-Auth-Token": "bogus"})
    assert status == 401  # a token sent is a token checked
