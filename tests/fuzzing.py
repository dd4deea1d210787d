"""Fuzzing the running backend: schemathesis over its OpenAPI document (positive and negative cases for every
endpoint), then hand-written hostile requests. Shared by bench/fuzz.py (10,000+ requests) and the test suite
(a smaller budget of the same). A 5xx answer or a dead server is a failure; every other status is fine."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

import httpx
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as fixed_seed
from schemathesis import GenerationMode

LABEL_CONFIG = ('<View><Image name="image" value="$image"/><RectangleLabels name="label" toName="image">'
                '<Label value="circle"/></RectangleLabels></View>')

# Image URLs an attacker would try: other schemes, loopback spelled every way, cloud metadata, traversal.
HOSTILE_URLS = [
    "file:///etc/passwd", "gopher://127.0.0.1:6379/_INFO", "ftp://127.0.0.1/x", "dict://127.0.0.1:11211/stat",
    "http://127.0.0.1:{port}/metrics", "http://localhost:{port}/jobs", "http://[::1]:{port}/health",
    "http://[::ffff:127.0.0.1]:{port}/metrics", "http://2130706433/", "http://0x7f000001/", "http://0177.0.0.1/",
    "http://127.1/", "http://0.0.0.0:{port}/", "http://169.254.169.254/latest/meta-data/iam/",
    "http://[fd00:ec2::254]/latest/", "http://metadata.google.internal/computeMetadata/v1/",
    "/data/upload/../../../../etc/passwd", "/data/upload/1/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/data/local-files/?d=../../../../etc/shadow", "/data/local-files/?d=%2Fetc%2Fpasswd",
    "s3://bucket/../../etc/passwd", "gs://x/y", "azure-blob://a/b", "http://user:pass@127.0.0.1:{port}/",
    "http://example.com@127.0.0.1:{port}/", "\x00", "http://\u2024\u2024/", "ｈｔｔｐ://127.0.0.1/",
    "http://" + "a" * 300 + ".example/", "data:image/png;base64,iVBORw0KGgo=", "javascript:alert(1)", "",
]


@dataclass
class Outcome:
    requests: int = 0
    statuses: Counter = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)  # 5xx answers and dropped connections

    def record(self, what: str, status: int | str) -> None:
        self.requests += 1
        self.statuses[status] += 1
        if not isinstance(status, int) or status >= 500:
            self.server_errors.append(f"{status} {what}"[:300])


def hostile_requests(port: int) -> list[tuple[str, str, bytes]]:
    """(method, path, body) for requests no schema generator writes."""
    bodies: list[tuple[str, str, bytes]] = []
    for url in HOSTILE_URLS:
        task = {"id": 1, "data": {"image": url.replace("{port}", str(port))}}
        bodies.append(("POST", "/predict", json.dumps({"tasks": [task], "label_config": LABEL_CONFIG}).encode()))
    depth = [b"[" * n + b"]" * n for n in (100, 1000, 5000, 50000)]
    bodies += [("POST", path, body) for path in ("/predict", "/setup", "/webhook", "/train") for body in (
        b"", b"null", b"[]", b"{}", b"\xff\xfe", b'{"tasks": null}', b'{"tasks": [null]}', b'{"tasks": [[]]}',
        b'{"tasks": [{"data": []}]}', b'{"tasks": [{"data": {"image": 5}}], "label_config": 7}',
        b'{"tasks": [{"id": "x", "data": {"image": {"a": 1}}}], "label_config": "<View/>"}',
        b'{"action": 5}', b'{"action": "START_TRAINING", "project": "not-a-number"}', b'{"project": {"id": []}}',
        '{"schema": "<View>\u202e\U0001f600</View>", "project": "\u0000"}'.encode(),
        b'{"label_config": "<!DOCTYPE x [<!ENTITY a \\"a\\">]><View>&a;</View>", "tasks": [{"data": {}}]}',
        b'{"tasks": [{"data": {"image": "' + b"x" * (10 * 1024 * 1024) + b'"}}]}',
        *depth)]
    bodies += [("GET", path, b"") for path in ("/jobs/../../etc/passwd", "/jobs/%00", "/jobs/" + "a" * 5000,
                                                "/versions", "/metrics", "/nope", "/health?x=" + "y" * 8000)]
    return bodies


def fuzz(url: str, budget: int, auth: tuple[str, str] | None = None, seed: int = 0) -> Outcome:
    """About `budget` requests: half schema-driven (positive then negative cases), half hostile ones repeated."""
    outcome = Outcome()
    port = int(url.rsplit(":", 1)[1])
    with httpx.Client(base_url=url, auth=auth, timeout=120) as http:
        hostile = hostile_requests(port)
        for i in range(max(len(hostile), budget // 2)):
            method, path, body = hostile[i % len(hostile)]
            try:
                status = http.request(method, path, content=body, headers={"content-type": "application/json"}
                                      ).status_code
            except httpx.TransportError as exc:  # the server dropped the connection: as bad as a 5xx
                status = type(exc).__name__
            outcome.record(f"{method} {path[:100]} {body[:80]!r}", status)
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json", auth=auth, timeout=30)
    per_mode = max(1, (budget - outcome.requests) // 2)
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        @fixed_seed(seed)  # the same requests on every run and machine
        @given(case=schema.as_strategy(generation_mode=mode))
        @settings(max_examples=per_mode, deadline=None, database=None,
                  phases=[Phase.generate], suppress_health_check=list(HealthCheck))
        def one(case):
            try:
                status = case.call(base_url=url, auth=auth, timeout=120).status_code
            except requests.RequestException as exc:
                status = type(exc).__name__
            outcome.record(f"{case.method} {case.formatted_path[:100]} {str(case.body)[:80]}", status)

        one()
    return outcome
