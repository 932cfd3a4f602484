"""The candidate set A of the tower search, shared by every trainer: one SQLite file.

Several trainer processes read and write it at once.  SQLite in WAL mode lets readers run beside one
writer, and every read-modify-write (select the candidates, mutate, claim the new one) runs inside
one `BEGIN IMMEDIATE` transaction, so two trainers never claim the same tower and no record is lost;
a busy store makes a writer wait (busy timeout), never fail.

Scope: SQLite serves one machine (or a local disk).  WAL needs shared memory between the processes,
so a store on NFS across machines is not safe; a database-server URL is not supported by this store
(Optuna's tuning tables, which live in the same file, would accept one).

A store file carries its schema version in `tower_store_meta`.  Opening a file of another version,
or a file that is not a candidate store, raises StoreError naming the file and the fix, and the file
is inspected read-only first so it is never written.

Candidate status: running (claimed by a trainer) -> done (trained and evaluated) | failed (error);
`lost` marks a candidate whose trainer was killed mid-training (set when a trainer with the same id
starts again); only that candidate is lost.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence

SCHEMA_VERSION = 1
STORE_KIND = "nasr-tower-store"
SQLITE_MAGIC = b"SQLite format 3\x00"
# Optuna (nasr.tower.tune) keeps its study in the same file; its tables are not foreign.
OPTUNA_TABLES = {"studies", "version_info", "study_directions", "study_user_attributes",
                 "study_system_attributes", "trials", "trial_user_attributes", "trial_system_attributes",
                 "trial_params", "trial_values", "trial_intermediate_values", "trial_heartbeats",
                 "alembic_version"}
BUSY_TIMEOUT_S = 120.0

_SCHEMA = """
CREATE TABLE tower_store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE tower_candidates (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  blocks TEXT NOT NULL,              -- tower JSON list of block names
  parent_id INTEGER,                 -- the tower a it was mutated from (NULL: first tower)
  mutation TEXT,                     -- grow | replace | init
  transferred INTEGER NOT NULL DEFAULT 0,  -- blocks whose weights came from the parent
  status TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed', 'lost')),
  trainer_id TEXT NOT NULL,
  host TEXT, pid INTEGER,
  hparams TEXT,                      -- JSON: lr, dropout, batch_size (and the Optuna trial number)
  loss REAL, acc REAL, params INTEGER, steps INTEGER,
  curve TEXT,                        -- JSON [[step, valid acc, valid loss], ...]
  checkpoint TEXT, error TEXT,
  started REAL NOT NULL, finished REAL, train_seconds REAL
);
CREATE INDEX tower_candidates_status ON tower_candidates(status);
"""


class StoreError(RuntimeError):
    """A store file that cannot be used; the message names the file and the fix."""


@dataclass
class Candidate:
    id: int
    blocks: List[str]
    status: str
    trainer_id: str
    parent_id: Optional[int] = None
    mutation: Optional[str] = None
    transferred: int = 0
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
    train_seconds: Optional[float] = None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> "Candidate":
        d = dict(row)
        d["blocks"] = json.loads(d["blocks"])
        d["hparams"] = json.loads(d["hparams"]) if d.get("hparams") else {}
        d["curve"] = json.loads(d["curve"]) if d.get("curve") else []
        d.pop("host", None), d.pop("pid", None)
        return cls(**d)


def _inspect(path: Path) -> Optional[int]:
    """Schema version of an existing store (None: a new file or an empty/Optuna-only database).
    Opens read-only, so a foreign file is never modified."""
    if not path.exists() or path.stat().st_size == 0:
        return None
    with open(path, "rb") as f:
        head = f.read(len(SQLITE_MAGIC))
    if head != SQLITE_MAGIC:
        raise StoreError(f"{path}: not a candidate store (not an SQLite database) "
                         f"(fix: give --store a new file name; this file was left untouched)")
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S)
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
    if meta.get("kind") != STORE_KIND:
        raise StoreError(f"{path}: tower_store_meta does not name a {STORE_KIND} "
                         f"(fix: give --store a new file name)")
    try:
        return int(meta["schema_version"])
    except (KeyError, ValueError):
        raise StoreError(f"{path}: store has no valid schema_version (fix: give --store a new file name)") from None


class CandidateStore:
    """Open (or create) the store at `path`.  Use one instance per process."""

    def __init__(self, path, create: bool = True):
        self.path = Path(path)
        version = _inspect(self.path)
        if version is not None and version != SCHEMA_VERSION:
            raise StoreError(f"{self.path}: candidate store schema version {version}, this nasr reads "
                             f"version {SCHEMA_VERSION} (fix: start a new store with another --store path, "
                             f"or use the nasr version that wrote it; the file was left untouched)")
        if version is None and not create:
            raise StoreError(f"{self.path}: no candidate store here (fix: run the tower search first)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.con = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_S, isolation_level=None)
        self.con.row_factory = sqlite3.Row
        self.con.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        if version is None:
            self._create()
        self.con.execute("PRAGMA synchronous = NORMAL")

    def _create(self) -> None:
        self.con.execute("PRAGMA journal_mode = WAL")  # persistent: stored in the file
        with self.transaction() as con:
            # Another trainer may have created it between our check and this transaction.
            exists = con.execute("SELECT 1 FROM sqlite_master WHERE name='tower_store_meta'").fetchone()
            if not exists:
                for stmt in _SCHEMA.strip().split(";"):
                    if stmt.strip():
                        con.execute(stmt)
                con.executemany("INSERT INTO tower_store_meta VALUES (?, ?)",
                                [("kind", STORE_KIND), ("schema_version", str(SCHEMA_VERSION)),
                                 ("created", str(time.time()))])

    def close(self) -> None:
        self.con.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: the write lock is taken at BEGIN, so what is read inside stays true
        until COMMIT (no other trainer can claim in between)."""
        self.con.execute("BEGIN IMMEDIATE")
        try:
            yield self.con
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        self.con.execute("COMMIT")

    # --- reads ---------------------------------------------------------------------------------
    def candidates(self, status: Optional[Sequence[str]] = None, con=None, brief: bool = False) -> List[Candidate]:
        """`brief`: only what selection and mutation read (no curves or hyperparameters), which
        keeps a claim's transaction short when the store holds thousands of candidates."""
        con = con or self.con
        cols = "id, blocks, status, trainer_id, parent_id, mutation, loss, started" if brief else "*"
        if status:
            q = f"SELECT {cols} FROM tower_candidates WHERE status IN ({','.join('?' * len(status))}) ORDER BY id"
            rows = con.execute(q, tuple(status)).fetchall()
        else:
            rows = con.execute(f"SELECT {cols} FROM tower_candidates ORDER BY id").fetchall()
        return [Candidate.from_row(r) for r in rows]

    def get(self, cand_id: int) -> Candidate:
        row = self.con.execute("SELECT * FROM tower_candidates WHERE id=?", (cand_id,)).fetchone()
        if row is None:
            raise StoreError(f"{self.path}: no candidate {cand_id}")
        return Candidate.from_row(row)

    def best(self, n: int = 1) -> List[Candidate]:
        """The n evaluated candidates of lowest validation loss (ties: the earlier one)."""
        rows = self.con.execute("SELECT * FROM tower_candidates WHERE status='done' AND loss IS NOT NULL "
                                "ORDER BY loss, id LIMIT ?", (n,)).fetchall()
        return [Candidate.from_row(r) for r in rows]

    def counts(self) -> Dict[str, int]:
        return {r[0]: r[1] for r in self.con.execute(
            "SELECT status, COUNT(*) FROM tower_candidates GROUP BY status")}

    # --- writes --------------------------------------------------------------------------------
    def claim(self, propose: Callable[[List[Candidate], List[Candidate]], Optional[Dict]], trainer_id: str,
              max_candidates: Optional[int] = None) -> Optional[Candidate]:
        """Algorithm 1, lines 3-4, atomically: `propose(done, running)` sees the evaluated candidates
        and the ones other trainers are training, and returns the new candidate's fields
        (blocks, parent_id, mutation, transferred, hparams) or None; it is inserted as `running`.
        None when the budget of `max_candidates` claimed (running, done or failed) is spent: failed
        candidates count, or a setup where every candidate fails would search forever."""
        with self.transaction() as con:
            if max_candidates is not None:
                used = con.execute("SELECT COUNT(*) FROM tower_candidates "
                                   "WHERE status IN ('running', 'done', 'failed')").fetchone()[0]
                if used >= max_candidates:
                    return None
            done = self.candidates(("done",), con, brief=True)
            running = self.candidates(("running",), con, brief=True)
            fields = propose(done, running)
            if fields is None:
                return None
            cur = con.execute(
                "INSERT INTO tower_candidates (blocks, parent_id, mutation, transferred, status, trainer_id, "
                "host, pid, hparams, started) VALUES (?, ?, ?, ?, 'running', ?, ?, ?, ?, ?)",
                (json.dumps(list(fields["blocks"])), fields.get("parent_id"), fields.get("mutation"),
                 int(fields.get("transferred", 0)), trainer_id, socket.gethostname(), os.getpid(),
                 json.dumps(fields.get("hparams", {})), time.time()))
            row = con.execute("SELECT * FROM tower_candidates WHERE id=?", (cur.lastrowid,)).fetchone()
        return Candidate.from_row(row)

    def update_hparams(self, cand_id: int, hparams: Dict) -> None:
        with self.transaction() as con:
            con.execute("UPDATE tower_candidates SET hparams=? WHERE id=?", (json.dumps(hparams), cand_id))

    def finish(self, cand_id: int, *, loss: float, acc: float, params: int, steps: int, curve: List,
               checkpoint: Optional[str], train_seconds: float, transferred: Optional[int] = None) -> None:
        with self.transaction() as con:
            con.execute(
                "UPDATE tower_candidates SET status='done', loss=?, acc=?, params=?, steps=?, curve=?, "
                "checkpoint=?, finished=?, train_seconds=?, transferred=COALESCE(?, transferred) "
                "WHERE id=? AND status='running'",
                (float(loss), float(acc), int(params), int(steps), json.dumps(curve), checkpoint, time.time(),
                 float(train_seconds), transferred, cand_id))

    def fail(self, cand_id: int, error: str) -> None:
        with self.transaction() as con:
            con.execute("UPDATE tower_candidates SET status='failed', error=?, finished=? WHERE id=?",
                        (error[-2000:], time.time(), cand_id))

    def mark_lost(self, trainer_id: str) -> int:
        """A trainer starting again under `trainer_id` gives up what it was training when it died."""
        with self.transaction() as con:
            return con.execute("UPDATE tower_candidates SET status='lost', finished=? "
                               "WHERE status='running' AND trainer_id=?", (time.time(), trainer_id)).rowcount
