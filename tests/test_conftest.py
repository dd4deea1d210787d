"""The test session's own behaviour (tests/conftest.py): a run stopped by SIGTERM stops what it started."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

from loop.common.paths import REPO_ROOT

INNER = textwrap.dedent('''
    import os
    import sys
    import time
    from pathlib import Path

    import pytest

    from loop.clients.services import spawn, stop


    @pytest.fixture(scope="session")
    def service():
        proc = spawn([sys.executable, "-c", "import time; time.sleep(600)"])
        yield proc
        stop(proc)


    def test_runs_until_stopped(service):
        Path(os.environ["INNER_READY"]).write_text(str(service.pid))
        time.sleep(600)
''')


def test_sigterm_tears_the_session_down_and_stops_its_services(tmp_path):
    (tmp_path / "test_inner.py").write_text(INNER)
    ready = tmp_path / "pid"
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    inner = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "tests.conftest", "-p", "no:cacheprovider",
                              "-c", str(tmp_path / "pytest.ini"), "--rootdir", str(tmp_path),
                              str(tmp_path / "test_inner.py")],
                             cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "INNER_READY": str(ready)},
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while not ready.exists() or not ready.read_text():
            assert inner.poll() is None, inner.communicate()[0]
            assert time.monotonic() < deadline, "the inner session did not start its test"
            time.sleep(0.1)
        child = int(ready.read_text())
        inner.send_signal(signal.SIGTERM)
        out, _ = inner.communicate(timeout=60)
    finally:
        if inner.poll() is None:
            inner.kill()
    survived = _alive(child)
    if survived:
        os.kill(child, signal.SIGKILL)
    # the fixture's teardown stopped and reaped its service: no such process any more
    assert not survived, f"the session's service {child} outlived a SIGTERM-ed run:\n{out}"
    assert "KeyboardInterrupt" in out, out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
