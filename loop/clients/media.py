"""Task image URL -> bytes, for every kind of URL a Label Studio task can carry, without becoming an open
proxy.

- `/data/upload/...` and `/data/local-files/?d=...`: from Label Studio with the configured token (a
  personal access token is exchanged for a short-lived access token), or straight from disk when
  `image_dir` / `local_files_root` say where Label Studio keeps them;
- `s3://`, `gs://`, `azure-blob://`: through Label Studio's presign endpoint for the task;
- plain `http(s)://` URLs.
Addresses in private, loopback, link-local and other special ranges are refused unless they are the
configured Label Studio host or listed in `allow_hosts`; redirects are checked hop by hop; local paths must
stay inside the configured roots. Tokens are sent to the Label Studio host only and never logged.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import logging
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, unquote, urljoin, urlsplit

import httpx

log = logging.getLogger(__name__)

CLOUD_SCHEMES = ("s3", "gs", "gcs", "azure-blob", "azure-spi")


class MediaError(Exception):
    """This task's image cannot be fetched; the message says why (and never contains a token)."""


@dataclass
class MediaConfig:
    ls_url: str | None = None
    api_key: str | None = None
    image_dir: Path | None = None          # Label Studio's media/upload folder, read directly if set
    local_files_root: Path | None = None   # LOCAL_FILES_DOCUMENT_ROOT, for /data/local-files/?d=
    allow_hosts: list[str] = field(default_factory=list)  # hostnames, IPs or CIDRs allowed although private
    timeout_s: float = 30.0
    max_bytes: int = 100 * 1024 * 1024
    max_redirects: int = 5


def _is_jwt(token: str) -> bool:
    parts = token.split(".")
    if len(parts) != 3:
        return False
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return False
    return isinstance(payload, dict) and "token_type" in payload


class LabelStudioAuth:
    """The Authorization header for Label Studio: `Token <legacy>` or `Bearer <access>` from a PAT."""

    def __init__(self, ls_url: str | None, api_key: str | None, http: httpx.Client):
        self.ls_url, self.api_key, self.http = (ls_url or "").rstrip("/"), api_key, http
        self._access: str | None = None
        self._expires = 0.0
        self._lock = threading.Lock()

    def header(self) -> dict[str, str]:
        if not self.api_key:
            return {}
        if not _is_jwt(self.api_key):
            return {"Authorization": f"Token {self.api_key}"}
        with self._lock:
            if self._access is None or time.monotonic() > self._expires:
                reply = self.http.post(f"{self.ls_url}/api/token/refresh/", json={"refresh": self.api_key},
                                       timeout=10)
                if reply.status_code != 200:
                    raise MediaError(f"Label Studio refused the personal access token (HTTP {reply.status_code} "
                                     "from /api/token/refresh/); set a valid LABEL_STUDIO_API_KEY")
                self._access = reply.json()["access"]
                self._expires = time.monotonic() + 240  # access tokens live 300 s
            return {"Authorization": f"Bearer {self._access}"}


def safe_join(root: Path, relative: str) -> Path:
    """root/relative, refusing anything that resolves outside root (`..`, absolute paths, symlinks out)."""
    root = Path(root).resolve()
    candidate = (root / unquote(relative).lstrip("/")).resolve()
    if candidate != root and root not in candidate.parents:
        raise MediaError(f"path {relative!r} leaves the allowed folder")
    return candidate


def _port(parts) -> int:
    return parts.port or (443 if parts.scheme == "https" else 80)


def _pinned(url: str, address: str) -> tuple[str, dict]:
    """`url` with its host replaced by the checked address; TLS still verifies (and SNI names) the host."""
    parts = urlsplit(url)
    literal = f"[{address}]" if ":" in address else address
    netloc = literal + (f":{parts.port}" if parts.port else "")
    extensions = {"sni_hostname": parts.hostname} if parts.scheme == "https" else {}
    return parts._replace(netloc=netloc).geturl(), extensions


class MediaFetcher:
    def __init__(self, config: MediaConfig, http: httpx.Client | None = None):
        self.config = config
        self.http = http or httpx.Client(timeout=config.timeout_s, follow_redirects=False)
        self.auth = LabelStudioAuth(config.ls_url, config.api_key, self.http)
        ls = urlsplit(config.ls_url or "")
        self._ls_netloc = ls.netloc.lower()
        self._ls_host = (ls.hostname or "").lower()
        self._ls_port = _port(ls) if ls.hostname else None
        self._ls_addresses: frozenset | None = None
        self._own_http = http is None

    def close(self) -> None:
        """Close the connections this fetcher opened (a long-lived server keeps its fetcher open)."""
        if self._own_http:
            self.http.close()

    def __enter__(self) -> "MediaFetcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- policy ----------------------------------------------------------------------------------------
    def _allowed_private(self, host: str, port: int, ip: ipaddress._BaseAddress) -> bool:
        """A private address is fine when it is Label Studio itself (its host *and* port: any other port on
        that machine is another service) or is allow-listed (any port)."""
        for entry in self.config.allow_hosts:
            entry = entry.strip().lower()
            if not entry:
                continue
            if entry == host:
                return True
            try:
                if ip in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
        return port == self._ls_port and (host == self._ls_host or ip in self._ls_ips())

    def _ls_ips(self) -> frozenset:
        """The addresses Label Studio's host name resolves to (once): a task URL may name the same server by
        address (http://127.0.0.1:8080/... for a Label Studio configured as http://ls.local:8080)."""
        if self._ls_addresses is None:
            try:
                infos = socket.getaddrinfo(self._ls_host, self._ls_port, proto=socket.IPPROTO_TCP) \
                    if self._ls_host else []
                self._ls_addresses = frozenset(ipaddress.ip_address(i[4][0].split("%")[0]) for i in infos)
            except (socket.gaierror, UnicodeError, ValueError):
                self._ls_addresses = frozenset()
        return self._ls_addresses

    def check_host(self, url: str) -> str:
        """The one address `url` may be fetched from (every address its host resolves to must pass); the
        request then connects to exactly that address, so a second DNS answer cannot point it elsewhere."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise MediaError(f"unsupported URL {url!r}")
        host, port = parts.hostname.lower(), _port(parts)
        try:
            infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
        except socket.gaierror as exc:
            raise MediaError(f"cannot resolve {host} ({exc.strerror})") from None
        except (UnicodeError, ValueError):
            raise MediaError(f"cannot resolve {host[:80]!r}") from None
        addresses = []
        for info in infos:
            ip = ipaddress.ip_address(info[4][0].split("%")[0])
            if not ip.is_global and not self._allowed_private(host, port, ip):
                raise MediaError(f"refusing to fetch from {host}:{port} ({ip}): a private/local address that is "
                                 "neither Label Studio (its host and port) nor in backend.allow_hosts")
            addresses.append(ip)
        if not addresses:
            raise MediaError(f"cannot resolve {host}")
        return str(addresses[0])

    def _is_ls(self, url: str, address: str | None = None) -> bool:
        """Is `url` Label Studio: its name and port, or one of its addresses and its port (`address`: the one
        the request will connect to, already checked)?"""
        parts = urlsplit(url)
        if not self._ls_netloc or not parts.hostname:
            return False
        if parts.netloc.lower() == self._ls_netloc:
            return True
        if _port(parts) != self._ls_port:
            return False
        try:
            return ipaddress.ip_address(address or self.check_host(url)) in self._ls_ips()
        except (MediaError, ValueError):
            return False

    # -- fetching --------------------------------------------------------------------------------------
    def _get(self, url: str) -> bytes:
        for _ in range(self.config.max_redirects + 1):
            address = self.check_host(url)
            headers = self.auth.header() if self._is_ls(url, address) else {}
            target, extensions = _pinned(url, address)
            headers["Host"] = urlsplit(url).netloc.rpartition("@")[2]  # the name the server expects
            with self.http.stream("GET", target, headers=headers, extensions=extensions) as reply:
                if reply.is_redirect:
                    url = urljoin(url, reply.headers.get("location", ""))
                    continue
                if reply.status_code != 200:
                    where = "Label Studio" if self._is_ls(url, address) else urlsplit(url).netloc
                    hint = {401: " (check LABEL_STUDIO_API_KEY)", 403: " (check LABEL_STUDIO_API_KEY)",
                            404: " (no such file: check the task's URL and the storage it points at)",
                            # Label Studio 1.23 answers 500 for an upload whose file is gone
                            500: " (is the file still in Label Studio's storage?)" if where == "Label Studio" else ""
                            }.get(reply.status_code, "")
                    raise MediaError(f"{where} answered HTTP {reply.status_code} for the image{hint}")
                chunks, size = [], 0
                for chunk in reply.iter_bytes():
                    size += len(chunk)
                    if size > self.config.max_bytes:
                        raise MediaError(f"the image is larger than {self.config.max_bytes:,} bytes")
                    chunks.append(chunk)
                return b"".join(chunks)
        raise MediaError(f"more than {self.config.max_redirects} redirects")

    def _ls_url(self, path: str) -> str:
        if not self.config.ls_url:
            raise MediaError(f"the task's image {path!r} lives in Label Studio, but no Label Studio URL is "
                             "configured (labelstudio.url)")
        return f"{self.config.ls_url.rstrip('/')}/{path.lstrip('/')}"

    def fetch(self, url: str, task_id: int | None = None) -> bytes:
        try:
            return self._fetch(url, task_id)
        except httpx.HTTPError as exc:
            raise MediaError(f"cannot fetch the image ({type(exc).__name__})") from None
        except OSError as exc:
            raise MediaError(f"cannot read the image ({exc.strerror or exc})") from None

    def _fetch(self, url: str, task_id: int | None) -> bytes:
        if not isinstance(url, str) or not url:
            raise MediaError("the task has no image URL")
        parts = urlsplit(url)
        path = parts.path if not parts.scheme or self._is_ls(url) else ""
        if path.startswith("/data/upload/"):
            if self.config.image_dir:
                return safe_join(self.config.image_dir, path[len("/data/upload/"):]).read_bytes()
            return self._get(self._ls_url(url[url.index("/data/upload/"):]))
        if path.startswith("/data/local-files"):
            rel = parse_qs(parts.query).get("d", [""])[0]
            if self.config.local_files_root:
                return safe_join(self.config.local_files_root, rel).read_bytes()
            return self._get(self._ls_url(url[url.index("/data/local-files"):]))
        if parts.scheme in CLOUD_SCHEMES:
            if task_id is None:
                raise MediaError(f"a cloud URI ({parts.scheme}://) needs the task id to be presigned")
            encoded = base64.urlsafe_b64encode(url.encode()).decode()
            return self._get(self._ls_url(f"/tasks/{task_id}/presign/?fileuri={encoded}"))
        if parts.scheme in ("http", "https"):
            return self._get(url)
        if not parts.scheme and url.startswith("/"):
            return self._get(self._ls_url(url))  # another path served by Label Studio
        raise MediaError(f"unsupported image URL scheme in {url[:80]!r}")
