"""The test session's own behaviour (tests/conftest.py): a run stopped by SIGTERM stops what it started."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

from loop.common.paths import REPO_ROOT

INNER = textwrap.dedent('''
    import os
    import signal
    import sys

    import pytest

    from loop.clients.services import spawn, stop


    @pytest.fixture(scope="session")
    def service():
        proc = spawn([sys.executable, "-c", "import signal; signal.pause()"])  # until it is stopped
        yield proc
        stop(proc)


    def test_runs_until_stopped(service):
        with os.fdopen(int(os.environ["INNER_READY_FD"]), "w") as ready:
            ready.write(f"{service.pid}\\n")
        signal.pause()  # until the outer test's SIGTERM
''')


def test_sigterm_tears_the_session_down_and_stops_its_services(tmp_path):
    (tmp_path / "test_inner.py").write_text(INNER)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    # the inner test writes its service's pid here once it runs; the pipe closes unwritten if the run ends first
    read_end, write_end = os.pipe()
    inner = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "tests.conftest", "-p", "no:cacheprovider",
                              "-c", str(tmp_path / "pytest.ini"), "--rootdir", str(tmp_path),
                              str(tmp_path / "test_inner.py")],
                             cwd=REPO_ROOT, pass_fds=(write_end,),
                             env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "INNER_READY_FD": str(write_end)},
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    os.close(write_end)
    try:
        with os.fdopen(read_end) as ready:
            pid = ready.readline()
        assert pid, inner.communicate()[0]
        child = int(pid)
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
