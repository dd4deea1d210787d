"""The Label Studio server's data folder: a SECRET_KEY it can read back, and a database that starts from the
install's migrated schema (loop.clients.ls_server)."""

import sqlite3
import stat

import pytest

from loop.clients.ls_server import DATABASE_FILE, LabelStudioServer, ensure_secret_key, schema_template
from tests.conftest import LS_VENV


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


def _rows(database, query: str) -> list:
    with sqlite3.connect(database) as db:
        return [row[0] for row in db.execute(query)]


@pytest.mark.integration
def test_a_new_data_folder_starts_from_the_installs_migrated_schema_with_its_own_admin(ls_server, tmp_path):
    template = schema_template(LS_VENV)
    assert template.is_file()  # made by the session's first server
    with LabelStudioServer(venv=LS_VENV, data_dir=tmp_path / "ls", username="second@example.com",
                           password="second-admin-pw") as server:
        assert server.personal_access_token()  # its own admin logs in and makes a token
    applied = "SELECT app || name || applied FROM django_migrations"
    # no migration ran in the new folder (each would add a row stamped with its time), and every one is there
    assert sorted(_rows(tmp_path / "ls" / DATABASE_FILE, applied)) == sorted(_rows(template, applied))
    assert len(_rows(template, applied)) > 100
    assert _rows(template, "SELECT email FROM htx_user") == []  # the template holds no user
    assert _rows(tmp_path / "ls" / DATABASE_FILE, "SELECT email FROM htx_user") == ["second@example.com"]


def test_a_folder_without_label_studio_has_no_template_and_runs_nothing(tmp_path):
    assert LabelStudioServer(venv=tmp_path, data_dir=tmp_path / "ls").migrated_schema() is None
    assert not (tmp_path / "labelloop").exists()
