"""The Label Studio server's data folder: a SECRET_KEY it can read back (loop.clients.ls_server)."""

import stat

from loop.clients.ls_server import ensure_secret_key


def _key(env_file):
    return [line.split("=", 1)[1] for line in env_file.read_text().splitlines() if line.startswith("SECRET_KEY=")]


def test_a_fresh_folder_gets_a_url_safe_key_only_its_owner_reads(tmp_path):
    env = tmp_path / ".env"
    ensure_secret_key(env)
    (key,) = _key(env)
    assert len(key) >= 50 and not key.startswith("$")
    assert set(key) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert stat.S_IMODE(env.stat().st_mode) == 0o600


def test_a_key_label_studio_reads_back_is_left_as_it_is(tmp_path):
    env = tmp_path / ".env"
    text = "\nSECRET_KEY=k3y-that(works)$inside\nOTHER=1\n"
    env.write_text(text)
    ensure_secret_key(env)
    assert env.read_text() == text


def test_a_key_beginning_with_a_dollar_is_replaced_and_the_rest_kept(tmp_path):
    env = tmp_path / ".env"
    env.write_text("OTHER=1\n\nSECRET_KEY=first\nSECRET_KEY=$abc\n")  # the last one is the one read
    ensure_secret_key(env)
    (key,) = _key(env)
    assert not key.startswith("$") and key != "first"
    assert "OTHER=1" in env.read_text().splitlines()
