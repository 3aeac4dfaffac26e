"""PeeweeStore through a real PostgreSQL outage: a private cluster the test stops and restarts."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator

import peewee
import pytest

from kitsession_wsgi import SessionManager, StoreUnavailable, session_key
from kitsession_wsgi.stores.peewee import PeeweeStore
from tests.servers import free_port, service_missing, wait_for_port


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


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    try:
        server = PrivatePostgres()
    except RuntimeError as exc:
        service_missing(f"cannot create a private PostgreSQL cluster: {exc}")
    try:
        server.start()
        yield server
    finally:
        server.destroy()


@pytest.fixture
def outage_store(private_postgres: PrivatePostgres) -> Iterator[PeeweeStore]:
    database = peewee.PostgresqlDatabase(
        "postgres", host="127.0.0.1", port=private_postgres.port, user="kitsession", connect_timeout=5
    )
    store = PeeweeStore(database)
    store.create_tables()
    yield store
    database.close()


def test_outage_raises_store_unavailable_and_recovers_without_a_new_store(
    private_postgres: PrivatePostgres, outage_store: PeeweeStore
) -> None:
    manager = SessionManager(outage_store, keys=["fault-key"])
    session = manager.create_session(user_id=7, data={"cart": [1]})
    assert session.id is not None
    key = session_key(session.id)
    cookie = manager.set_session_cookie(session).split(";", 1)[0]
    assert outage_store.get(key) is not None

    private_postgres.stop()
    with pytest.raises(StoreUnavailable) as raised:
        outage_store.get(key)
    assert isinstance(raised.value.__cause__, (peewee.OperationalError, peewee.InterfaceError))
    with pytest.raises(StoreUnavailable):
        manager.initialize_session({"Cookie": cookie})
    with pytest.raises(StoreUnavailable):
        manager.create_session(user_id=8, data={"during": "outage"})

    private_postgres.start()
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
    private_postgres: PrivatePostgres, outage_store: PeeweeStore
) -> None:
    manager = SessionManager(outage_store)
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
    private_postgres.stop()
    private_postgres.start()
    barrier.wait(timeout=30)
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads), "a reader was still running after 30 s"
    assert results == {0: key, 1: key, 2: key}
