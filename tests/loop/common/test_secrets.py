from loop.common.secrets import is_secret_key, redact, secret_overrides, without_secrets


def test_secret_keys_by_their_last_name():
    assert is_secret_key("labelstudio.api_key") and is_secret_key("+labelstudio.server.password")
    assert is_secret_key("registry.token") and not is_secret_key("labelstudio.url")
    assert not is_secret_key("labelstudio.api_key_file")  # a path to where the secret is kept
    assert not is_secret_key("backend.threads")


def test_overrides_that_set_a_secret_are_found_and_dropped():
    given = ["stage=serve", "labelstudio.api_key=abc", "labelstudio.server.password=pw", "labelstudio.api_key=null",
             "backend.port=1"]
    assert secret_overrides(given) == ["labelstudio.api_key", "labelstudio.server.password"]
    assert without_secrets(given) == ["stage=serve", "backend.port=1"]


def test_redact_blanks_secret_values_at_any_depth():
    config = {"labelstudio": {"url": "u", "api_key": "abc", "server": {"password": "pw"}}, "runs": [{"token": "t"}],
              "empty": {"api_key": None}}
    assert redact(config) == {"labelstudio": {"url": "u", "api_key": "***", "server": {"password": "***"}},
                              "runs": [{"token": "***"}], "empty": {"api_key": None}}
