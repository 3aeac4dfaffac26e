"""Several worker processes: the MemoryStore warning, and a shared store that keeps users signed in.

gunicorn with two real worker processes (issue 23's first item): the default
MemoryStore signed users out without a word; now each worker logs one warning
that says what, why and the fix, and a SQLite file shared by both workers keeps
every request signed in.  In-process tests hold the same rule for both adapters
(``wsgi.multiprocess`` in the environ) and for a forked child.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from flask import Flask, session

from kitsession_wsgi import MemoryStore, SessionManager, _process_local
from kitsession_wsgi.flask import KitSession
from kitsession_wsgi.wsgi import SessionMiddleware

HERE = Path(__file__).resolve().parent
FIX = 'KITSESSION_STORE="sqlite:///sessions.db"'


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_gunicorn(tmp_path: Path, env_extra: dict[str, str]) -> tuple[subprocess.Popen[bytes], str, Path]:
    gunicorn = Path(sys.executable).with_name("gunicorn")
    if not gunicorn.exists() and shutil.which("gunicorn") is None:
        pytest.skip("gunicorn is not installed (pip install -e '.[dev]')")
    port = free_port()
    log = tmp_path / "gunicorn.log"
    env = {**os.environ, "PYTHONPATH": f"{HERE}{os.pathsep}{HERE.parent}", **env_extra}
    env.pop("KITSESSION_STORE", None) if "KITSESSION_STORE" not in env_extra else None
    process = subprocess.Popen(
        [str(gunicorn), "-w", "2", "-b", f"127.0.0.1:{port}", "--error-logfile", str(log),
         "--capture-output", "worker_app:app"],
        env=env, cwd=str(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        booted = len(re.findall(r"Booting worker", log.read_text() if log.exists() else ""))
        try:
            requests.get(f"{base}/me", timeout=2)
            if booted >= 2:
                return process, base, log
        except requests.ConnectionError:
            pass
        if process.poll() is not None:
            raise AssertionError(f"gunicorn exited: {log.read_text() if log.exists() else ''}")
        time.sleep(0.1)
    process.kill()
    raise AssertionError("gunicorn did not start two workers")


@pytest.fixture
def stop_processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def sign_in_and_ask(base: str, times: int) -> tuple[int, set[int]]:
    """Sign in once, then ask ``times`` times on fresh connections: (signed-in answers, pids seen)."""
    client = requests.Session()
    assert client.post(f"{base}/login", timeout=5).status_code == 200
    signed_in, pids = 0, set()
    for _ in range(times):
        client.close()  # a new connection each time, so both workers take requests
        answer = client.get(f"{base}/me", timeout=5).json()
        pids.add(answer["pid"])
        signed_in += answer["user"] == "alice"
    return signed_in, pids


def test_gunicorn_two_workers_with_a_memory_store_warn_once_each_with_the_fix(
        tmp_path: Path, stop_processes: list[subprocess.Popen[bytes]]) -> None:
    process, base, log = start_gunicorn(tmp_path, {})
    stop_processes.append(process)
    pids: set[int] = set()
    for _ in range(40):  # until both workers served (the kernel spreads new connections)
        pids |= sign_in_and_ask(base, 20)[1]
        if len(pids) == 2:
            break
    assert len(pids) == 2, "both workers should have answered"
    text = log.read_text()
    warnings = [line for line in text.splitlines() if "sessions are kept in a MemoryStore" in line]
    warned_pids = sorted(int(re.search(r"memory of process (\d+)", line).group(1)) for line in warnings)  # type: ignore[union-attr]
    assert warned_pids == sorted(pids)  # once per worker, not once per request
    assert all("wsgi.multiprocess is True" in line and FIX in line for line in warnings)


def test_gunicorn_two_workers_with_a_sqlite_file_keep_20_of_20_signed_in(
        tmp_path: Path, stop_processes: list[subprocess.Popen[bytes]]) -> None:
    url = f"sqlite:///{tmp_path / 'sessions.db'}"
    process, base, log = start_gunicorn(tmp_path, {"KITSESSION_STORE": url})
    stop_processes.append(process)
    pids: set[int] = set()
    rounds = []
    for _ in range(40):  # until both workers served (under load one worker can win every accept)
        signed_in, seen = sign_in_and_ask(base, 20)
        rounds.append(signed_in)
        pids |= seen
        if len(pids) == 2:
            break
    assert len(pids) == 2, "both workers should have answered"
    assert set(rounds) == {20}  # 20 of 20 signed in, every round
    assert "MemoryStore" not in log.read_text()


@pytest.fixture
def warning_due() -> Iterator[None]:
    saved = _process_local.due
    _process_local.due = True
    yield
    _process_local.due = saved


def memory_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "sessions are kept in a MemoryStore" in r.getMessage()]


def test_flask_warns_once_when_the_environ_says_multiprocess(warning_due: None,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="k")
    KitSession(app)

    @app.get("/")
    def index() -> str:
        return str(session.get("n", 0))

    client = app.test_client()
    with caplog.at_level(logging.WARNING, logger="kitsession_wsgi"):
        client.get("/")  # single process: nothing to say
        assert memory_warnings(caplog) == []
        for _ in range(3):
            client.get("/", environ_overrides={"wsgi.multiprocess": True})
    messages = memory_warnings(caplog)
    assert len(messages) == 1 and FIX in messages[0] and "wsgi.multiprocess is True" in messages[0]


def test_wsgi_middleware_warns_once_when_the_environ_says_multiprocess(warning_due: None,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    from werkzeug.test import Client

    def app(environ, start_response):  # type: ignore[no-untyped-def]
        environ["kitsession"].session.data = {"n": 1}
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    client = Client(SessionMiddleware(app, SessionManager(MemoryStore(), secure=False)))
    with caplog.at_level(logging.WARNING, logger="kitsession_wsgi"):
        for _ in range(3):
            client.get("/", environ_overrides={"wsgi.multiprocess": True})
    assert len(memory_warnings(caplog)) == 1


def test_a_shared_store_under_multiprocess_says_nothing(warning_due: None, tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="k", KITSESSION_STORE=f"sqlite:///{tmp_path / 's.db'}")
    KitSession(app)
    app.get("/")(lambda: "ok")
    with caplog.at_level(logging.WARNING, logger="kitsession_wsgi"):
        app.test_client().get("/", environ_overrides={"wsgi.multiprocess": True})
    assert memory_warnings(caplog) == []


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_child_serving_its_parents_memory_store_warns(tmp_path: Path) -> None:
    """gunicorn --preload, multiprocessing: the store was built before the fork."""
    out = tmp_path / "child.txt"
    code = f"""
import logging, os, sys
from werkzeug.test import Client
from kitsession_wsgi import MemoryStore, SessionManager
from kitsession_wsgi.wsgi import SessionMiddleware
def app(environ, start_response):
    start_response("200 OK", [])
    return [b"ok"]
client = Client(SessionMiddleware(app, SessionManager(MemoryStore(), secure=False)))
client.get("/")  # the parent: one process, nothing to say
pid = os.fork()
if pid == 0:
    handler = logging.FileHandler({str(out)!r})
    logging.getLogger("kitsession_wsgi").addHandler(handler)
    client.get("/")
    client.get("/")
    handler.close()
    os._exit(0)
os.waitpid(pid, 0)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "MemoryStore" not in result.stderr  # the parent never warned
    lines = [line for line in out.read_text().splitlines() if "MemoryStore" in line]
    assert len(lines) == 1 and "was forked from process" in lines[0] and FIX in lines[0]
