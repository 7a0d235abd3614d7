"""Predictions cached on disk by sequence hash, so identical windows are predicted once per model
and an interrupted run resumes where it stopped.

One SQLite file (safe for several processes: shards of one cohort share it) holds rows
``(model fingerprint, sha256 of the window) -> float32 outputs``. Each batch is committed as it
is predicted.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from epx.errors import EpxError


def window_digest(seq: bytes) -> bytes:
    """The cache key of a window: sha256 of its bytes upper-cased (case does not reach a model)."""
    return hashlib.sha256(seq.upper()).digest()


class PredictionCache:
    """``get``/``put`` float32 vectors by (model fingerprint, window digest)."""

    def __init__(self, path: str | Path | None, fingerprint: str):
        self.fingerprint = fingerprint
        self.path = Path(path) if path is not None else None
        self.hits = 0
        self.misses = 0
        self._memory: dict[bytes, np.ndarray] = {}
        self._db: sqlite3.Connection | None = None
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), timeout=120)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS outputs (model TEXT, digest BLOB, value BLOB,"
                             " PRIMARY KEY (model, digest))")
            self._db.commit()
        except (OSError, sqlite3.Error) as err:
            raise EpxError(f"{self.path}: cannot open the prediction cache ({err}); pass --cache DIR on a "
                           "writable disk, or --no-cache") from None

    def get(self, digest: bytes) -> np.ndarray | None:
        value = self._memory.get(digest)
        if value is None and self._db is not None:
            row = self._db.execute("SELECT value FROM outputs WHERE model = ? AND digest = ?",
                                   (self.fingerprint, digest)).fetchone()
            if row is not None:
                value = np.frombuffer(row[0], dtype=np.float32)
                self._memory[digest] = value
        if value is None:
            self.misses += 1
        else:
            self.hits += 1
        return value

    def put_many(self, items: Iterable[tuple[bytes, np.ndarray]]) -> None:
        rows = []
        for digest, value in items:
            value = np.ascontiguousarray(value, dtype=np.float32)
            self._memory[digest] = value
            rows.append((self.fingerprint, digest, value.tobytes()))
        if self._db is not None and rows:
            try:
                self._db.executemany("INSERT OR REPLACE INTO outputs VALUES (?, ?, ?)", rows)
                self._db.commit()
            except sqlite3.Error as err:
                raise EpxError(f"{self.path}: writing the prediction cache failed ({err}); free disk space or "
                               "pass --cache DIR elsewhere") from None

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
