"""The candidate set A of the tower search, shared by every trainer: an SQLite file on one machine,
or a database server (any SQLAlchemy URL; PostgreSQL is the one tested) for trainers on many.

Several trainer processes read and write it at once.  Every read-modify-write of the candidate set
(select the candidates, mutate, claim the new one) runs in one transaction that holds the store's
write lock, so two trainers never claim the same tower and no record is lost:
- SQLite: `BEGIN IMMEDIATE` takes the database's write lock at BEGIN; WAL mode lets readers run
  beside the writer; a busy store makes a writer wait (busy timeout), never fail.  WAL needs shared
  memory between the processes, so an SQLite store must not live on NFS: across machines use a URL.
- A server: the claim transaction first locks one row (`SELECT ... FOR UPDATE` on the lock row of
  tower_store_meta), which serializes claims across machines while finishes and heartbeats, each
  one row, go on beside them.

A store carries its schema version in `tower_store_meta`.  Opening a store of another version, or a
file that is not a candidate store, raises StoreError naming the store and the fix; the store is
inspected read-only first, so it is never written.  On a server database other tables may live
beside the store's two and are left alone.

Candidate status: running (claimed) -> done (trained and evaluated) | failed (error) | lost (its
trainer stopped mid-training).  A running trainer stamps its candidate's `heartbeat` every
lease/10 seconds (`keep_alive`).  Every claim first marks lost the running candidates whose trainer
is gone: a process of this host that no longer exists, or a heartbeat older than the lease (a trainer
on another machine, or a hung one).  A trainer restarting under its old id gives up its in-flight
candidate at once (`mark_lost`), unless that candidate's trainer is still alive: a second trainer
under a live trainer's id is refused.  Only that candidate is lost; a result that arrives for a candidate
already marked lost (its trainer was slow, not dead) is still recorded.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence

import sqlalchemy as sa

SCHEMA_VERSION = 2  # 2: heartbeat column, server URLs
STORE_KIND = "nasr-tower-store"
SQLITE_MAGIC = b"SQLite format 3\x00"
# Optuna (nasr.tower.tune) keeps its study in the same database; its tables are not foreign.
OPTUNA_TABLES = {"studies", "version_info", "study_directions", "study_user_attributes",
                 "study_system_attributes", "trials", "trial_user_attributes", "trial_system_attributes",
                 "trial_params", "trial_values", "trial_intermediate_values", "trial_heartbeats",
                 "alembic_version"}
BUSY_TIMEOUT_S = 120.0
LEASE_S = 300.0  # a running candidate without a heartbeat for this long is lost
STATUSES = ("running", "done", "failed", "lost")
LOCK_KEY = "lock"  # the tower_store_meta row whose row lock serializes claims on a server

log = logging.getLogger("nasr")

_metadata = sa.MetaData()
META = sa.Table("tower_store_meta", _metadata,
                sa.Column("key", sa.String(64), primary_key=True),
                sa.Column("value", sa.Text, nullable=False))
CANDIDATES = sa.Table(
    "tower_candidates", _metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("blocks", sa.Text, nullable=False),            # tower JSON list of block names
    sa.Column("parent_id", sa.Integer),                     # the tower it was mutated from (NULL: first)
    sa.Column("mutation", sa.String(16)),                   # init | grow | replace
    sa.Column("transferred", sa.Integer, nullable=False, default=0),  # blocks copied from the parent
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("trainer_id", sa.String(128), nullable=False),
    sa.Column("host", sa.String(255)),
    sa.Column("pid", sa.Integer),
    sa.Column("hparams", sa.Text),                          # JSON: lr, dropout, batch_size (+ Optuna trial)
    sa.Column("loss", sa.Float), sa.Column("acc", sa.Float),
    sa.Column("params", sa.BigInteger), sa.Column("steps", sa.Integer),
    sa.Column("curve", sa.Text),                            # JSON [[step, valid acc, valid loss], ...]
    sa.Column("checkpoint", sa.Text), sa.Column("error", sa.Text),
    sa.Column("started", sa.Float, nullable=False), sa.Column("finished", sa.Float),
    sa.Column("heartbeat", sa.Float), sa.Column("train_seconds", sa.Float),
    sa.CheckConstraint("status IN ('running', 'done', 'failed', 'lost')", name="tower_candidates_status_ck"),
    sa.Index("tower_candidates_status", "status"),
    sqlite_autoincrement=True,  # ids are never reused: checkpoints and logs name candidates by id
)
BRIEF = ("id", "blocks", "status", "trainer_id", "parent_id", "mutation", "loss", "started")


class StoreError(RuntimeError):
    """A store that cannot be used; the message names the store and the fix."""


@dataclass
class Candidate:
    id: int
    blocks: List[str]
    status: str
    trainer_id: str
    parent_id: Optional[int] = None
    mutation: Optional[str] = None
    transferred: int = 0
    host: Optional[str] = None
    pid: Optional[int] = None
    hparams: Dict = field(default_factory=dict)
    loss: Optional[float] = None
    acc: Optional[float] = None
    params: Optional[int] = None
    steps: Optional[int] = None
    curve: List = field(default_factory=list)
    checkpoint: Optional[str] = None
    error: Optional[str] = None
    started: float = 0.0
    finished: Optional[float] = None
    heartbeat: Optional[float] = None
    train_seconds: Optional[float] = None

    @classmethod
    def from_row(cls, row) -> "Candidate":
        d = dict(row._mapping)
        d["blocks"] = json.loads(d["blocks"])
        d["hparams"] = json.loads(d["hparams"]) if d.get("hparams") else {}
        d["curve"] = json.loads(d["curve"]) if d.get("curve") else []
        return cls(**d)


def is_url(location) -> bool:
    return "://" in str(location)


def _sqlite_file(url: sa.URL) -> Optional[Path]:
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database)


def _inspect_file(path: Path) -> Optional[int]:
    """Schema version of an existing SQLite store (None: a new file or an empty/Optuna-only
    database).  Opens read-only, so a foreign file is never modified."""

    if not path.exists() or path.stat().st_size == 0:
        return None
    with open(path, "rb") as f:
        head = f.read(len(SQLITE_MAGIC))
    if head != SQLITE_MAGIC:
        raise StoreError(f"{path}: not a candidate store (not an SQLite database) "
                         f"(fix: give --store a new file name; this file was left untouched)")
    con = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S)
    try:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        tables.discard("sqlite_sequence")
        if "tower_store_meta" not in tables:
            foreign = sorted(tables - OPTUNA_TABLES)
            if foreign:
                raise StoreError(f"{path}: an SQLite database but not a candidate store (tables: "
                                 f"{', '.join(foreign[:5])}) (fix: give --store a new file name; "
                                 f"this file was left untouched)")
            return None
        meta = dict(con.execute("SELECT key, value FROM tower_store_meta").fetchall())
    except sqlite3.DatabaseError as e:
        raise StoreError(f"{path}: unreadable store ({e}) (fix: give --store a new file name)") from None
    finally:
        con.close()
    return _version(meta, str(path))


def _inspect_server(engine: sa.Engine, name: str) -> Optional[int]:
    """Schema version of the store in a server database (None: no store there yet); reads only."""
    try:
        with engine.connect() as con:
            tables = set(sa.inspect(con).get_table_names())
            if "tower_store_meta" not in tables:
                if "tower_candidates" in tables:
                    raise StoreError(f"{name}: has a tower_candidates table but no tower_store_meta: not a "
                                     f"store nasr wrote (fix: use another database; it was left untouched)")
                return None
            meta = dict(con.execute(sa.select(META.c.key, META.c.value)).all())
    except sa.exc.SQLAlchemyError as e:
        raise StoreError(f"{name}: cannot read the store ({type(e).__name__}: {str(e).splitlines()[0]}) "
                         f"(fix: check the URL, that the server runs and the user may connect)") from None
    return _version(meta, name)


def _version(meta: Dict[str, str], name: str) -> int:
    if meta.get("kind") != STORE_KIND:
        raise StoreError(f"{name}: tower_store_meta does not name a {STORE_KIND} "
                         f"(fix: give --store a new file name or database)")
    try:
        return int(meta["schema_version"])
    except (KeyError, ValueError):
        raise StoreError(f"{name}: store has no valid schema_version "
                         f"(fix: give --store a new file name or database)") from None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


class CandidateStore:
    """Open (or create) the store at `location`: an SQLite file path, or a database URL
    (postgresql://user:password@host/db, sqlite:///path).  Use one instance per process."""

    def __init__(self, location, create: bool = True, lease_s: float = LEASE_S):
        self.lease_s = float(lease_s)
        self.host = socket.gethostname()
        if is_url(location):
            try:
                url = sa.make_url(str(location))
            except sa.exc.ArgumentError as e:
                raise StoreError(f"{location}: not a database URL ({e}) "
                                 f"(fix: e.g. postgresql://user:password@host/db, or an SQLite file path)") from None
        else:
            url = sa.URL.create("sqlite", database=str(Path(location).resolve()))
        self.url = url
        self.file = _sqlite_file(url)
        # What messages name: never the password.
        self.location = url.render_as_string(hide_password=True) if is_url(location) else str(location)
        if self.file is None and url.get_backend_name() == "sqlite":
            raise StoreError(f"{location}: an in-memory SQLite database is not shared between trainers "
                             f"(fix: give a file path)")
        if self.file is not None:
            version = _inspect_file(self.file)
            self.engine = self._sqlite_engine()
        else:
            try:
                self.engine = sa.create_engine(url, pool_pre_ping=True)
            except (ImportError, sa.exc.NoSuchModuleError) as e:
                raise StoreError(f"{self.location}: no database driver for '{url.drivername}' ({e}) "
                                 f"(fix: pip install 'psycopg[binary]' for postgresql://, "
                                 f"or name an installed driver, e.g. postgresql+pg8000://)") from None
            version = _inspect_server(self.engine, self.location)
        if version is not None and version != SCHEMA_VERSION:
            self.engine.dispose()
            raise StoreError(f"{self.location}: candidate store schema version {version}, this nasr reads "
                             f"version {SCHEMA_VERSION} (fix: start a new store with another --store, "
                             f"or use the nasr version that wrote it; the store was left untouched)")
        if version is None:
            if not create:
                self.engine.dispose()
                raise StoreError(f"{self.location}: no candidate store here (fix: run the tower search first)")
            self._create()

    @property
    def is_sqlite(self) -> bool:
        return self.file is not None

    def _sqlite_engine(self) -> sa.Engine:
        self.file.parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(self.url, connect_args={"timeout": BUSY_TIMEOUT_S, "check_same_thread": False})

        @sa.event.listens_for(engine, "connect")
        def _on_connect(dbapi_con, _record):
            dbapi_con.isolation_level = None  # transactions are begun below, not by the driver
            dbapi_con.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            dbapi_con.execute("PRAGMA synchronous = NORMAL")

        @sa.event.listens_for(engine, "begin")
        def _on_begin(con):
            # A write transaction takes the write lock at BEGIN: what it reads stays true until COMMIT.
            con.exec_driver_sql("BEGIN IMMEDIATE" if con.get_execution_options().get("nasr_write") else "BEGIN")

        return engine

    def _create(self) -> None:
        if self.is_sqlite:
            try:
                raw = self.engine.raw_connection()
                try:
                    raw.driver_connection.execute("PRAGMA journal_mode = WAL")  # persistent: kept in the file
                finally:
                    raw.close()
            except (sa.exc.DBAPIError, sqlite3.OperationalError) as e:
                self._raise_if_read_only(e)
                raise
        try:
            with self._write() as con:
                # Another trainer may have created it between our look and this transaction.
                if not sa.inspect(con).has_table("tower_store_meta"):
                    _metadata.create_all(con)
                    con.execute(sa.insert(META), [
                        {"key": "kind", "value": STORE_KIND}, {"key": "schema_version", "value": str(SCHEMA_VERSION)},
                        {"key": "created", "value": str(time.time())}, {"key": LOCK_KEY, "value": ""}])
        except sa.exc.DBAPIError:
            # On a server two trainers can create at once: the second's CREATE fails once the
            # first commits.  The store is there now, or the error was real.
            if _inspect_server(self.engine, self.location) != SCHEMA_VERSION:
                raise

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- transactions ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        with self.engine.connect() as con, con.begin():
            yield con

    @contextlib.contextmanager
    def _write(self, exclusive: bool = False) -> Iterator[sa.Connection]:
        """A write transaction; `exclusive`: also serialized against every other exclusive one (claims)."""
        try:
            with self.engine.connect() as con:
                con.execution_options(nasr_write=True)
                with con.begin():
                    if exclusive and not self.is_sqlite:  # SQLite's BEGIN IMMEDIATE already is
                        con.execute(sa.select(META.c.value).where(META.c.key == LOCK_KEY).with_for_update())
                    yield con
        except sa.exc.DBAPIError as e:
            self._raise_if_read_only(e)
            raise

    def _raise_if_read_only(self, e: Exception) -> None:
        """A store this process may read but not write: say so (the raw driver error does not)."""
        orig = getattr(e, "orig", e)
        text = str(orig).lower()
        if "readonly" in text or "read-only" in text or "permission denied" in text:
            where = (f"the file {self.file} (and its directory {self.file.parent}, where SQLite keeps its "
                     f"-wal and -shm files)" if self.is_sqlite else "the database")
            raise StoreError(f"{self.location}: the candidate store is read-only ({str(orig).splitlines()[0]}) "
                             f"(fix: make {where} writable for this user, or search in a new --store; "
                             f"reading steps such as tower_ensemble only need read access)") from None

    @contextlib.contextmanager
    def setup_lock(self) -> Iterator[None]:
        """Held while another library (Optuna) creates its tables in this database, so trainers
        starting together do not race ("table studies already exists").  An SQLite file is locked
        with a lock file beside it (the library writes the file itself: a transaction of ours would
        block it); a server with the lock row."""
        if self.is_sqlite:
            with open(f"{self.file}.setup.lock", "a") as f:
                fcntl.flock(f, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(f, fcntl.LOCK_UN)
        else:
            with self._write(exclusive=True):
                yield

    def url_for_libraries(self) -> str:
        """The full URL (password included) for libraries that open the same database (Optuna)."""
        return self.url.render_as_string(hide_password=False)

    def has_table(self, name: str) -> bool:
        with self._read() as con:
            return sa.inspect(con).has_table(name)

    # --- reads -----------------------------------------------------------------------------------
    def candidates(self, status: Optional[Sequence[str]] = None, con: Optional[sa.Connection] = None,
                   brief: bool = False) -> List[Candidate]:
        """`brief`: only what selection and mutation read (no curves or hyperparameters), which
        keeps a claim's transaction short when the store holds thousands of candidates."""
        cols = [CANDIDATES.c[k] for k in BRIEF] if brief else [CANDIDATES]
        q = sa.select(*cols).order_by(CANDIDATES.c.id)
        if status:
            q = q.where(CANDIDATES.c.status.in_(list(status)))
        if con is not None:
            return [Candidate.from_row(r) for r in con.execute(q)]
        with self._read() as con:
            return [Candidate.from_row(r) for r in con.execute(q)]

    def get(self, cand_id: int) -> Candidate:
        with self._read() as con:
            row = con.execute(sa.select(CANDIDATES).where(CANDIDATES.c.id == int(cand_id))).first()
        if row is None:
            raise StoreError(f"{self.location}: no candidate {cand_id}")
        return Candidate.from_row(row)

    def best(self, n: int = 1) -> List[Candidate]:
        """The n evaluated candidates of lowest validation loss (ties: the earlier one)."""
        c = CANDIDATES.c
        q = (sa.select(CANDIDATES).where(c.status == "done", c.loss.is_not(None))
             .order_by(c.loss, c.id).limit(int(n)))
        with self._read() as con:
            return [Candidate.from_row(r) for r in con.execute(q)]

    def counts(self) -> Dict[str, int]:
        c = CANDIDATES.c
        with self._read() as con:
            return {s: int(k) for s, k in con.execute(sa.select(c.status, sa.func.count()).group_by(c.status))}

    # --- writes ----------------------------------------------------------------------------------
    def claim(self, propose: Callable[[List[Candidate], List[Candidate]], Optional[Dict]], trainer_id: str,
              max_candidates: Optional[int] = None) -> Optional[Candidate]:
        """Algorithm 1, lines 3-4, atomically: `propose(done, running)` sees the evaluated candidates
        and the ones other trainers are training, and returns the new candidate's fields
        (blocks, parent_id, mutation, transferred, hparams) or None; it is inserted as `running`.
        None when the budget of `max_candidates` claimed (running, done or failed) is spent: failed
        candidates count, or a setup where every candidate fails would search forever."""
        c = CANDIDATES.c
        with self._write(exclusive=True) as con:
            now = time.time()
            self._mark_abandoned(con, now)
            if max_candidates is not None:
                used = con.execute(sa.select(sa.func.count()).select_from(CANDIDATES)
                                   .where(c.status.in_(["running", "done", "failed"]))).scalar_one()
                if used >= max_candidates:
                    return None
            # One statement: on a server each statement reads its own snapshot, and a candidate
            # finishing between two (running -> done) would be in neither list (seen in the test).
            both = self.candidates(("done", "running"), con, brief=True)
            done = [c for c in both if c.status == "done"]
            running = [c for c in both if c.status == "running"]
            fields = propose(done, running)
            if fields is None:
                return None
            res = con.execute(sa.insert(CANDIDATES).values(
                blocks=json.dumps(list(fields["blocks"])), parent_id=fields.get("parent_id"),
                mutation=fields.get("mutation"), transferred=int(fields.get("transferred", 0)), status="running",
                trainer_id=str(trainer_id), host=self.host, pid=os.getpid(),
                hparams=json.dumps(fields.get("hparams", {})), started=now, heartbeat=now))
            row = con.execute(sa.select(CANDIDATES).where(c.id == res.inserted_primary_key[0])).one()
        return Candidate.from_row(row)

    def _mark_abandoned(self, con: sa.Connection, now: float) -> int:
        """Running candidates whose trainer is gone -> lost (see the module doc)."""
        c = CANDIDATES.c
        gone = []
        for r in con.execute(sa.select(c.id, c.host, c.pid, c.heartbeat, c.started).where(c.status == "running")):
            stale = now - (r.heartbeat or r.started) > self.lease_s
            dead_here = r.host == self.host and r.pid is not None and r.pid != os.getpid() and not _pid_alive(r.pid)
            if stale or dead_here:
                gone.append(r.id)
        if gone:
            con.execute(sa.update(CANDIDATES).where(c.id.in_(gone), c.status == "running").values(
                status="lost", finished=now,
                error=f"trainer gone (process ended, or no heartbeat for {self.lease_s:.0f} s)"))
            log.warning("store: candidate(s) %s marked lost: their trainer is gone", gone)
        return len(gone)

    def check_writable(self) -> None:
        """Raise StoreError now, before any other library writes the database, if this process
        cannot write the store (a read-only file, directory or database user)."""
        with self._write() as con:
            con.execute(sa.update(META).where(META.c.key == LOCK_KEY).values(value=META.c.value))

    def heartbeat(self, cand_id: int) -> None:
        with self._write() as con:
            con.execute(sa.update(CANDIDATES).where(CANDIDATES.c.id == int(cand_id)).values(heartbeat=time.time()))

    @contextlib.contextmanager
    def keep_alive(self, cand_id: int) -> Iterator[None]:
        """Stamp the candidate's heartbeat every lease/10 seconds from a background thread while
        the block runs, so trainers on other machines know it is still being trained."""
        stop = threading.Event()

        def beat():
            while not stop.wait(self.lease_s / 10):
                try:
                    self.heartbeat(cand_id)
                except Exception as e:  # noqa: BLE001  (a busy or unreachable store: try again next time)
                    log.warning("store: heartbeat of candidate %d failed: %s", cand_id, e)

        thread = threading.Thread(target=beat, name=f"heartbeat-{cand_id}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def update_hparams(self, cand_id: int, hparams: Dict) -> None:
        with self._write() as con:
            con.execute(sa.update(CANDIDATES).where(CANDIDATES.c.id == int(cand_id))
                        .values(hparams=json.dumps(hparams)))

    def finish(self, cand_id: int, *, loss: float, acc: float, params: int, steps: int, curve: List,
               checkpoint: Optional[str], train_seconds: float, transferred: Optional[int] = None) -> None:
        """Record the result.  A candidate already marked lost (its trainer was slow, not gone)
        still gets it: the training did finish."""
        c = CANDIDATES.c
        values = dict(status="done", loss=float(loss), acc=float(acc), params=int(params), steps=int(steps),
                      curve=json.dumps(curve), checkpoint=checkpoint, finished=time.time(),
                      train_seconds=float(train_seconds), error=None)
        if transferred is not None:
            values["transferred"] = int(transferred)
        with self._write() as con:
            con.execute(sa.update(CANDIDATES).where(c.id == int(cand_id), c.status.in_(["running", "lost"]))
                        .values(**values))

    def fail(self, cand_id: int, error: str) -> None:
        with self._write() as con:
            con.execute(sa.update(CANDIDATES).where(CANDIDATES.c.id == int(cand_id))
                        .values(status="failed", error=error[-2000:], finished=time.time()))

    def mark_lost(self, trainer_id: str) -> int:
        """A trainer starting again under `trainer_id` gives up what it was training when it died.
        Refused (StoreError) while that candidate's trainer is alive: its process runs on this host,
        or its heartbeat is fresh; then a second trainer was started under the same id."""
        c = CANDIDATES.c
        with self._write(exclusive=True) as con:
            now = time.time()
            for r in con.execute(sa.select(c.id, c.host, c.pid, c.heartbeat, c.started)
                                 .where(c.status == "running", c.trainer_id == str(trainer_id))):
                if r.host == self.host:
                    alive = r.pid is not None and r.pid != os.getpid() and _pid_alive(r.pid)
                else:
                    alive = now - (r.heartbeat or r.started) <= self.lease_s
                if alive:
                    raise StoreError(
                        f"{self.location}: trainer id '{trainer_id}' is in use: candidate {r.id} is being trained "
                        f"by pid {r.pid} on host {r.host} (fix: give this trainer another --trainer-id, or stop "
                        f"that one first)")
            return con.execute(sa.update(CANDIDATES).where(c.status == "running", c.trainer_id == str(trainer_id))
                               .values(status="lost", finished=time.time(),
                                       error="trainer restarted")).rowcount
