"""Who may call the backend: HTTP basic auth (what Label Studio's Connect Model form sends when "Use basic
auth" is on) and/or a bearer token. /health stays open (load balancers and Label Studio's first check);
every other endpoint starts processes, reads images or shows job state, so with auth configured it answers
401 without detail to a wrong or missing credential.
"""

from __future__ import annotations

import base64
import hmac
import ipaddress
from dataclasses import dataclass

OPEN_PATHS = ("/", "/health")


@dataclass(frozen=True)
class Credentials:
    basic_user: str | None = None
    basic_password: str | None = None
    bearer_token: str | None = None

    @property
    def configured(self) -> bool:
        return bool((self.basic_user and self.basic_password) or self.bearer_token)


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())  # no timing hint about how much matched


def authorized(header: str | None, credentials: Credentials) -> bool:
    """Does this Authorization header carry one of the configured credentials? (pure)"""
    if not credentials.configured:
        return True
    scheme, _, value = (header or "").partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and credentials.bearer_token:
        return _same(value, credentials.bearer_token)
    if scheme.lower() == "basic" and credentials.basic_user and credentials.basic_password:
        try:
            user, sep, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return bool(sep) and _same(user, credentials.basic_user) & _same(password, credentials.basic_password)
    return False


def is_loopback(host: str) -> bool:
    """Is this bind address reachable from this machine only?"""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
