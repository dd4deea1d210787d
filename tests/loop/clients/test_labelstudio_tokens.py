"""Access tokens are renewed before they expire, not after: a long stage never sends an expiring one."""

from __future__ import annotations

import time

import jwt
from label_studio_sdk import LabelStudio

from loop.clients.labelstudio import ACCESS_MARGIN_S, renew_access_early


def token(kind: str, seconds_left: float) -> str:
    return jwt.encode({"token_type": kind, "exp": int(time.time() + seconds_left)}, "k" * 32, algorithm="HS256")


def test_an_access_token_near_its_end_counts_as_expired_and_nothing_else_changes():
    client = LabelStudio(base_url="http://127.0.0.1:9", api_key="a-legacy-token")  # no request is sent
    tokens = client._client_wrapper._tokens_client
    before = {kind: tokens._is_valid_jwt_token(token(kind, 300)) for kind in ("access", "refresh")}
    renew_access_early(client)
    assert not tokens._is_valid_jwt_token(token("access", ACCESS_MARGIN_S / 2))  # renewed now, not in flight
    assert not tokens._is_valid_jwt_token(token("access", -5))
    assert {kind: tokens._is_valid_jwt_token(token(kind, 300)) for kind in ("access", "refresh")} == before
    assert tokens._is_valid_jwt_token(token("refresh", ACCESS_MARGIN_S / 2))  # the PAT itself is not touched
