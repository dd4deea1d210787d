"""A throwaway PostgreSQL server from the Debian package (scripts/setup.sh installs it where missing): its own
data folder, a free loopback port, a password user, the databases asked for; stopped and removed on exit."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from loop.clients.ls_server import free_port

USER = "labelloop"


def server_binaries() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if not found:
        raise RuntimeError("PostgreSQL is not installed: run `make setup` (it installs the Debian package "
                           "postgresql), or apt-get install postgresql")
    return Path(found[-1]).parent


class Postgres:
    """`with Postgres(["labelstudio", "mlflow"], password) as pg:` -> pg.port; PGPASSWORD for clients."""

    def __init__(self, databases: list[str], password: str):
        self.databases, self.password = databases, password
        self.bin = server_binaries()
        self.port = free_port()
        # PostgreSQL refuses to run as root: as root, the server runs as the package's `postgres` user
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.root = Path(tempfile.mkdtemp(prefix="labelloop-pg-"))

    def _run(self, *cmd: str) -> None:
        result = subprocess.run([*self.as_user, *cmd], capture_output=True, text=True,
                                env={**os.environ, "PGPASSWORD": self.password})
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {result.stdout[-800:]} {result.stderr[-800:]}")

    def __enter__(self) -> "Postgres":
        data, secret = self.root / "data", self.root / "pwfile"
        secret.write_text(self.password)
        if self.as_user:
            owner = pwd.getpwnam("postgres")
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
            os.chown(secret, owner.pw_uid, owner.pw_gid)
        secret.chmod(0o600)
        self._run(str(self.bin / "initdb"), "-D", str(data), "-U", USER, "--auth=scram-sha-256",
                  f"--pwfile={secret}", "-E", "UTF8")
        self._run(str(self.bin / "pg_ctl"), "-D", str(data), "-l", str(self.root / "server.log"), "-w", "-o",
                  f"-p {self.port} -k {self.root} -h 127.0.0.1", "start")
        for name in self.databases:
            self._run(str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, name)
        return self

    def query(self, database: str, sql: str) -> str:
        """One value, as psql prints it."""
        result = subprocess.run([str(self.bin / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, "-d",
                                 database, "-tAc", sql], capture_output=True, text=True,
                                env={**os.environ, "PGPASSWORD": self.password}, check=True)
        return result.stdout.strip()

    def __exit__(self, *exc) -> None:
        try:
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.root / "data"), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
