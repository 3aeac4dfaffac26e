"""Real servers for the tests: addresses from the environment, private instances by pid.

Every test that needs a server goes through :func:`service_missing`: locally an
absent server skips the test with the reason; with ``KITSESSION_REQUIRE_SERVICES=1``
(CI sets it) it fails the test instead, so CI can never pass by running nothing.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from typing import NoReturn

import pytest

REQUIRE_SERVICES = os.environ.get("KITSESSION_REQUIRE_SERVICES") == "1"

POSTGRES_URL = os.environ.get("KITSESSION_POSTGRES_URL", "postgresql://root@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("KITSESSION_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")
#: an external memcached / Redis to use instead of starting private ones (optional)
MEMCACHED_SERVERS = os.environ.get("KITSESSION_MEMCACHED_SERVERS", "")
REDIS_URL = os.environ.get("KITSESSION_REDIS_URL", "")


def service_missing(reason: str) -> NoReturn:
    """Skip (locally) or fail (with KITSESSION_REQUIRE_SERVICES=1) for a missing server."""
    if REQUIRE_SERVICES:
        pytest.fail(f"required service missing: {reason}", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


class PrivateServer:
    """A server process started on a free loopback port and stopped by its pid."""

    def __init__(self, name: str, argv: Sequence[str], port: int) -> None:
        self.name = name
        self.argv = list(argv)
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> PrivateServer:
        self.process = subprocess.Popen(
            self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        if not wait_for_port(self.port):
            self.stop()
            raise RuntimeError(f"{self.name} did not listen on 127.0.0.1:{self.port}")
        return self

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self.process = None

    def kill(self) -> None:
        """Stop abruptly (SIGKILL), as a crashed server would."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


def start_memcached(port: int | None = None) -> PrivateServer:
    binary = shutil.which("memcached")
    if binary is None:
        service_missing("memcached is not installed (apt-get install -y memcached)")
    port = port or free_port()
    argv = [binary, "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-m", "64", "-t", "2"]
    if os.geteuid() == 0:
        argv += ["-u", "root"]
    return PrivateServer("memcached", argv, port).start()


def start_redis(port: int | None = None) -> PrivateServer:
    binary = shutil.which("redis-server")
    if binary is None:
        service_missing("redis-server is not installed (apt-get install -y redis-server)")
    port = port or free_port()
    workdir = tempfile.mkdtemp(prefix="kitsession-redis-")
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", workdir, "--daemonize", "no"]
    return PrivateServer("redis", argv, port).start()
