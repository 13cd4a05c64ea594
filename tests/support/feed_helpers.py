"""The care-team feed in tests: a running ``twinmon serve`` process, and every response checked against the
OpenAPI document that process serves (JSON Schema 2020-12 over the document's own components)."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_URI = "urn:twinmon:openapi"


def _pointer(*parts: str) -> str:
    return "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


@dataclass
class ApiProcess:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path
    spec: dict[str, Any] = field(default_factory=dict)
    checked: set[tuple[str, str, int]] = field(default_factory=set)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"twinmon serve exited {self.proc.returncode}:\n{self.log.read_text()[-4000:]}")
            try:
                r = httpx.get(f"{self.url}/readyz", timeout=2)
                last = r.text
                if r.status_code == 200:
                    self.spec = httpx.get(f"{self.url}/openapi.json", timeout=5).json()
                    return
            except httpx.HTTPError as exc:
                last = type(exc).__name__
            time.sleep(0.2)
        raise AssertionError(f"twinmon serve not ready in {timeout}s ({last}):\n{self.log.read_text()[-3000:]}")

    def call(self, method: str, template: str, token: str | None, *, path: dict[str, str] | None = None,
             expect: int | None = None, **kwargs: Any) -> httpx.Response:
        """One request; the response is validated against the served OpenAPI for (template, method, status)."""
        url = self.url + template.format(**(path or {}))
        headers = kwargs.pop("headers", {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        resp = httpx.request(method, url, headers=headers, timeout=30, **kwargs)
        self.validate(template, method, resp)
        if expect is not None:
            assert resp.status_code == expect, f"{method} {template}: {resp.status_code} {resp.text[:500]}"
        return resp

    def validate(self, template: str, method: str, resp: httpx.Response) -> None:
        op = self.spec["paths"][template][method.lower()]
        status = str(resp.status_code)
        assert status in op["responses"], f"{method} {template} answered {status}, not documented: {resp.text[:300]}"
        content = op["responses"][status].get("content", {})
        media = next((m for m in ("application/json", "application/fhir+json") if "schema" in content.get(m, {})),
                     None)
        if media is not None:
            assert resp.headers["content-type"].split(";")[0] == media, resp.headers["content-type"]
            doc = {**self.spec, "$id": SPEC_URI}
            registry: Registry[Any] = Registry().with_resource(SPEC_URI, Resource.from_contents(doc, DRAFT202012))
            ref = f"{SPEC_URI}#/" + _pointer("paths", template, method.lower(), "responses", status, "content",
                                             media, "schema")
            Draft202012Validator({"$ref": ref}, registry=registry).validate(resp.json())
        self.checked.add((template, method.lower(), resp.status_code))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def wait_until(what: str, fn: Any, timeout: float = 60.0, every: float = 0.3) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(every)
