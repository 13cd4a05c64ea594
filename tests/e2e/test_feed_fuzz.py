"""Fuzzing the care-team feed over real HTTP: a running ``twinmon serve`` and worker, the real Kafka and Redis.

Driven by the OpenAPI document the server serves: for every operation (method + path), hypothesis generates
requests with hostile path parameters (traversal, encoded slashes, unicode, NUL, very long ids), random query
strings, and bodies of every kind: built from the operation's request schema with fields of the wrong type,
missing or extra, arbitrary nested JSON with huge numbers and NaN literals, non-JSON and non-UTF-8 bytes, wrong or
missing Content-Type, empty bodies, and bodies over ``api_max_body_bytes`` (declared or chunked). Each request
goes with team A's token, with none, or with a bad one.

Every answer must be: never 5xx; a 4xx is JSON (an OperationOutcome under /fhir) with a message for a person and
no Python traceback; a 2xx only where it is plausible (the right token, a well-formed id of one of team A's own
patients, a body a person could have meant). After the run the server's log holds no traceback, the process is
alive, /readyz answers 200, and team B (whose token the fuzz never uses) still sees no patient and no alert.

Hypothesis drives it with one example = a batch of ``BATCH`` requests sent by a few threads over one shared
httpx client (per-request examples cost too much here); a failing batch is shrunk by hypothesis as usual.
``pytest -s`` prints the request count and the status histogram.

Then 16 crafted requests go to the socket as raw bytes (what no client library sends: NUL or literal ../ in the
target, a 1 MB header, Content-Length "abc" or with chunked, a malformed chunk size, ...). Those uvicorn refuses
itself are its plain-text 400 "Invalid HTTP request received." (before the app: not JSON, not ours to change).

Limits: random ids rarely hit a rule that needs two conditions at once (such a bug can pass a run); the only
patients with a plausible 2xx are the four enrolled first and those the fuzz itself enrolled.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import socket
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote_to_bytes, urlsplit

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from streams.schema import ID_PATTERN
from streams.settings import Settings
from tests.conftest import Deployment
from tests.e2e.test_feed_fhir import observation
from tests.support.feed_helpers import ApiProcess, wait_until

pytestmark = pytest.mark.integration

TEAM_A, TEAM_B = "ward-fuzz-a", "ward-fuzz-b"
KNOWN = ["fz-0001", "fz-0002"]  # enrolled in team A before the fuzz: the ids a 2xx is plausible for
DISPOSABLE = ["fz-0003", "fz-0004"]  # enrolled too, and the only known ids a DELETE gets (KNOWN stay enrolled)
BATCH = 16
EXAMPLES = 250  # x BATCH = 4,000 requests
THREADS = 4
TRACEBACK = re.compile(r'Traceback|File "|\.py"')
PUBLIC = {"/healthz", "/readyz"}
# Each of these names no patient in any team, whatever the server decodes it to.
HOSTILE_IDS = [
    "..%2F..%2Fetc%2Fpasswd", "..", ".", "%2e%2e", "%2E%2E%2F%2E%2E%2Fetc%2Fpasswd", "..%5C..%5Cwindows",
    "%00", "fz-0001%00", "fz-0001%2F..", "%2F", "fz-0001%2Falerts", "%", "%zz", "%C0%AE%C0%AE", "%FF%FE",
    "fz-0001%0A", "fz-0001%20", "%E2%80%AE", "%F0%9F%98%80", "a" * 65, "a" * 5000, "fz-0001;x", "*", "%25",
    "fz-0001?x=1", "fz-0001#frag", "fz-0001%3Fx", "~root", "$(reboot)", "'%20OR%201=1--",
]
WRONG_VALUES: list[Any] = [
    None, True, False, 0, -1, 2**70, -(2**70), 1.5e308, -0.0, "", "x" * 300, "\u0000", "\u202e", "NaN", "72",
    "../../etc/passwd", [], [1, "a", None], {}, {"a": {"b": [1]}}, [[[[[]]]]],
]
CONTENT_TYPES = [
    "application/json", "application/json; charset=utf-8", "application/json; charset=latin-1",
    "application/fhir+json", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
    "multipart/form-data; boundary=zz", "application/xml", "application/octet-stream", "json", "*/*", "",
]
METHODS_EXTRA = ["PATCH", "OPTIONS", "HEAD", "TRACE", "PUT", "DELETE", "POST", "GET"]


@dataclass(frozen=True)
class Operation:
    method: str
    template: str
    params: tuple[tuple[str, str], ...]  # (name, in) of the documented parameters
    query: tuple[tuple[str, dict[str, Any]], ...]  # (name, schema) of the documented query parameters
    body_schema: dict[str, Any] | None


@dataclass(frozen=True)
class Req:
    op: Operation
    method: str
    target: str  # the raw request target, sent as is
    auth: str  # "valid", "none" or "bad"
    content_type: str | None
    body: bytes | None
    chunked: bool
    kind: str  # what the body is, for the report
    header: str | None = field(default=None, repr=False)  # the Authorization header: never shown

    def __str__(self) -> str:  # never the token
        return (f"{self.method} {self.target[:300]} auth={self.auth} kind={self.kind} ct={self.content_type!r} "
                f"body={(self.body or b'')[:200]!r}{'...' if len(self.body or b'') > 200 else ''}")


def operations(spec: dict[str, Any]) -> list[Operation]:
    ops = []
    for template, methods in spec["paths"].items():
        for method, op in methods.items():
            params = tuple((p["name"], p["in"]) for p in op.get("parameters", []))
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            query = tuple((p["name"], p["schema"]) for p in op.get("parameters", []) if p["in"] == "query")
            ops.append(Operation(method.upper(), template, params, query, body))
    return ops


# --- values from the served schemas: valid, or of the wrong type -------------------------------------------

def resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        node: Any = spec
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def valid_value(spec: dict[str, Any], schema: dict[str, Any], depth: int = 0) -> st.SearchStrategy[Any]:
    schema = resolve(spec, schema)
    if "anyOf" in schema:
        return st.one_of([valid_value(spec, s, depth) for s in schema["anyOf"]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "const" in schema:
        return st.just(schema["const"])
    kind = schema.get("type")
    if kind == "string":
        if "pattern" in schema:
            return st.from_regex(schema["pattern"], fullmatch=True).filter(lambda s: len(s) <= 80)
        return st.text(min_size=schema.get("minLength", 0), max_size=min(schema.get("maxLength", 40), 40))
    if kind == "integer":
        return st.integers(schema.get("minimum", -(2**40)), schema.get("maximum", 2**40))
    if kind == "number":
        return st.floats(schema.get("minimum"), schema.get("maximum"), allow_nan=False, allow_infinity=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        if "prefixItems" in schema:
            return st.tuples(*(valid_value(spec, s, depth + 1) for s in schema["prefixItems"])).map(list)
        return st.lists(valid_value(spec, schema.get("items", {}), depth + 1),
                        max_size=min(schema.get("maxItems", 4), 4))
    if kind == "object" and depth < 3:
        props = schema.get("properties", {})
        if props:
            return st.fixed_dictionaries({k: valid_value(spec, v, depth + 1) for k, v in props.items()})
        extra = schema.get("additionalProperties", True)
        values = valid_value(spec, extra, depth + 1) if isinstance(extra, dict) else json_values
        return st.dictionaries(st.sampled_from(["spo2", "heart_rate", "resp_rate", "x"]) | st.text(max_size=8),
                               values, max_size=3)
    return json_values


json_values: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(-(2**200), 2**200)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@st.composite
def schema_body(draw: st.DrawFn, spec: dict[str, Any], schema: dict[str, Any]) -> Any:
    """An object from the schema with each field valid, of the wrong type, or left out; sometimes extra ones."""
    schema = resolve(spec, schema)
    props = schema.get("properties")
    if not props:
        return draw(valid_value(spec, schema))
    body: dict[str, Any] = {}
    for name, sub in props.items():
        how = draw(st.sampled_from(["valid", "valid", "valid", "wrong", "missing"]))
        if how == "valid":
            body[name] = draw(valid_value(spec, sub))
        elif how == "wrong":
            body[name] = draw(st.sampled_from(WRONG_VALUES) | json_values)
    if draw(st.integers(0, 5)) == 0:
        body[draw(st.sampled_from(["care_team", "team", "status", "__proto__", "patient_id", "x"]))] = draw(
            json_values)
    return body


# --- requests ----------------------------------------------------------------------------------------------

@st.composite
def path_value(draw: st.DrawFn, known: list[str] = KNOWN) -> str:
    """A path parameter as it appears, percent-encoded, in the request target."""
    kind = draw(st.sampled_from(["known", "known", "id", "hostile", "hostile", "text", "raw", "long"]))
    if kind == "known":
        return draw(st.sampled_from(known))
    if kind == "id":
        return quote(draw(st.from_regex(ID_PATTERN, fullmatch=True)), safe="")
    if kind == "hostile":
        return draw(st.sampled_from(HOSTILE_IDS))
    if kind == "long":
        return "a" * draw(st.integers(64, 12_000))
    text = draw(st.text(max_size=40))
    # "raw" leaves slashes, dots and percent signs as they are: ../../etc/passwd reaches the router unencoded.
    return quote(text, safe="/%.~" if kind == "raw" else "")


@st.composite
def query_string(draw: st.DrawFn, spec: dict[str, Any], op: Operation) -> str:
    """Half the time the documented parameters with valid values (one perhaps spoilt), else random ones."""
    hostile = st.one_of(
        st.integers(-(2**70), 2**70).map(str), st.integers(0, 600).map(str),
        st.sampled_from(["", "NaN", "inf", "-0", "1e3", "1.5", "true", "null", "%FF%FE", "%", "%zz",
                         "..%2F..%2Fetc%2Fpasswd", "fz-0001", "a" * 5000]),
        st.text(max_size=30).map(lambda s: quote(s, safe="")),
        path_value(),
    )
    parts = []
    if op.query and draw(st.integers(0, 2)):
        for name, schema in op.query:
            if draw(st.integers(0, 3)):  # a query's parameters are often given together (since and until)
                value = draw(valid_value(spec, schema).filter(lambda v: v is not None))
                parts.append(f"{name}={quote(str(value), safe='')}")
        if parts and draw(st.booleans()):
            parts[draw(st.integers(0, len(parts) - 1))] = f"{draw(st.sampled_from(op.query))[0]}={draw(hostile)}"
        return "&".join(parts)
    names = [name for name, _ in op.query]
    for _ in range(draw(st.integers(0, 4))):
        name = draw(st.sampled_from([*names, "x", "limit", "offset", "", "a%00", "patient", "%FF"]))
        parts.append(name if draw(st.integers(0, 9)) == 0 else f"{name}={draw(hostile)}")
    return "&".join(parts)


@st.composite
def body_for(draw: st.DrawFn, spec: dict[str, Any], op: Operation, limit: int) -> tuple[str, bytes | None, str | None,
                                                                                       bool]:
    """(kind, body, Content-Type, chunked)."""
    takes_body = op.body_schema is not None
    kinds = ["schema", "good", "schema", "schema", "none", "json", "nan", "huge", "deep", "bytes", "non-utf8", "empty",
             "oversized", "fhir"]
    kind = draw(st.sampled_from(kinds if takes_body else ["none", "none", "none", *kinds]))
    if kind == "good":  # what a person would send, so that the accepting paths are fuzzed too
        good: dict[str, Any] = {
            "/api/patients": {"patient_id": draw(st.from_regex(ID_PATTERN, fullmatch=True)),
                              "age_band": draw(st.sampled_from([None, "16-39", "80+"]))},
            "/api/patients/{patient_id}": {"age_band": "40-64", "conditions": ["copd"]},
            "/api/alerts/{alert_id}/resolve": {"reason": "reviewed at the bedside"},
        }
        doc = good.get(op.template) or observation(draw(st.sampled_from(KNOWN)), "8867-4", "/min", 80.0,
                                                   int(time.time() * 1000))
        return kind, json.dumps(doc).encode(), "application/json", False
    json_type = "application/json"
    chunked = False
    body: bytes | None
    if kind == "none":
        return kind, None, None, False
    if kind == "schema" and op.body_schema is not None:
        body = json.dumps(draw(schema_body(spec, op.body_schema))).encode()
    elif kind == "fhir":
        code = draw(st.sampled_from(["8867-4", "9279-1", "59408-5", "8310-5", "8480-6", "0000-0"]))
        doc = observation(draw(st.sampled_from([*KNOWN, "nobody-1", "../x"])), code, "/min",
                          draw(st.floats(-1e6, 1e6, allow_nan=False)), int(time.time() * 1000))
        if draw(st.booleans()):
            doc[draw(st.sampled_from(list(doc)))] = draw(st.sampled_from(WRONG_VALUES))
        body = json.dumps(doc).encode()
    elif kind == "json" or kind == "schema":
        body = json.dumps(draw(json_values)).encode()
    elif kind == "nan":
        body = draw(st.sampled_from([
            b'{"patient_id": NaN}', b'{"patient_id": "fz-9", "targets": {"spo2": [NaN, Infinity]}}',
            b'{"reason": -Infinity}', b"NaN", b'{"resourceType": "Observation", "valueQuantity": {"value": NaN}}',
            b'{"patient_id": "fz-9", "targets": {"spo2": [-Infinity, 1e999]}}', b"[NaN, Infinity, -Infinity]",
        ]))
    elif kind == "huge":
        digits = "9" * draw(st.integers(20, 5000))
        body = draw(st.sampled_from(['{"patient_id": %s}', '{"targets": {"spo2": [%s, %s]}}', "%s",
                                     '{"reason": %s}', '{"age_band": 1e%s}'])).replace("%s", digits).encode()
    elif kind == "deep":
        depth = draw(st.integers(100, 30_000))
        body = draw(st.sampled_from([b"[" * depth + b"]" * depth, b'{"a":' * depth + b"1" + b"}" * depth,
                                     b"[" * depth]))
    elif kind == "bytes":
        body = draw(st.binary(max_size=200))
    elif kind == "non-utf8":
        body = draw(st.sampled_from([b'{"patient_id": "\xff\xfe"}', b"\xff\xfe\x00\x00", b'{"reason": "\xc0\xaf"}',
                                     b"\xef\xbb\xbf{}", '{"reason": "é"}'.encode("utf-16")]))
    elif kind == "empty":
        body = b""
    else:  # oversized: declared by Content-Length, or chunked with none
        size = limit + draw(st.integers(1, 2 * limit))
        filler = draw(st.sampled_from([b"x", b"[", b" "]))
        body = (b'{"patient_id": "fz-0001", "conditions": ["' + filler * size + b'"]}')[: size + 40]
        chunked = draw(st.booleans())
    content_type = draw(st.sampled_from([json_type] * 6 + CONTENT_TYPES + [None]))
    return kind, body, content_type, chunked


@st.composite
def request(draw: st.DrawFn, spec: dict[str, Any], ops: list[Operation], token: str, limit: int) -> Req:
    op = draw(st.sampled_from(ops))  # the writes come first: hypothesis favours early choices
    method = op.method if draw(st.integers(0, 9)) else draw(st.sampled_from(METHODS_EXTRA))
    # Another method on the same path may be another documented operation: judge the answer as that one's.
    op = next((o for o in ops if o.template == op.template and o.method == method), op)
    path = op.template
    for name, where in op.params:
        if where == "path":
            known = DISPOSABLE if method == "DELETE" else [*KNOWN, *DISPOSABLE]
            path = path.replace("{" + name + "}", draw(path_value(known)))
    query = draw(query_string(spec, op)) if draw(st.integers(0, 3)) else ""
    auth = draw(st.sampled_from(["valid"] * 6 + ["none", "bad"]))
    header: str | None = None
    if auth == "valid":
        header = f"Bearer {token}"
    elif auth == "bad":
        header = draw(st.sampled_from([
            "Bearer", "Bearer  x", f"Bearer {token[:-1]}", f"Bearer {token}x", f"Basic {token}", token,
            "Bearer " + "A" * 10_000, "Bearer null", "Bearer ../../etc/passwd", "Bearer %00",
        ]) | st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60).map(
            lambda s: "Bearer " + s)).strip()  # h11 (the client) sends no header with edge whitespace
    kind, body, content_type, chunked = draw(body_for(spec, op, limit))
    return Req(op, method, path + ("?" + query if query else ""), auth, content_type, body, chunked, kind, header)


# --- sending and checking ----------------------------------------------------------------------------------

@dataclass
class Answer:
    status: int
    content_type: str
    text: str
    error: str = ""  # a transport error instead of an answer


def send(client: httpx.Client, url: str, req: Req) -> Answer:
    headers: dict[str, str] = {}
    if req.header is not None:
        headers["Authorization"] = req.header
    if req.content_type is not None:
        headers["Content-Type"] = req.content_type
    content: Any = req.body
    if req.body is not None and req.chunked:
        body = req.body
        content = iter([body[i:i + 8192] for i in range(0, len(body), 8192)])
    request = client.build_request(req.method, url + "/", headers=headers, content=content,
                                   extensions={"target": req.target.encode("ascii")})
    try:
        resp = client.send(request, stream=True)
    except httpx.HTTPError as exc:
        return Answer(0, "", "", f"{type(exc).__name__}: {exc}")
    try:
        ctype = resp.headers.get("content-type", "")
        if ctype.startswith("text/event-stream"):
            text = next(resp.iter_text(), "")  # the stream never ends: its first event is enough
        else:
            text = resp.read().decode("utf-8", "replace")
    except httpx.HTTPError as exc:
        return Answer(resp.status_code, "", "", f"{type(exc).__name__} while reading: {exc}")
    finally:
        resp.close()
    return Answer(resp.status_code, ctype, text)


def routed(req: Req, ops: list[Operation]) -> tuple[Operation | None, str | None]:
    """The operation the server routes the request to and its patient id (%2F is decoded before routing)."""
    path = unquote_to_bytes(req.target.split("?", 1)[0]).decode("utf-8", "replace")
    for op in ops:
        pattern = "^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(op.template)) + "$"
        found = re.match(pattern, path)
        if found and (op.method == req.method or (req.method == "HEAD" and op.method == "GET")):
            return op, found.groupdict().get("patient_id")
    return None, None


def _json(body: bytes | None) -> Any:
    try:
        return json.loads(body or b"", parse_constant=lambda c: math.nan)
    except (ValueError, RecursionError):
        return None


def _finite(doc: Any) -> bool:
    if isinstance(doc, float):
        return math.isfinite(doc)
    if isinstance(doc, dict):
        return all(_finite(v) for v in doc.values())
    if isinstance(doc, list):
        return all(_finite(v) for v in doc)
    return True


def plausible_2xx(req: Req, accepted: set[str], ops: list[Operation]) -> str:
    """Why a 2xx is implausible for this request, or "" if one is fine."""
    op, pid = routed(req, ops)
    if op is None:
        return "no documented operation for this method and path"
    if op.template in PUBLIC:
        return ""
    if req.auth != "valid":
        return "no valid token"
    if pid is not None and pid not in accepted:
        return "a patient id team A never enrolled"
    if op.template.startswith("/api/alerts/"):
        return "no alert id is known to the fuzz"
    if op.body_schema is None:
        return ""
    doc = _json(req.body)
    if not isinstance(doc, dict) or not _finite(doc):
        return "a body that is not a finite JSON object"
    if op.template == "/api/patients":
        if not isinstance(doc.get("patient_id"), str) or not ID_PATTERN.fullmatch(doc["patient_id"]):
            return "an enrolment without a well-formed patient_id"
        if set(doc) - {"patient_id", "age_band", "conditions", "targets"}:
            return "an enrolment with unknown fields"
    if op.template == "/fhir/Observation" and doc.get("resourceType") not in ("Observation", "Bundle"):
        return "a resource that is not an Observation or Bundle"
    return ""


def check(req: Req, ans: Answer, accepted: set[str], limit: int, ops: list[Operation]) -> None:
    where = f"{req}\n-> {ans.status} {ans.content_type} {ans.text[:500]!r} {ans.error}"
    assert not ans.error, f"no HTTP answer: {where}"
    assert ans.status < 500, f"server error: {where}"
    assert not TRACEBACK.search(ans.text), f"a traceback in the answer: {where}"
    if req.body is not None and len(req.body) > limit and not req.chunked:
        assert ans.status == 413, f"an oversized body not refused with 413: {where}"
    if 200 <= ans.status < 300:
        why = plausible_2xx(req, accepted, ops)
        assert not why, f"2xx for {why}: {where}"
        op, _ = routed(req, ops)
        if op is not None and op.template == "/api/patients" and op.method == "POST":
            doc = _json(req.body)
            accepted.add(doc["patient_id"])
    elif 400 <= ans.status < 500 and req.method != "HEAD":
        fhir = req.target.startswith("/fhir/")
        expected = "application/fhir+json" if fhir else "application/json"
        assert ans.content_type.split(";")[0] == expected, f"a 4xx that is not {expected}: {where}"
        doc = json.loads(ans.text)
        message = doc["issue"][0]["diagnostics"] if fhir else doc["error"]
        assert isinstance(message, str) and len(message) >= 5 and re.search("[a-z]{3}", message), \
            f"a 4xx without a message for a person: {where}"


def test_feed_fuzz(deployment: Deployment) -> None:
    limit = Settings().api_max_body_bytes
    token_a = deployment.token("fuzz-a", TEAM_A)
    token_b = deployment.token("fuzz-b", TEAM_B)
    worker = deployment.start_worker()
    # 4,000 requests in a minute with one token: the per-token rate (tests/integration/test_feed_limits.py) lifted,
    # so that the fuzz reaches the routes instead of a 429.
    api = deployment.start_api(TWINMON_API_MAX_BODY_BYTES=str(limit), TWINMON_API_RATE_PER_S="1000000",
                               TWINMON_API_RATE_BURST="1000000")
    started = time.monotonic()
    try:
        _fuzz(api, token_a, token_b, limit)
    finally:
        api.stop()
        worker.stop()
    log = api.log.read_text(errors="replace")
    found = TRACEBACK.search(log) or re.search("request failed|Exception in ASGI", log)
    assert found is None, f"a traceback in the server log:\n{log[max(found.start() - 1500, 0):found.start() + 6000]}"
    assert token_a not in log, "a token reached the server log"
    print(f"fuzz total {time.monotonic() - started:.1f}s including setup")


def _fuzz(api: ApiProcess, token_a: str, token_b: str, limit: int) -> None:
    for pid in [*KNOWN, *DISPOSABLE]:
        api.call("POST", "/api/patients", token_a, json={"patient_id": pid}, expect=202)
    wait_until("team A's patients listed", lambda: {p["patient_id"] for p in api.call(
        "GET", "/api/patients", token_a, expect=200).json()} >= set(KNOWN), timeout=60)
    spec = api.spec
    ops = sorted(operations(spec), key=lambda o: (o.method == "GET", o.template))
    accepted = {*KNOWN, *DISPOSABLE}
    statuses: Counter[int] = Counter()
    by_op: Counter[str] = Counter()
    by_kind: Counter[str] = Counter()
    said: dict[int, str] = {}  # one answer per status, to show what people are told
    sent = 0
    began = time.monotonic()
    with httpx.Client(timeout=30, limits=httpx.Limits(max_connections=THREADS * 2)) as client, \
            ThreadPoolExecutor(THREADS) as pool:

        @settings(max_examples=EXAMPLES, deadline=None, database=None, phases=[Phase.generate, Phase.shrink],
                  suppress_health_check=list(HealthCheck))
        @given(st.lists(request(spec, ops, token_a, limit), min_size=BATCH, max_size=BATCH))
        def fuzz(batch: list[Req]) -> None:
            nonlocal sent
            answers = list(pool.map(lambda r: send(client, api.url, r), batch))
            sent += len(batch)
            for req, ans in zip(batch, answers, strict=True):
                statuses[ans.status] += 1
                by_op[f"{req.op.method} {req.op.template}"] += 1
                by_kind[f"{req.kind}{'/chunked' if req.chunked else ''}->{ans.status}"] += 1
                said.setdefault(ans.status, f"{req.method} {req.target[:60]} ({req.kind}): {ans.text[:160]}")
                check(req, ans, accepted, limit, ops)

        fuzz()
    took = time.monotonic() - began
    print(f"\nfeed fuzz: {sent} requests in {took:.1f}s over {len(ops)} operations; "
          f"status histogram {dict(sorted(statuses.items()))}")
    print(f"requests per operation: {dict(sorted(by_op.items()))}")
    print(f"body kind -> status: {dict(sorted(by_kind.items()))}")
    print("an answer per status:\n  " + "\n  ".join(f"{k}: {v}" for k, v in sorted(said.items())))
    assert sent >= EXAMPLES * BATCH

    raw_statuses = crafted(api.url, token_a, limit)
    print(f"crafted raw-socket cases: {raw_statuses}")

    assert api.proc.poll() is None, "the API process died"
    assert httpx.get(f"{api.url}/readyz", timeout=10).status_code == 200
    headers = {"Authorization": f"Bearer {token_b}"}
    assert httpx.get(f"{api.url}/api/patients", headers=headers, timeout=10).json() == [], \
        "something the fuzz sent as team A reached team B's patients"
    assert httpx.get(f"{api.url}/api/alerts", headers=headers, timeout=10).json() == []
    mine = {p["patient_id"] for p in httpx.get(f"{api.url}/api/patients", headers={
        "Authorization": f"Bearer {token_a}"}, timeout=10).json()}
    assert mine <= accepted, f"team A lists patients it never had accepted: {sorted(mine - accepted)[:5]}"


# --- crafted requests no HTTP client library sends: written to the socket as they are -----------------------

def raw_cases(token: str, limit: int) -> list[tuple[str, bytes]]:
    """(what, bytes); a name ending "(legal)" is one uvicorn may serve (HTTP allows it, or h11 is lenient)."""
    auth = f"Authorization: Bearer {token}\r\n".encode()
    big = b"x" * (limit + 1)
    return [
        ("literal ../ in the target", b"GET /api/patients/../../../etc/passwd HTTP/1.1\r\n" + auth + b"\r\n"),
        ("NUL in the target", b"GET /api/patients/fz-0001\x00.json HTTP/1.1\r\n" + auth + b"\r\n"),
        ("a 100 KB request line", b"GET /api/patients/" + b"a" * 100_000 + b" HTTP/1.1\r\n" + auth + b"\r\n"),
        ("a 1 MB header", b"GET /api/me HTTP/1.1\r\nX-Pad: " + b"p" * 1_000_000 + b"\r\n" + auth + b"\r\n"),
        ("Content-Length: abc", b"POST /api/patients HTTP/1.1\r\n" + auth + b"Content-Length: abc\r\n\r\n{}"),
        ("Content-Length: -1", b"POST /api/patients HTTP/1.1\r\n" + auth + b"Content-Length: -1\r\n\r\n{}"),
        ("a 20-digit Content-Length", b"POST /api/patients HTTP/1.1\r\n" + auth
         + b"Content-Length: 99999999999999999999\r\n\r\n{}"),
        ("Content-Length and chunked", b"POST /api/patients HTTP/1.1\r\n" + auth
         + b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"),
        ("Content-Length: 2 on a chunked body over the limit", b"POST /api/patients HTTP/1.1\r\n" + auth
         + b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n" + f"{len(big):x}".encode() + b"\r\n" + big
         + b"\r\n0\r\n\r\n"),
        ("malformed chunk size", b"POST /api/patients HTTP/1.1\r\n" + auth
         + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"),
        ("chunked over the limit", b"POST /fhir/Observation HTTP/1.1\r\n" + auth
         + b"Transfer-Encoding: chunked\r\n\r\n" + f"{len(big):x}".encode() + b"\r\n" + big + b"\r\n0\r\n\r\n"),
        ("non-ASCII bytes in the token", b"GET /api/me HTTP/1.1\r\nAuthorization: Bearer \xff\xfe\xc0\r\n\r\n"),
        ("a control byte in the method", b"G\x01T /api/me HTTP/1.1\r\n" + auth + b"\r\n"),
        ("HTTP/1.0 with no Host (legal)", b"GET /api/patients HTTP/1.0\r\n" + auth + b"\r\n"),
        ("HTTP/9.9 (legal)", b"GET /api/me HTTP/9.9\r\n" + auth + b"\r\n"),
        ("an absolute-form target (legal)", b"GET http://evil.example/api/me HTTP/1.1\r\n" + auth + b"\r\n"),
    ]


def crafted(url: str, token: str, limit: int) -> dict[str, int]:
    """Each case on its own connection; the answer must be a 4xx without a traceback, JSON when the app gave it."""
    address = urlsplit(url)
    statuses = {}
    for name, head in raw_cases(token, limit):
        message = head if b"\r\nHost:" in head or b"HTTP/1.0" in head else head.replace(
            b"\r\n", f"\r\nHost: {address.netloc}\r\nConnection: close\r\n".encode(), 1)
        with socket.create_connection((address.hostname or "", address.port or 80), timeout=10) as sock:
            with contextlib.suppress(OSError):  # the server may answer and close before taking all of it
                sock.sendall(message)
            answer = b""
            with contextlib.suppress(OSError):
                while chunk := sock.recv(65536):
                    answer += chunk
        status_line, _, rest = answer.partition(b"\r\n")
        status = int(status_line.split()[1]) if status_line.startswith(b"HTTP/1.1 ") else 0
        assert 400 <= status < 500 or (name.endswith("(legal)") and 0 < status < 500), f"{name}: {answer[:600]!r}"
        assert not TRACEBACK.search(answer.decode("latin-1")), f"{name}: a traceback: {answer[:2000]!r}"
        if status >= 400 and b"content-type: application/json" in rest.lower():
            assert json.loads(rest.partition(b"\r\n\r\n")[2])["error"], f"{name}: {answer[:600]!r}"
        statuses[name] = status
    return statuses
