"""Every response of the feed carries the browser security headers (issue 13, finding 11): the page, its static
files, the API's answers and its refusals."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from feed.api import SECURITY_HEADERS, create_api
from streams.settings import Settings

# Nothing listens on port 1: the routes exercised here never reach Redis or Kafka.
SETTINGS = Settings(redis_url="redis://127.0.0.1:1/0", kafka_bootstrap="127.0.0.1:1")


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(create_api(SETTINGS))


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/", 200), ("GET", "/static/app.js", 200), ("GET", "/static/style.css", 200),
    ("GET", "/api/patients", 401), ("GET", "/no/such/route", 404),
    ("POST", "/api/alerts/a-1/acknowledge", 401),
])
def test_every_response_carries_the_security_headers(client: TestClient, method: str, path: str,
                                                     status: int) -> None:
    r = client.request(method, path)
    assert r.status_code == status
    for name, value in SECURITY_HEADERS:
        assert r.headers.get(name.decode()) == value.decode(), name


def test_the_policy_forbids_framing_inline_script_and_other_origins() -> None:
    csp = dict(SECURITY_HEADERS)[b"content-security-policy"].decode()
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["frame-ancestors"] == "'none'"
    assert directives["script-src"] == "'self'" and "unsafe" not in csp
    assert directives["connect-src"] == "'self'" and directives["object-src"] == "'none'"


def test_an_oversized_body_is_refused_with_the_headers_too(client: TestClient) -> None:
    r = client.post("/fhir/Observation", content=b"x" * (SETTINGS.api_max_body_bytes + 1),
                    headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert r.headers.get("x-content-type-options") == "nosniff"
