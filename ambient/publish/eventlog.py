"""The durable event log: append-only JSON Lines, written before an event is published.

Each event becomes one line written with a single ``write()`` on an ``O_APPEND`` descriptor, so
complete lines are never interleaved or partly overwritten; after a failed or short write the file
is truncated back to where the line began. A crash can still leave a torn last line (a ``kill -9``
in the middle of a large write, or a power loss with delayed allocation), so opening the log
truncates an unterminated or unparsable last line away, and :func:`read_events` skips one.

Before each append the log checks that its descriptor is still the file at ``path``: a file that
was deleted, moved away without SIGHUP, or whose directory was replaced is opened again, so events
never go to a file nobody can find.

Write failures (disk full, file-size limit, read-only or vanished directory) never raise to the
caller: ``append()`` returns False, the first failure of an episode is logged and reported through
``healthy``/``on_health_change``, and every later ``append()`` retries, so the log recovers by
itself once writing works again.

Files: ``events.jsonl`` is written; rotation renames it to ``events.jsonl.1`` (older ones shift to
``.2`` … ``.keep_files``). Rotation happens when a line would take the file past ``rotate_bytes``,
and when the file's oldest event is ``rotate_days`` old (checked at each append and in
``maintain()``), so a quiet log rotates too. Rotated files whose last write is older than
``retention_days`` are deleted at open, at rotation and in ``maintain()``: no event outlives
``retention_days + rotate_days``. Every file gets ``file_mode`` whatever the umask.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import structlog
from structlog.typing import FilteringBoundLogger

from ambient.config import EventLogConfig
from ambient.errors import AmbientError
from ambient.publish.protocol import Event, Partial

__all__ = ["EventLog", "EventLogError", "log_files", "read_events"]

#: Fields that carry what was said; ``metadata_only`` drops them.
_CONTENT_FIELDS = ("text", "words")
_READ_BLOCK = 64 * 1024
#: Wall-clock times before this are not taken for one (a test's or a tool's made-up times).
_EPOCH_2001 = 978307200.0


class EventLogError(AmbientError):
    """An event-log file with a corrupt line before its end (not just a torn last line)."""


HealthCallback = Callable[[bool, str], None]


class EventLog:
    """Append-only JSON Lines log of events (see the module docstring for the guarantees).

    ``append()`` is thread-safe. Call ``maintain()`` about once a second when ``fsync`` is
    ``interval`` (it syncs pending lines and applies retention; hourly is enough otherwise);
    ``reopen()`` on SIGHUP or a new configuration; ``close()`` at exit.

    ``on_health_change(healthy, reason)`` is called on every transition (False with a one-line
    reason when writing starts failing, True with ``""`` when it works again), under the log's
    re-entrant lock: it may append (e.g. a ``status event_log_ok``) and publish.
    """

    def __init__(
        self,
        cfg: EventLogConfig,
        *,
        logger: FilteringBoundLogger | None = None,
        on_health_change: HealthCallback | None = None,
    ) -> None:
        self._cfg = cfg
        self._log: FilteringBoundLogger = logger if logger is not None else structlog.get_logger("ambient.eventlog")
        self._on_health_change = on_health_change
        self._lock = threading.RLock()
        self._fd: int | None = None
        self._healthy = True
        self._error: str | None = None
        self._failures = 0
        self._lines = 0
        self._unsynced = False
        self._last_sync = time.monotonic()
        self._closed = False
        self._oldest: float | None = None  # wall-clock time of the current file's first event
        with self._lock:
            self._start()

    # ------------------------------------------------------------------ public surface

    @property
    def path(self) -> Path | None:
        """The file being written (``None``: logging disabled)."""
        return self._cfg.path

    @property
    def healthy(self) -> bool:
        """False from a failed write until a write succeeds again."""
        return self._healthy

    @property
    def last_error(self) -> str | None:
        """One line describing the current failure, ``None`` while healthy."""
        return self._error

    @property
    def failures(self) -> int:
        """Appends that failed since this log was created."""
        return self._failures

    @property
    def lines_written(self) -> int:
        """Lines appended since this log was created."""
        return self._lines

    def append(self, event: Event) -> bool:
        """Write ``event`` as one line and flush it (and fsync per policy) before returning.

        Returns False if the event should have been logged and is not on disk; never raises for
        I/O errors. Partials are skipped (True) unless ``include_partials``.
        """
        if self._cfg.path is None or (isinstance(event, Partial) and not self._cfg.include_partials):
            return True
        data = (json.dumps(self._record(event), ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
        with self._lock:
            if self._closed:
                self._log.warning("event appended after the log was closed; not written", type=event.TYPE)
                return False
            try:
                if self._fd is not None and not self._still_at_path(self._fd):
                    self._close_fd()  # the file was deleted, moved or its directory replaced
                if self._fd is None:
                    self._open()
                fd = self._fd
                assert fd is not None
                size = os.lseek(fd, 0, os.SEEK_END)
                if size > 0 and (size + len(data) > self._cfg.rotate_bytes or self._too_old()):
                    self._rotate()
                    fd = self._fd
                    assert fd is not None
                offset = self._write_line(fd, data)
                if self._oldest is None:
                    self._oldest = time.time()
                try:
                    self._sync_if_due(fd)
                except OSError:
                    if self._cfg.fsync == "always":  # this line is not known to be on disk: take it back
                        with contextlib.suppress(OSError):
                            os.ftruncate(fd, offset)
                    raise
            except OSError as e:
                self._failed(e)
                return False
            self._lines += 1
            self._recovered()
            return True

    def maintain(self) -> None:
        """Periodic work: fsync lines the ``interval`` policy left pending, delete expired files."""
        with self._lock:
            if self._closed or self._cfg.path is None:
                return
            if self._fd is not None and self._unsynced:
                try:
                    self._sync_if_due(self._fd)
                except OSError as e:
                    self._failed(e)
            if self._fd is not None and self._too_old():
                try:
                    self._rotate()
                except OSError as e:
                    self._failed(e)
            self._apply_retention()

    def reopen(self, cfg: EventLogConfig | None = None) -> None:
        """Close and open the log again, with a new configuration if given (SIGHUP, reload, or
        after an external tool moved the file away). Failures are reported like write failures."""
        with self._lock:
            self._close_fd()
            if cfg is not None:
                self._cfg = cfg
            self._closed = False
            self._start()

    def close(self) -> None:
        """Sync pending lines and close the file. Idempotent."""
        with self._lock:
            self._close_fd()
            self._closed = True

    # ------------------------------------------------------------------ internals

    def _start(self) -> None:
        if self._cfg.path is None:
            self._set_healthy()
            return
        try:
            self._open()
        except OSError as e:
            self._failed(e)
        self._apply_retention()

    def _record(self, event: Event) -> dict[str, Any]:
        record = event.to_dict()
        record.pop("seq", None)  # seq is per server instance and stamped at publish time
        if self._cfg.metadata_only:
            words = record.get("words")
            for key in _CONTENT_FIELDS:
                record.pop(key, None)
            if isinstance(words, list):
                record["word_count"] = len(words)
            record["redacted"] = True
        return record

    def _open(self) -> None:
        path = self._cfg.path
        assert path is not None
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        existed = path.exists()
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, self._cfg.file_mode)
        try:
            self._set_mode(fd, path)
            self._repair_tail(fd, path)
            if not existed:
                self._sync_dir(path.parent)
        except OSError:
            os.close(fd)
            raise
        self._fd = fd

    def _set_mode(self, fd: int, path: Path) -> None:
        try:
            os.fchmod(fd, self._cfg.file_mode)  # the umask narrowed O_CREAT's mode; existing files too
        except OSError as e:
            self._log.warning("cannot set event log file mode", path=str(path), error=e.strerror or str(e))

    def _still_at_path(self, fd: int) -> bool:
        """Is ``fd`` still the file at the configured path? Not after a user deleted it (purging
        transcripts), a rotation tool moved it without SIGHUP, or its directory was replaced:
        appends would go to a file nobody can find, so the log is opened again (or fails)."""
        path = self._cfg.path
        assert path is not None
        try:
            ours, there = os.fstat(fd), os.stat(path)
        except OSError:
            return False
        return (ours.st_dev, ours.st_ino) == (there.st_dev, there.st_ino)

    def _repair_tail(self, fd: int, path: Path) -> None:
        """Truncate a torn last line: one without its newline, or a final line that does not parse."""
        size = os.fstat(fd).st_size
        end = size
        if end > 0 and os.pread(fd, 1, end - 1) != b"\n":
            end = _line_start(fd, end)
        if end > 0:
            start = _line_start(fd, end - 1)
            if not _parses(os.pread(fd, end - start, start)):
                end = start
        self._oldest = _first_time(fd, path) if end > 0 else None
        if end != size:
            os.ftruncate(fd, end)
            if self._cfg.fsync != "never":
                _datasync(fd)
            self._log.warning("event log: removed torn last line", path=str(path), bytes=size - end, size=end)

    def _write_line(self, fd: int, data: bytes) -> int:
        """One line with one write() where possible; on any failure cut the file back to where
        the line began, so no partial line is ever left behind. Returns that offset."""
        offset = os.lseek(fd, 0, os.SEEK_END)
        view = memoryview(data)
        try:
            while view:
                n = os.write(fd, view)
                view = view[n:]
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, offset)
            raise
        self._unsynced = True
        return offset

    def _sync_if_due(self, fd: int) -> None:
        if not self._unsynced:
            return
        policy = self._cfg.fsync
        now = time.monotonic()
        if policy == "always" or (policy == "interval" and now - self._last_sync >= self._cfg.fsync_interval_s):
            _datasync(fd)
            self._unsynced = False
            self._last_sync = now

    def _too_old(self) -> bool:
        """Does the current file hold an event older than ``rotate_days``?"""
        days = self._cfg.rotate_days
        return days is not None and self._oldest is not None and time.time() - self._oldest >= days * 86400.0

    def _rotate(self) -> None:
        path = self._cfg.path
        assert path is not None
        self._close_fd()
        keep = self._cfg.keep_files
        rotated = _rotated(path)
        for n, p in rotated:
            if n >= keep:  # .keep is about to be replaced; higher ones are left from a larger keep_files
                os.unlink(p)
        for n, p in sorted(rotated, reverse=True):
            if n < keep:
                os.replace(p, _numbered(path, n + 1))
        if keep > 0:
            os.replace(path, _numbered(path, 1))
        else:
            os.unlink(path)
        if self._cfg.fsync != "never":
            self._sync_dir(path.parent)
        self._log.info("event log rotated", path=str(path), keep_files=keep)
        self._apply_retention()
        self._open()

    def _apply_retention(self) -> None:
        path = self._cfg.path
        days = self._cfg.retention_days
        if path is None or days is None:
            return
        cutoff = time.time() - days * 86400.0
        for _, p in _rotated(path):
            try:
                if p.stat().st_mtime < cutoff:
                    p.unlink()
                    self._log.info("event log file expired", path=str(p), retention_days=days)
            except FileNotFoundError:
                continue
            except OSError as e:
                self._log.warning("cannot apply event log retention", path=str(p), error=e.strerror or str(e))

    def _sync_dir(self, directory: Path) -> None:
        if self._cfg.fsync == "never":
            return
        try:
            dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return  # some filesystems do not allow it; the data itself is synced
        try:
            os.fsync(dfd)
        except OSError:
            pass
        finally:
            os.close(dfd)

    def _close_fd(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if self._unsynced and self._cfg.fsync != "never":
                _datasync(fd)
            self._unsynced = False
        except OSError as e:
            self._failed(e)
        finally:
            os.close(fd)

    def _failed(self, err: OSError) -> None:
        self._failures += 1
        reason = f"{self._cfg.path}: {err.strerror or err}"
        fd, self._fd = self._fd, None  # reopen on the next append: the file or directory may change
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._unsynced = False
        if not self._healthy:
            self._log.debug("event log write failed again", error=reason, failures=self._failures)
            return
        self._healthy = False
        self._error = reason
        self._log.error("event log write failed; events are not being logged", error=reason)
        self._notify(False, reason)

    def _recovered(self) -> None:
        if not self._healthy:
            self._log.info("event log writable again", path=str(self._cfg.path), failures=self._failures)
            self._set_healthy()
            self._notify(True, "")

    def _set_healthy(self) -> None:
        self._healthy = True
        self._error = None

    def _notify(self, healthy: bool, reason: str) -> None:
        if self._on_health_change is None:
            return
        try:
            self._on_health_change(healthy, reason)
        except Exception as e:  # the caller's callback must not break logging
            self._log.exception("event log health callback failed", error=repr(e))


# ---------------------------------------------------------------------- files


def _numbered(path: Path, n: int) -> Path:
    return path.with_name(f"{path.name}.{n}")


def _rotated(path: Path) -> list[tuple[int, Path]]:
    """Rotated files ``path.N`` that exist, as (N, path)."""
    out: list[tuple[int, Path]] = []
    prefix = path.name + "."
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return out
    for p in entries:
        suffix = p.name[len(prefix) :] if p.name.startswith(prefix) else ""
        if suffix.isdigit() and suffix == str(int(suffix)) and int(suffix) > 0:
            out.append((int(suffix), p))
    return sorted(out)


def log_files(path: str | os.PathLike[str]) -> list[Path]:
    """The log's files oldest first: ``path.N`` … ``path.1``, then ``path`` (those that exist)."""
    p = Path(path)
    files = [f for _, f in sorted(_rotated(p), reverse=True)]
    if p.exists():
        files.append(p)
    return files


def _line_start(fd: int, end: int) -> int:
    """Offset just after the last newline before ``end`` (0 if none)."""
    pos = end
    while pos > 0:
        start = max(0, pos - _READ_BLOCK)
        block = os.pread(fd, pos - start, start)
        i = block.rfind(b"\n")
        if i >= 0:
            return start + i + 1
        pos = start
    return 0


def _first_time(fd: int, path: Path) -> float:
    """Wall-clock time of the first event in an existing log file: its ``time`` (status,
    speech_start) or ``start`` (final) field, else the file's modification time."""
    head = os.pread(fd, _READ_BLOCK, 0).split(b"\n", 1)[0]
    try:
        record = json.loads(head)
    except ValueError:
        record = None
    if isinstance(record, dict):
        for key in ("time", "start"):
            value = record.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool) and value > _EPOCH_2001:
                return float(value)
    return os.fstat(fd).st_mtime


def _parses(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except (ValueError, RecursionError):
        return False


def _datasync(fd: int) -> None:
    if hasattr(os, "fdatasync"):
        os.fdatasync(fd)
    else:  # macOS
        os.fsync(fd)


def read_events(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Yield the events in one log file. A torn last line (no newline, or unparsable: a crash
    or a writer still busy) is skipped; a bad line before the end raises :class:`EventLogError`."""
    with open(path, "rb") as f:
        pending: bytes | None = None
        lineno = 0
        for raw in f:
            if pending is not None:
                yield _decode(pending, path, lineno)
            pending = raw
            lineno += 1
        if pending is not None and pending.endswith(b"\n"):
            try:
                last = _decode(pending, path, lineno)
            except EventLogError:
                return
            yield last


def _decode(raw: bytes, path: str | os.PathLike[str], lineno: int) -> dict[str, Any]:
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError):
        obj = None
    if not isinstance(obj, dict):
        raise EventLogError(f"{os.fspath(path)}:{lineno}: not a JSON event line")
    return obj
