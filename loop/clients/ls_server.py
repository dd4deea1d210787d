"""Start and stop a local Label Studio server in its own environment, with the settings the loop needs.

Used by `stage=labelstudio`, the demo and the test fixtures. It talks to the server over plain HTTP the
way a person's browser does (log in, create a personal access token), so it needs no label-studio-sdk.
Settings (see README, "Label Studio settings"): since 1.23.1 Label Studio refuses ML backends and
webhooks on local addresses unless ML_BLOCK_LOCAL_IP and SSRF_PROTECTION_ENABLED are false.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from loop.clients.services import wait_http
from loop.common.errors import LoopError

log = logging.getLogger(__name__)

TOKEN_FILE = "labelloop-pat"
DATABASE_FILE = "label_studio.sqlite3"  # Label Studio's SQLite database in its data folder


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def ensure_secret_key(env_file: Path) -> None:
    """Give Label Studio a SECRET_KEY in its data folder's .env that it can read back.

    Why: Label Studio signs its tokens with SECRET_KEY and, on a first start, writes a random one to
    data_dir/.env. A key that happens to begin with "$" (Django's generator draws from a set holding "$", so
    about 1 start in 50) is read back by django-environ as a reference to another variable, found empty,
    and replaced by a new random key at the next start: every personal access token stops working. So the key
    is written here when there is none, from URL-safe characters, and one that cannot be read back is
    replaced (its tokens fail at the next start anyway). A key that works is left as it is."""
    lines = env_file.read_text().splitlines() if env_file.is_file() else []
    keys = [line.split("=", 1)[1] for line in lines if line.startswith("SECRET_KEY=")]
    if keys and keys[-1] and not keys[-1].startswith("$"):  # the last one is what Label Studio reads
        return
    kept = [line for line in lines if line.strip() and not line.startswith("SECRET_KEY=")]
    fd = os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it signs tokens: the owner's only
    with os.fdopen(fd, "w") as out:
        out.write("\n".join([*kept, f"SECRET_KEY={secrets.token_urlsafe(48)}"]) + "\n")
    if keys:
        log.warning("%s held a SECRET_KEY Label Studio cannot read back (it begins with '$'); replaced it, so "
                    "tokens made from now on survive restarts", env_file)


def installed_version(venv: Path) -> str | None:
    """The Label Studio version installed in `venv` (its package metadata), None if there is none."""
    found = sorted(Path(venv).glob("lib/python*/site-packages/label_studio-*.dist-info"))
    return found[-1].name[len("label_studio-"):-len(".dist-info")] if found else None


def schema_template(venv: Path) -> Path:
    """Where the install keeps its empty, fully migrated SQLite database (see LabelStudioServer.start)."""
    return Path(venv) / "labelloop" / f"empty-{installed_version(venv)}.sqlite3"


@dataclass
class LabelStudioServer:
    venv: Path
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 0  # 0: pick a free one
    username: str = "admin@example.com"
    password: str = "labelloop-admin"
    allow_local_backends: bool = True
    enable_legacy_tokens: bool = False
    legacy_token: str | None = None
    local_files_root: Path | None = None
    startup_timeout_s: float = 300.0
    extra_env: dict[str, str] = field(default_factory=dict)
    # None: SQLite in data_dir (Label Studio's default); else PostgreSQL {host, port, name, user}, the password
    # in the environment as POSTGRE_PASSWORD (Label Studio's own variable)
    database: dict[str, Any] | None = None
    proc: subprocess.Popen | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def executable(self) -> Path:
        return Path(self.venv) / "bin" / "label-studio"

    @property
    def log_file(self) -> Path:
        return Path(self.data_dir) / "server.log"

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LABEL_STUDIO_", "VIRTUAL_ENV", "PYTHON"))}
        env.update({
            "LABEL_STUDIO_BASE_DATA_DIR": str(self.data_dir),
            "LABEL_STUDIO_USERNAME": self.username,
            "LABEL_STUDIO_PASSWORD": self.password,
            "DJANGO_DB": "sqlite",
            # quiet offline: no version check, no analytics, no error reports to Sentry (backend and browser)
            "LATEST_VERSION_CHECK": "false",
            "COLLECT_ANALYTICS": "false",
            "SENTRY_DSN": "",
            "FRONTEND_SENTRY_DSN": "",
            "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true" if self.enable_legacy_tokens else "false",
            # Label Studio's own batched predictions import: without it, every import request recounts the
            # annotations of every task in the project, so bulk pre-annotation would grow with N^2
            "fflag_fix_back_4620_memory_efficient_predictions_import_08012025_short": "true",
        })
        if self.database:  # PostgreSQL; its password from POSTGRE_PASSWORD in this process's environment
            env.update({"DJANGO_DB": "default", "POSTGRE_HOST": str(self.database["host"]),
                        "POSTGRE_PORT": str(self.database.get("port", 5432)),
                        "POSTGRE_NAME": str(self.database["name"]), "POSTGRE_USER": str(self.database["user"])})
        if self.allow_local_backends:
            env.update({"ML_BLOCK_LOCAL_IP": "false", "SSRF_PROTECTION_ENABLED": "false"})
        if self.local_files_root:
            env.update({"LOCAL_FILES_SERVING_ENABLED": "true", "LOCAL_FILES_DOCUMENT_ROOT": str(self.local_files_root)})
        env.update(self.extra_env)
        return env

    def start(self) -> "LabelStudioServer":
        if not self.executable.exists():
            raise LoopError(f"Label Studio is not installed at {self.venv}; run `make labelstudio` "
                            "(it installs the server in its own environment)")
        if self.port == 0:
            self.port = free_port(self.host)
        elif not port_is_free(self.host, self.port):
            raise LoopError(f"port {self.port} on {self.host} is taken (Label Studio would silently move to "
                            f"another one); stop what uses it or set labelstudio.server.port=OTHER")
        Path(self.data_dir).mkdir(parents=True, exist_ok=True)
        ensure_secret_key(Path(self.data_dir) / ".env")
        database = Path(self.data_dir) / DATABASE_FILE
        if self.database is None and not database.exists():
            template = self.migrated_schema()
            if template:
                shutil.copyfile(template, database)
        # the admin's name and password through the environment, never on the command line (ps shows it)
        cmd = [str(self.executable), "start", "--no-browser", "--internal-host", self.host, "--port", str(self.port),
               "--host", self.url]
        if self.legacy_token:
            cmd += ["--user-token", self.legacy_token]
        log.info("starting Label Studio at %s (data in %s, log %s)", self.url, self.data_dir, self.log_file)
        with open(self.log_file, "ab") as out:
            self.proc = subprocess.Popen(cmd, env=self.environment(), stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        self._wait_ready()
        return self

    def migrated_schema(self) -> Path | None:
        """An empty SQLite database with all of this install's migrations applied, made once per install.

        Why: a first start in a new data folder spends about 25 s of its 30 migrating an empty database
        (300-odd migrations), and the demo, each run of stage=simulate's full mode and the tests all start in
        new folders. A copy of this template starts in about 4 s; the admin is still created at start, from
        this server's own name and password, since the template holds no user. Label Studio applies any
        migration the template lacks itself, so a stale one only costs time. None (migrate in place, as
        before) when the install's folder cannot be written or the migration fails; the reason is logged."""
        if installed_version(self.venv) is None:
            return None
        template = schema_template(self.venv)
        if template.is_file():
            return template
        env = {k: v for k, v in self.environment().items()
               if k not in ("LABEL_STUDIO_USERNAME", "LABEL_STUDIO_PASSWORD")}  # the schema only, no user
        try:
            template.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=template.parent) as work:
                env["LABEL_STUDIO_BASE_DATA_DIR"] = work
                ensure_secret_key(Path(work) / ".env")
                log.info("migrating an empty Label Studio database once for this install (%s)", template)
                # any command migrates first; `version` then only prints the version
                done = subprocess.run([str(self.executable), "version"], env=env, capture_output=True, text=True,
                                      errors="replace", stdin=subprocess.DEVNULL, timeout=self.startup_timeout_s)
                if done.returncode != 0 or not (Path(work) / DATABASE_FILE).is_file():
                    log.warning("could not migrate a template database (exit %s): %s", done.returncode,
                                done.stderr[-500:])
                    return None
                os.replace(Path(work) / DATABASE_FILE, template)  # whole or not at all, if two start at once
        except (OSError, subprocess.TimeoutExpired) as e:
            log.warning("no template database in %s (%s); Label Studio migrates its own", template.parent, e)
            return None
        return template

    def _wait_ready(self) -> None:
        try:
            waited = wait_http(f"{self.url}/health", self.proc, "Label Studio", self.log_file,
                               timeout_s=self.startup_timeout_s, poll_s=1.0,
                               ready=lambda reply: reply.json().get("status") == "UP")
        except LoopError:
            self.stop()
            raise
        log.info("Label Studio is up at %s after %.0f s", self.url, waited)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> "LabelStudioServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def login(self) -> requests.Session:
        """A browser-like session logged in with the admin's e-mail and password."""
        session = requests.Session()
        session.get(f"{self.url}/user/login/", timeout=10)
        csrf = session.cookies.get("csrftoken", "")
        reply = session.post(f"{self.url}/user/login/", timeout=30, allow_redirects=False,
                             data={"email": self.username, "password": self.password,
                                   "csrfmiddlewaretoken": csrf},
                             headers={"Referer": f"{self.url}/user/login/"})
        if reply.status_code != 302 or "sessionid" not in session.cookies:
            raise LoopError(f"could not log in to Label Studio at {self.url} as {self.username} "
                            f"(HTTP {reply.status_code}); check labelstudio.server.username/password")
        return session

    def personal_access_token(self) -> str:
        """The admin's personal access token: created once (as in Account & Settings) and kept in data_dir."""
        stored = Path(self.data_dir) / TOKEN_FILE
        if stored.exists():
            return stored.read_text().strip()
        with self.login() as session:
            reply = session.post(f"{self.url}/api/token/", timeout=30, json={},
                                 headers={"X-CSRFToken": session.cookies.get("csrftoken", ""),
                                          "Referer": f"{self.url}/"})
        if reply.status_code == 409 or "already" in reply.text.lower():
            raise LoopError(f"the admin already has a personal access token that {stored} does not hold; "
                            f"revoke it in Label Studio (Account & Settings) and try again")
        reply.raise_for_status()
        token = reply.json()["token"]
        stored.write_text(token)
        stored.chmod(0o600)
        return token
