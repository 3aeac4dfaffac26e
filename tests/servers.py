"""Real servers for the tests: addresses from the environment, private instances by pid.

Every test that needs a server goes through :func:`service_missing`: locally an
absent server skips the test with the reason; with ``KITSESSION_REQUIRE_SERVICES=1``
(CI sets it) it fails the test instead, so CI can never pass by running nothing.
"""

from __future__ import annotations

import atexit
import os
import random
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


def private_workdir(prefix: str) -> str:
    """A temporary directory for a private server, removed when the test session ends
    (not when the server stops: a fault test restarts it on the same directory)."""
    workdir = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, workdir, ignore_errors=True)
    return workdir


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
    workdir = private_workdir("kitsession-redis-")
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", workdir, "--daemonize", "no"]
    return PrivateServer("redis", argv, port).start()


class PrivateRedisCluster:
    """A Redis Cluster this test session started: its nodes, each a :class:`PrivateServer`."""

    def __init__(self, nodes: list[PrivateServer]) -> None:
        self.nodes = nodes

    @property
    def startup_nodes(self) -> str:
        """``host:port,host:port,...`` of every node, as a ``redis+cluster://`` URL takes them."""
        return ",".join(node.address for node in self.nodes)

    def node_by_port(self, port: int) -> PrivateServer:
        return next(node for node in self.nodes if node.port == port)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def free_cluster_port() -> int:
    """A free port whose cluster bus port (``port + 10000``) is free and valid too."""
    for _ in range(200):
        port = random.randrange(20000, 55000)
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as first, \
                    socket.socket(socket.AF_INET, socket.SOCK_STREAM) as bus:
                first.bind(("127.0.0.1", port))
                bus.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a Redis cluster node")


def _redis_cli(*args: str, timeout: float = 60.0) -> str:
    binary = shutil.which("redis-cli")
    if binary is None:
        service_missing("redis-cli is not installed (apt-get install -y redis-tools)")
    done = subprocess.run([binary, *args], capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"redis-cli {' '.join(args)} failed: {done.stdout}{done.stderr}")
    return done.stdout


def _cluster_state_ok(port: int) -> bool:
    try:
        return "cluster_state:ok" in _redis_cli("-h", "127.0.0.1", "-p", str(port), "cluster", "info", timeout=5)
    except (RuntimeError, subprocess.TimeoutExpired):
        return False  # a node still starting or a cluster still forming


def wait_for_cluster_ok(ports: Sequence[int], timeout: float = 30.0) -> None:
    """Poll ``CLUSTER INFO`` on every port until each says ``cluster_state:ok``."""
    deadline = time.monotonic() + timeout
    for port in ports:
        while not _cluster_state_ok(port):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Redis cluster did not reach cluster_state:ok in {timeout:.0f}s")
            time.sleep(0.1)


def start_redis_cluster(masters: int = 3, replicas_per_master: int = 1, *,
                        require_full_coverage: bool = True) -> PrivateRedisCluster:
    """A Redis Cluster of ``masters`` masters, each with ``replicas_per_master`` replicas, on free ports.

    Formed with ``redis-cli --cluster create``; every node runs in its own temporary
    directory without persistence and is stopped by its pid (:meth:`PrivateRedisCluster.stop`).
    ``cluster-node-timeout 2000`` makes a killed master fail over in a few seconds;
    ``repl-diskless-sync-delay 0`` makes replicas sync at once.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        service_missing("redis-server is not installed (apt-get install -y redis-server)")
    if shutil.which("redis-cli") is None:
        service_missing("redis-cli is not installed (apt-get install -y redis-tools)")
    nodes: list[PrivateServer] = []
    try:
        for _ in range(masters * (1 + replicas_per_master)):
            port = free_cluster_port()
            workdir = private_workdir("kitsession-redis-cluster-")
            argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                    "--dir", workdir, "--daemonize", "no", "--cluster-enabled", "yes",
                    "--cluster-config-file", os.path.join(workdir, "nodes.conf"),
                    "--cluster-node-timeout", "2000", "--repl-diskless-sync-delay", "0",
                    "--cluster-require-full-coverage", "yes" if require_full_coverage else "no"]
            nodes.append(PrivateServer("redis-cluster-node", argv, port).start())
        _redis_cli("--cluster", "create", *(node.address for node in nodes),
                   "--cluster-replicas", str(replicas_per_master), "--cluster-yes")
        wait_for_cluster_ok([node.port for node in nodes])
    except BaseException:
        for node in nodes:
            node.stop()
        raise
    return PrivateRedisCluster(nodes)
