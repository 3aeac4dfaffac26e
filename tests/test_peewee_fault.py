"""PeeweeStore through a real server outage: a private PostgreSQL cluster and a private MariaDB
server, each stopped at once (as a crash would) and started again by the test."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator

import peewee
import pymysql
import pytest

from kitsession_wsgi import SessionManager, StoreUnavailable, session_key
from kitsession_wsgi.stores.peewee import PeeweeStore
from servers import PrivateServer, free_port, service_missing, wait_for_port


class PrivatePostgres:
    """A throwaway PostgreSQL cluster on a free loopback port, run as the ``postgres`` OS user when root."""

    def __init__(self) -> None:
        initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
        if initdb is None or pg_ctl is None:
            service_missing("initdb/pg_ctl are not on PATH (install postgresql)")
        self.pg_ctl = pg_ctl
        self.port = free_port()
        # Not under pytest's tmp_path: that is private to root and the server runs as postgres.
        self.root = tempfile.mkdtemp(prefix="kitsession-pg-")
        self.data = os.path.join(self.root, "data")
        self.prefix: list[str] = []
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            if shutil.which("runuser") is None:
                service_missing("running as root without runuser to start PostgreSQL as 'postgres'")
            shutil.chown(self.root, "postgres", "postgres")
            self.prefix = ["runuser", "-u", "postgres", "--"]
        self._run(initdb, "-D", self.data, "-A", "trust", "-U", "kitsession", "--no-sync")

    def _run(self, *argv: str) -> None:
        result = subprocess.run([*self.prefix, *argv], capture_output=True, text=True, timeout=60, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {result.stdout}{result.stderr}")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(self.pg_ctl, "-D", self.data, "-o", options, "-l", os.path.join(self.root, "log"), "-w", "start")
        assert wait_for_port(self.port), "PostgreSQL did not listen"

    def stop(self) -> None:
        """Stop at once, as a crash or a failover would (no goodbye to clients)."""
        self._run(self.pg_ctl, "-D", self.data, "-m", "immediate", "-w", "stop")

    def destroy(self) -> None:
        if os.path.exists(os.path.join(self.data, "postmaster.pid")):
            self._run(self.pg_ctl, "-D", self.data, "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def database(self) -> peewee.Database:
        return peewee.PostgresqlDatabase("postgres", host="127.0.0.1", port=self.port, user="kitsession",
                                         connect_timeout=5)


class PrivateMariaDB:
    """A throwaway MariaDB server (``mariadb-install-db`` + ``mariadbd``) on a free loopback port,
    run as the ``mysql`` OS user when root, and stopped by its pid."""

    DATABASE = "kitsession"

    def __init__(self) -> None:
        install, mariadbd = shutil.which("mariadb-install-db"), shutil.which("mariadbd", path=_SBIN_PATH)
        if install is None or mariadbd is None:
            service_missing("mariadb-install-db/mariadbd are not installed (apt-get install -y mariadb-server)")
        self.port = free_port()
        self.root = tempfile.mkdtemp(prefix="kitsession-mariadb-")
        self.data = os.path.join(self.root, "data")
        user: list[str] = []
        if os.geteuid() == 0:  # mariadbd refuses to run as root
            shutil.chown(self.root, "mysql", "mysql")
            user = ["--user=mysql"]
        result = subprocess.run([install, "--no-defaults", f"--datadir={self.data}", *user, "--skip-test-db",
                                 "--auth-root-authentication-method=normal"],
                                capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            shutil.rmtree(self.root, ignore_errors=True)
            raise RuntimeError(f"mariadb-install-db failed: {result.stdout[-2000:]}{result.stderr[-2000:]}")
        self.argv = [mariadbd, "--no-defaults", f"--datadir={self.data}", *user, f"--port={self.port}",
                     "--bind-address=127.0.0.1", f"--socket={os.path.join(self.root, 'sock')}",
                     f"--pid-file={os.path.join(self.root, 'pid')}", f"--log-error={os.path.join(self.root, 'log')}",
                     "--skip-log-bin", "--innodb-buffer-pool-size=16M"]
        self.server: PrivateServer | None = None

    def start(self) -> None:
        self.server = PrivateServer("mariadbd", self.argv, self.port).start()
        connection = pymysql.connect(host="127.0.0.1", port=self.port, user="root", connect_timeout=10)
        try:
            with connection.cursor() as cursor:
                cursor.execute(f"CREATE DATABASE IF NOT EXISTS {self.DATABASE}")
        finally:
            connection.close()

    def stop(self) -> None:
        """Stop at once (SIGKILL), as a crash or a failover would (no goodbye to clients)."""
        assert self.server is not None
        self.server.kill()
        self.server = None

    def destroy(self) -> None:
        if self.server is not None:
            self.server.kill()
        shutil.rmtree(self.root, ignore_errors=True)

    def database(self) -> peewee.Database:
        return peewee.MySQLDatabase(self.DATABASE, host="127.0.0.1", port=self.port, user="root",
                                    connect_timeout=5)


#: mariadbd lives in sbin, which a non-root PATH may leave out
_SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])
PRIVATE_SERVERS = {"postgresql": PrivatePostgres, "mariadb": PrivateMariaDB}


@pytest.fixture(params=list(PRIVATE_SERVERS))
def private_server(request: pytest.FixtureRequest) -> Iterator[PrivatePostgres | PrivateMariaDB]:
    kind = request.param
    try:
        server = PRIVATE_SERVERS[kind]()
    except RuntimeError as exc:
        service_missing(f"cannot create a private {kind} server: {exc}")
    try:
        server.start()
        yield server
    finally:
        server.destroy()


@pytest.fixture
def outage_store(private_server: PrivatePostgres | PrivateMariaDB) -> Iterator[PeeweeStore]:
    database = private_server.database()
    store = PeeweeStore(database)
    store.create_tables()
    yield store
    database.close()


def test_outage_raises_store_unavailable_and_recovers_without_a_new_store(
    private_server: PrivatePostgres | PrivateMariaDB, outage_store: PeeweeStore
) -> None:
    manager = SessionManager(outage_store, keys=["fault-key"], outage_backoff=None)  # the store's own reconnect, not the backoff
    session = manager.create_session(user_id=7, data={"cart": [1]})
    assert session.id is not None
    key = session_key(session.id)
    cookie = manager.set_session_cookie(session).split(";", 1)[0]
    assert outage_store.get(key) is not None

    private_server.stop()
    with pytest.raises(StoreUnavailable) as raised:
        outage_store.get(key)
    assert isinstance(raised.value.__cause__, (peewee.OperationalError, peewee.InterfaceError))
    with pytest.raises(StoreUnavailable):
        manager.initialize_session({"Cookie": cookie})
    with pytest.raises(StoreUnavailable):
        manager.create_session(user_id=8, data={"during": "outage"})

    private_server.start()
    # The first call after the restart is a write on a dead connection: retried, not a 503.
    fresh = manager.create_session(user_id=9, data={"after": "restart"})
    assert fresh.id is not None and outage_store.get(session_key(fresh.id)) is not None
    got = outage_store.get(key)
    assert got is not None and got.user_id == 7
    loaded = manager.initialize_session({"Cookie": cookie})
    assert not loaded.is_new and loaded.data == {"cart": [1]}
    loaded.data["cart"].append(2)
    manager.commit(loaded)  # writes work again too
    assert manager.initialize_session({"Cookie": cookie}).data == {"cart": [1, 2]}


def test_every_thread_recovers_after_a_restart(
    private_server: PrivatePostgres | PrivateMariaDB, outage_store: PeeweeStore
) -> None:
    manager = SessionManager(outage_store, outage_backoff=None)  # the store's own reconnect, not the backoff
    session = manager.create_session(data={"n": 1})
    assert session.id is not None
    key = session_key(session.id)
    barrier = threading.Barrier(4)
    results: dict[int, object] = {}

    def reader(index: int) -> None:
        # Each thread opens its own connection before the restart ...
        assert outage_store.get(key) is not None
        barrier.wait(timeout=30)  # all connected
        barrier.wait(timeout=30)  # server restarted
        try:
            record = outage_store.get(key)  # ... and must replace it afterwards
            results[index] = record.key if record is not None else None
        except StoreUnavailable as exc:
            results[index] = exc

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    barrier.wait(timeout=30)
    private_server.stop()
    private_server.start()
    barrier.wait(timeout=30)
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads), "a reader was still running after 30 s"
    assert results == {0: key, 1: key, 2: key}
