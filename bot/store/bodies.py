"""Owns the bodies of webhook deliveries recorded through the SQLite fast path: append-only segment files beside the
database, written before the row that points into them, fsynced before each WAL checkpoint, and deleted once no row
points into them.

Why not a BLOB column: a 15 KB payload in SQLite is written twice (WAL frames, then the checkpoint's copy into the
database, both with their page bookkeeping), which cost more of the service's one core than everything else about a
webhook together (measured: checkpointing alone took 29 % of the core at 8,000 deliveries/s). Here a body is written
once, by one `pwritev` per group commit, and the row stays small.

Durability: the bytes are handed to the OS before the row's transaction commits, so everything a 202 acknowledged
survives the process being killed (`kill -9`), like the WAL itself. After a power loss SQLite may keep a row whose
body the disk did not (the OS writes files back in its own order): every reference carries the body's length and
CRC-32, and a body that does not match is reported as unreadable instead of being processed (GitHub can redeliver).
One process writes a database's segments (SQLite is the single-instance store; run several bots on PostgreSQL).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import StoreError

log = logging.getLogger(__name__)

SEGMENT_BYTES = 64 << 20  # a segment is closed once it holds this much (a batch may overshoot it)
FOREIGN_SEGMENT_AGE_S = 600.0  # a segment another process wrote is left alone until it is this old
_NAME = re.compile(r"^(\d{8,})\.seg$")
_IOV_MAX = 1024  # Linux's limit on buffers per writev call
_OPEN_READERS = 8


class BodyUnreadable(StoreError):
    """A delivery body that is missing, short or damaged (its CRC-32 does not match)."""


@dataclass(frozen=True, slots=True)
class BodyRef:
    """Where a body lies: segment number, byte offset, length, CRC-32."""

    segment: int
    offset: int
    length: int
    crc32: int


class BodyLog:
    """Append-only segment files `NNNNNNNN.seg` in `directory`: `append` (event-loop thread), `sync` (checkpointer
    thread), `read`, and `collect` to delete segments below the lowest one still referenced."""

    def __init__(self, directory: Path, *, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.directory = directory
        self.segment_bytes = segment_bytes
        self._lock = threading.Lock()  # guards the fields below between the loop thread and the syncing thread
        self._sync_lock = threading.Lock()  # one sync at a time (the checkpointer, or close)
        self._fd: int | None = None
        self._segment = 0
        self._size = 0
        self._created: set[int] = set()  # segments this process made (the others may belong to a live process)
        self._unsynced: dict[int, int] = {}  # segment -> fd with writes not yet fsynced
        self._retired: dict[int, int] = {}  # closed for writing; closed for good after their last fsync
        self._dir_dirty = False
        self._readers: OrderedDict[int, int] = OrderedDict()

    # --- writing (the event loop's thread) --------------------------------------------------------------------------
    def append(self, bodies: Sequence[bytes]) -> list[BodyRef]:
        """Write `bodies` one after another and return their references; raises StoreError if the disk refuses."""
        with self._lock:
            if self._fd is None or self._size >= self.segment_bytes:
                self._rotate()
            fd, segment, offset = self._fd, self._segment, self._size
            assert fd is not None
            refs = []
            for body in bodies:
                refs.append(BodyRef(segment, offset, len(body), zlib.crc32(body)))
                offset += len(body)
            try:
                _pwrite_all(fd, bodies, self._size)
            except OSError as exc:
                # The batch's rows are not committed, so the next batch may overwrite whatever part of it landed.
                raise StoreError(f"could not write delivery bodies to {self._path(segment)}: {exc}") from exc
            self._size = offset
            self._unsynced[segment] = fd
            return refs

    def _rotate(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the delivery body directory {self.directory}: {exc}") from exc
        if self._fd is not None:
            self._retired[self._segment] = self._fd
            self._unsynced[self._segment] = self._fd
            self._fd = None
        n = max(self._segment, self._highest_on_disk()) + 1
        while True:
            try:
                fd = os.open(self._path(n), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            except FileExistsError:
                n += 1
                continue
            except OSError as exc:
                raise StoreError(f"could not create a delivery body segment in {self.directory}: {exc}") from exc
            break
        self._fd, self._segment, self._size = fd, n, 0
        self._created.add(n)
        self._dir_dirty = True

    # --- durability (the checkpointer's thread) ---------------------------------------------------------------------
    def sync(self) -> None:
        """fsync what was written since the last call (and the directory, after a new segment); before a checkpoint,
        so that a row the checkpoint makes durable has its body on disk first."""
        with self._sync_lock:
            with self._lock:
                pending, self._unsynced = self._unsynced, {}
                retired, self._retired = self._retired, {}
                dir_dirty, self._dir_dirty = self._dir_dirty, False
            try:
                for fd in pending.values():
                    os.fsync(fd)
                if dir_dirty:
                    _fsync_dir(self.directory)
            except OSError:
                with self._lock:  # tried again next time
                    for segment, fd in pending.items():
                        self._unsynced.setdefault(segment, fd)
                    self._retired.update(retired)
                    self._dir_dirty = self._dir_dirty or dir_dirty
                raise
            for fd in retired.values():
                os.close(fd)

    # --- reading ------------------------------------------------------------------------------------------------
    @property
    def segment(self) -> int:
        """The segment being written (0 before the first append)."""
        return self._segment

    def read(self, ref: BodyRef) -> bytes:
        fd = self._reader(ref.segment)
        try:
            data = os.pread(fd, ref.length, ref.offset)
        except OSError as exc:
            raise BodyUnreadable(f"cannot read body segment {ref.segment}: {exc}") from exc
        if len(data) != ref.length:
            raise BodyUnreadable(f"body is short: segment {ref.segment} has {len(data)} of {ref.length} bytes at "
                                 f"offset {ref.offset}")
        if zlib.crc32(data) != ref.crc32:
            raise BodyUnreadable(f"body is damaged: CRC-32 mismatch in segment {ref.segment} at offset {ref.offset} "
                                 "(a power loss before it reached the disk?)")
        return data

    def _reader(self, segment: int) -> int:
        fd = self._readers.get(segment)
        if fd is not None:
            self._readers.move_to_end(segment)
            return fd
        try:
            fd = os.open(self._path(segment), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise BodyUnreadable(f"body segment {self._path(segment)} is missing") from None
        except OSError as exc:
            raise BodyUnreadable(f"cannot open body segment {self._path(segment)}: {exc}") from exc
        self._readers[segment] = fd
        while len(self._readers) > _OPEN_READERS:
            os.close(self._readers.popitem(last=False)[1])
        return fd

    # --- deleting -------------------------------------------------------------------------------------------------
    def collect(self, lowest_referenced: int | None) -> list[int]:
        """Delete the segments below `lowest_referenced` (None: no row references any) except the one being
        written; returns the deleted numbers. Segments another process made are spared while they are recent.

        The caller must take `segment` BEFORE it looks up the lowest referenced one, and pass the smaller of the
        two: a batch written meanwhile may point into a segment that a rotation has since made not-current."""
        now = time.time()
        deleted = []
        for n in self._on_disk():
            if n == self._segment or (lowest_referenced is not None and n >= lowest_referenced):
                continue
            path = self._path(n)
            if n not in self._created:
                with contextlib.suppress(OSError):
                    if now - path.stat().st_mtime < FOREIGN_SEGMENT_AGE_S:
                        continue
            fd = self._readers.pop(n, None)
            if fd is not None:
                os.close(fd)
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("could not delete body segment %s: %s", path, exc)
                continue
            deleted.append(n)
        return deleted

    def close(self) -> None:
        """Sync and close every file (blocking; after the last append)."""
        with contextlib.suppress(OSError):
            self.sync()
        with self._lock:
            fds = [self._fd] if self._fd is not None else []
            fds += list(self._retired.values()) + list(self._readers.values())
            self._fd, self._retired, self._unsynced, self._readers = None, {}, {}, OrderedDict()
        for fd in set(fds):
            with contextlib.suppress(OSError):
                os.close(fd)

    # --- names ------------------------------------------------------------------------------------------------------
    def _path(self, segment: int) -> Path:
        return self.directory / f"{segment:08d}.seg"

    def _on_disk(self) -> list[int]:
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        return sorted(int(m.group(1)) for m in map(_NAME.match, names) if m)

    def _highest_on_disk(self) -> int:
        found = self._on_disk()
        return found[-1] if found else 0


def _pwrite_all(fd: int, buffers: Sequence[bytes], offset: int) -> None:
    """pwritev until every byte is written (a regular file may take fewer; IOV_MAX buffers per call)."""
    views = [memoryview(b) for b in buffers if b]
    start = 0
    while start < len(views):
        chunk = views[start:start + _IOV_MAX]
        n = os.pwritev(fd, chunk, offset)
        if n <= 0:
            raise OSError("pwritev wrote nothing")
        offset += n
        for view in chunk:  # skip what was written; a partly written buffer continues where it stopped
            if n < len(view):
                views[start] = view[n:]
                break
            n -= len(view)
            start += 1


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
