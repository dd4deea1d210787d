import base64

import pytest

from backend.auth import Credentials, authorized, is_loopback

BASIC = Credentials(basic_user="labeler", basic_password="pw:with:colons")
BOTH = Credentials(basic_user="labeler", basic_password="pw", bearer_token="tok")


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_without_credentials_everyone_is_let_in():
    assert authorized(None, Credentials())


@pytest.mark.parametrize("header, ok", [
    (basic("labeler", "pw:with:colons"), True),
    (basic("labeler", "pw"), False),
    (basic("other", "pw:with:colons"), False),
    ("Basic not-base64!", False),
    ("Basic " + base64.b64encode(b"no-colon").decode(), False),
    ("Bearer pw:with:colons", False),  # no bearer token configured
    (None, False),
    ("", False),
])
def test_basic_auth(header, ok):
    assert authorized(header, BASIC) is ok


def test_either_credential_when_both_are_set():
    assert authorized("Bearer tok", BOTH) and authorized(basic("labeler", "pw"), BOTH)
    assert not authorized("Bearer nope", BOTH) and not authorized("bearer", BOTH)


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("::1", True), ("localhost", True),
                                            ("0.0.0.0", False), ("10.1.2.3", False), ("", False),
                                            ("example.org", False)])
def test_loopback_hosts(host, loopback):
    assert is_loopback(host) is loopback
