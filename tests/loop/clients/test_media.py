"""Media fetching policy: SSRF guard, path confinement, token handling (HTTP faked with MockTransport)."""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from loop.clients.media import MediaConfig, MediaError, MediaFetcher, _is_jwt, safe_join

PUBLIC = "93.184.216.34"  # an IP literal: no DNS needed, and the mock transport answers instead
LS = "http://127.0.0.1:8080"
PAT = ".".join([base64.urlsafe_b64encode(json.dumps(x).encode()).decode().rstrip("=")
                for x in ({"alg": "HS256"}, {"token_type": "refresh"}, {"s": 1})])


def fetcher(handler, **kw) -> MediaFetcher:
    return MediaFetcher(MediaConfig(**kw), http=httpx.Client(transport=httpx.MockTransport(handler)))


def test_private_addresses_are_refused_unless_label_studio_or_allowed():
    f = fetcher(lambda r: httpx.Response(200, content=b"img"), ls_url="http://10.0.0.5:8080")
    for url in ("http://127.0.0.1/x.jpg", "http://169.254.169.254/latest/meta-data", "http://192.168.1.1/a.png",
                "http://[::1]/a.png"):
        with pytest.raises(MediaError, match="refusing"):
            f.fetch(url)
    assert f.fetch("http://10.0.0.5:8080/data/upload/1/a.jpg") == b"img"
    assert f.fetch(f"http://{PUBLIC}/a.jpg") == b"img"
    g = fetcher(lambda r: httpx.Response(200, content=b"ok"), allow_hosts=["192.168.0.0/16"])
    assert g.fetch("http://192.168.1.1/a.png") == b"ok"


def test_redirects_are_checked_hop_by_hop():
    def handler(request):
        if request.url.host == PUBLIC:
            return httpx.Response(302, headers={"location": "http://127.0.0.1:9/secret"})
        return httpx.Response(200, content=b"secret")

    with pytest.raises(MediaError, match="refusing"):
        fetcher(handler).fetch(f"http://{PUBLIC}/img.jpg")


def test_tokens_go_to_label_studio_only_and_a_pat_becomes_an_access_token():
    seen = []

    def handler(request):
        seen.append((request.url.host, request.url.path, request.headers.get("authorization")))
        if request.url.path == "/api/token/refresh/":
            assert json.loads(request.content) == {"refresh": PAT}
            return httpx.Response(200, json={"access": "ACCESS"})
        if request.url.path.startswith("/tasks/7/presign/"):
            return httpx.Response(302, headers={"location": f"http://{PUBLIC}/bucket/a.jpg?sig=1"})
        return httpx.Response(200, content=b"img")

    f = fetcher(handler, ls_url=LS, api_key=PAT)
    assert f.fetch("/data/upload/3/abc-a.jpg") == b"img"
    assert f.fetch("s3://bucket/a.jpg", task_id=7) == b"img"
    assert ("127.0.0.1", "/data/upload/3/abc-a.jpg", "Bearer ACCESS") in seen
    assert (PUBLIC, "/bucket/a.jpg", None) in seen  # the presigned cloud URL gets no token
    assert sum(path == "/api/token/refresh/" for _, path, _ in seen) == 1  # access token reused

    legacy = fetcher(lambda r: httpx.Response(200, content=r.headers["authorization"].encode()), ls_url=LS,
                     api_key="abc123")
    assert legacy.fetch("/data/upload/1/x.png") == b"Token abc123"
    assert _is_jwt(PAT) and not _is_jwt("abc123")


def test_errors_never_contain_the_token():
    f = fetcher(lambda r: httpx.Response(401), ls_url=LS, api_key="sekrit-legacy")
    with pytest.raises(MediaError) as exc:
        f.fetch("/data/upload/1/x.png")
    assert "sekrit" not in str(exc.value) and "401" in str(exc.value)


def test_local_paths_stay_inside_their_roots(tmp_path):
    (tmp_path / "up" / "1").mkdir(parents=True)
    (tmp_path / "up" / "1" / "a.jpg").write_bytes(b"local")
    (tmp_path / "secret.txt").write_text("no")
    f = fetcher(lambda r: httpx.Response(500), image_dir=tmp_path / "up", local_files_root=tmp_path / "up")
    assert f.fetch("/data/upload/1/a.jpg") == b"local"
    assert f.fetch("/data/local-files/?d=1/a.jpg") == b"local"
    for bad in ("/data/upload/../secret.txt", "/data/local-files/?d=../secret.txt",
                "/data/upload/1/%2e%2e/../../secret.txt"):
        with pytest.raises(MediaError, match="leaves the allowed folder"):
            f.fetch(bad)
    with pytest.raises(MediaError, match="leaves"):
        safe_join(tmp_path / "up", "1/../../secret.txt")


def test_unsupported_and_missing_urls():
    f = fetcher(lambda r: httpx.Response(200))
    for url, msg in (("", "no image URL"), ("ftp://x/y.jpg", "unsupported"), ("file:///etc/passwd", "unsupported"),
                     ("/data/upload/1/a.jpg", "no Label Studio URL")):
        with pytest.raises(MediaError, match=msg):
            f.fetch(url)


def test_other_ports_on_the_label_studio_host_are_other_services():
    seen = []

    def handler(request):
        seen.append((request.url.host, request.url.port))
        if request.url.path == "/data/upload/1/bounce.jpg":
            return httpx.Response(302, headers={"location": "http://10.0.0.5:6379/"})
        return httpx.Response(200, content=b"img")

    f = fetcher(handler, ls_url="http://10.0.0.5:8080")
    assert f.fetch("http://10.0.0.5:8080/data/upload/1/a.jpg") == b"img"
    for url in ("http://10.0.0.5:6379/", "http://10.0.0.5/a.jpg", "/data/upload/1/bounce.jpg"):
        with pytest.raises(MediaError, match="refusing to fetch from 10.0.0.5:(6379|80)"):
            f.fetch(url)
    assert ("10.0.0.5", 6379) not in seen and ("10.0.0.5", None) not in seen
    allowed = fetcher(handler, ls_url="http://10.0.0.5:8080", allow_hosts=["10.0.0.5"])
    assert allowed.fetch("http://10.0.0.5:6379/a.jpg") == b"img"  # allow-listed hosts: any port


def test_the_request_goes_to_the_address_that_was_checked(monkeypatch):
    """DNS rebinding: the name resolves to a public address when checked and to loopback a moment later;
    the fetch connects to the checked address (with the name in Host), never to a second answer."""
    answers = iter([PUBLIC, "127.0.0.1", "127.0.0.1"])

    def resolve(host, port, *args, **kwargs):
        return [(2, 1, 6, "", (next(answers), port))]

    monkeypatch.setattr("socket.getaddrinfo", resolve)
    seen = []

    def handler(request):
        seen.append((request.url.host, request.headers["host"]))
        return httpx.Response(200, content=b"img")

    assert fetcher(handler).fetch("http://images.example/a.jpg") == b"img"
    assert seen == [(PUBLIC, "images.example")]
