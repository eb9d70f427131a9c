"""The output dataset: Parquet parts committed by rename, a ledger of what each part holds.

    DIR/
      part-000001-<run>.parquet   committed parts (one row per (id, dimension))
      _ledger.jsonl               one line per committed part: name, rows, bytes, sha256, run
      _runs.jsonl                 one line per run: arguments, judge, version
      _lock                       held (flock) by the one process writing DIR
      .tmp-part-...               a part being written; never read, removed on the next start

Exactly once. A part is written to a temporary name, flushed to disk, then renamed: the rename is the
commit. The ledger line comes after it, so a process killed between the two leaves a complete part
the ledger does not list yet: the next start adopts it. A process killed before the rename leaves a
temporary file, which the next start deletes (its rows were never committed, so they are redone).
Rows are committed by (id, dimension, bundle checksum); the driver never schedules a key twice in a
run, and a restart skips what is committed, so each key lands in exactly one part.

Readers (pyarrow.dataset, pandas, Spark, DuckDB) read DIR as a Parquet dataset: they skip names
starting with `_` and `.` by default.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import signal
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from vidjudge.client.rescore.rows import KEY_COLUMNS, SCHEMA, to_table

log = logging.getLogger(__name__)

LEDGER = "_ledger.jsonl"
RUNS = "_runs.jsonl"
LOCK = "_lock"
QUARANTINE = "_quarantine"
TMP_PREFIX = ".tmp-"
PART_RE = re.compile(r"^part-(\d{6,})-[0-9a-z]+\.parquet$")
# Environment variable naming crash points for tests of the exactly-once rule ("point@N,..."): the
# process SIGKILLs itself the Nth time it reaches that point of committing a part.
FAILPOINTS_ENV = "VIDJUDGE_RESCORE_FAILPOINTS"
FAILPOINTS = ("part.writing", "part.written", "part.renamed", "ledger.writing")


class DatasetError(RuntimeError):
    """DIR cannot be written or trusted; the message says why and what to do."""


@dataclass(frozen=True)
class PartRecord:
    part: str
    rows: int
    bytes: int
    sha256: str
    run_id: str
    committed_at: str
    statuses: dict = field(default_factory=dict)


@dataclass
class Recovery:
    """What opening DIR found and repaired (reported in the summary)."""

    removed_temporary: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)
    quarantined: list[str] = field(default_factory=list)
    dropped_ledger_lines: int = 0


class _Failpoints:
    def __init__(self, spec: str | None):
        self.at: dict[str, int] = {}
        self.seen: Counter = Counter()
        for part in filter(None, (spec or "").split(",")):
            name, _, n = part.strip().partition("@")
            if name not in FAILPOINTS:
                raise ValueError(f"{FAILPOINTS_ENV}: unknown point {name!r} (known: {', '.join(FAILPOINTS)})")
            self.at[name] = int(n or 1)

    def reach(self, name: str) -> None:
        if name in self.at:
            self.seen[name] += 1
            if self.seen[name] == self.at[name]:
                os.kill(os.getpid(), signal.SIGKILL)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class OutputDir:
    """The one writer of DIR (an flock keeps a second run out until this one ends or dies)."""

    def __init__(self, root: Path | str):
        self.root = Path(root)
        self.parts: dict[str, PartRecord] = {}
        self._lock_fd: int | None = None
        self._seq = 0
        self._failpoints = _Failpoints(os.environ.get(FAILPOINTS_ENV))

    # -- opening: lock, clean up, reconcile the ledger with the parts on disk -------------------
    def open(self) -> Recovery:
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock()
        rec = Recovery()
        for tmp in sorted(self.root.glob(TMP_PREFIX + "*")):
            tmp.unlink()
            rec.removed_temporary.append(tmp.name)
        listed, dropped = self._read_ledger()
        rec.dropped_ledger_lines = dropped
        on_disk = {p.name for p in self.root.glob("part-*.parquet") if PART_RE.match(p.name)}
        for name, r in listed.items():
            if name not in on_disk:
                raise DatasetError(f"{self.root}: the ledger lists {name} but the file is gone; its rows "
                                   f"would be lost. Restore it, or remove its line from {LEDGER} to redo them")
            size = (self.root / name).stat().st_size
            if size != r.bytes:
                raise DatasetError(f"{self.root}: {name} is {size} bytes but the ledger recorded {r.bytes}: "
                                   "the file changed after it was committed; restore it or remove it and its "
                                   f"line from {LEDGER} to redo its rows")
        self.parts = dict(listed)
        for name in sorted(on_disk - set(listed)):
            # Renamed into place, so complete; only its ledger line is missing (killed in between).
            try:
                self.parts[name] = self._record(self.root / name, run_id=name.rsplit("-", 1)[1][:-8],
                                                rows=pq.ParquetFile(self.root / name).metadata.num_rows)
                rec.adopted.append(name)
            except (pa.ArrowInvalid, OSError) as e:
                qdir = self.root / QUARANTINE
                qdir.mkdir(exist_ok=True)
                (self.root / name).rename(qdir / name)
                rec.quarantined.append(name)
                log.warning("%s is unreadable (%s): moved to %s; its rows will be redone", name, e, qdir)
        if dropped or rec.adopted:
            self._rewrite_ledger()
        self._seq = max((int(PART_RE.match(n).group(1)) for n in self.parts), default=0)
        return rec

    def _lock(self) -> None:
        fd = os.open(self.root / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise DatasetError(f"another vidjudge rescore (pid {holder}) is writing {self.root}; "
                               "wait for it or stop it, then run again") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._lock_fd = fd

    def _read_ledger(self) -> tuple[dict[str, PartRecord], int]:
        path = self.root / LEDGER
        if not path.exists():
            return {}, 0
        out, dropped = {}, 0
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            try:
                r = PartRecord(**json.loads(line))
            except (json.JSONDecodeError, TypeError):
                dropped += 1  # a line cut short by a kill; its part is adopted from disk below
                continue
            out[r.part] = r
        return out, dropped

    def _rewrite_ledger(self) -> None:
        tmp = self.root / (TMP_PREFIX + LEDGER)
        with open(tmp, "w") as f:
            for r in sorted(self.parts.values(), key=lambda r: r.part):
                f.write(json.dumps(asdict(r), sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(self.root / LEDGER)
        _fsync_dir(self.root)

    def _record(self, path: Path, run_id: str, rows: int, statuses: dict | None = None) -> PartRecord:
        return PartRecord(part=path.name, rows=rows, bytes=path.stat().st_size, sha256=_sha256_file(path),
                          run_id=run_id, committed_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                          statuses=statuses or {})

    # -- reading what is committed --------------------------------------------------------------
    def files(self) -> list[Path]:
        return [self.root / n for n in sorted(self.parts)]

    def committed(self, bundle_sha256: str) -> set[tuple[str, str]]:
        """(id, dimension) pairs committed for this judge."""
        if not self.parts:
            return set()
        import pyarrow.compute as pc
        import pyarrow.dataset as pads

        t = pads.dataset(self.files(), format="parquet").to_table(
            columns=list(KEY_COLUMNS), filter=pc.field("bundle_sha256") == bundle_sha256)
        return set(zip(t.column("id").to_pylist(), t.column("dimension").to_pylist()))

    # -- writing --------------------------------------------------------------------------------
    def record_run(self, meta: dict) -> None:
        with open(self.root / RUNS, "a") as f:
            f.write(json.dumps(meta, sort_keys=True, default=str) + "\n")

    def commit(self, table: pa.Table, run_id: str) -> PartRecord:
        """Write `table` as the next part: temporary file, fsync, rename (the commit), ledger line."""
        self._seq += 1
        name = f"part-{self._seq:06d}-{run_id}.parquet"
        tmp, final = self.root / (TMP_PREFIX + name), self.root / name
        with open(tmp, "wb") as f:
            with pq.ParquetWriter(f, table.schema, compression="zstd") as w:
                half = table.num_rows // 2
                w.write_table(table.slice(0, half))
                f.flush()
                self._failpoints.reach("part.writing")  # half the rows on disk, no footer yet
                w.write_table(table.slice(half))
            f.flush()
            os.fsync(f.fileno())
        self._failpoints.reach("part.written")
        tmp.rename(final)
        _fsync_dir(self.root)
        self._failpoints.reach("part.renamed")
        statuses = dict(Counter(table.column("status").to_pylist()))
        rec = self._record(final, run_id, table.num_rows, statuses)
        line = (json.dumps(asdict(rec), sort_keys=True) + "\n").encode()
        fd = os.open(self.root / LEDGER, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line[: len(line) // 2])
            self._failpoints.reach("ledger.writing")
            os.write(fd, line[len(line) // 2:])
            os.fsync(fd)
        finally:
            os.close(fd)
        self.parts[name] = rec
        return rec

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None


class PartBuffer:
    """Rows waiting for their part: committed every `part_rows` rows or `part_seconds` seconds."""

    def __init__(self, out: OutputDir, run_id: str, part_rows: int, part_seconds: float):
        self.out, self.run_id = out, run_id
        self.part_rows, self.part_seconds = part_rows, part_seconds
        self.rows: list[dict] = []
        self._since: float | None = None
        self.committed_parts: list[PartRecord] = []

    def add(self, rows: list[dict]) -> None:
        if rows and self._since is None:
            self._since = time.monotonic()
        self.rows.extend(rows)

    def due(self) -> bool:
        if not self.rows:
            return False
        return len(self.rows) >= self.part_rows or time.monotonic() - self._since >= self.part_seconds

    def flush(self) -> PartRecord | None:
        if not self.rows:
            return None
        rec = self.out.commit(to_table(self.rows, SCHEMA), self.run_id)
        self.rows, self._since = [], None
        self.committed_parts.append(rec)
        return rec
