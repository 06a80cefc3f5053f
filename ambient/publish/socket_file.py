"""The event socket's file: its directory, the lock that keeps a second daemon off the path, the
removal of a stale socket left by a crash, the bind with the configured mode and group, and the
removal of our own socket at exit (never another process's).
"""

from __future__ import annotations

import contextlib
import fcntl
import grp
import os
import socket
import stat
from pathlib import Path

from structlog.typing import FilteringBoundLogger

from ambient.config import SocketConfig
from ambient.errors import AmbientError

__all__ = ["SocketFile"]

_LISTEN_BACKLOG = 64


class SocketFile:
    """The socket path of one server, from :meth:`bind` to :meth:`remove`."""

    def __init__(self, cfg: SocketConfig, *, logger: FilteringBoundLogger) -> None:
        self._cfg = cfg
        self._log = logger
        self._lock_fd: int | None = None
        self._socket_id: tuple[int, int] | None = None  # (st_dev, st_ino) of the socket we bound

    def bind(self) -> socket.socket:
        """Prepare the directory, take the lock, remove a stale socket and bind a listening one.

        Raises :class:`AmbientError` when another daemon serves the path, the path is not a
        socket, the group does not exist, or the socket cannot be created.
        """
        path = self._cfg.path
        gid = _resolve_group(self._cfg.group)
        _prepare_dir(path.parent, gid)
        self._lock_fd = _acquire_lock(path)
        try:
            self._remove_stale(path)
            sock = _bind(path, mode=self._cfg.mode, gid=gid)
            st = os.stat(path)
            self._socket_id = (st.st_dev, st.st_ino)
        except BaseException:
            self.release_lock()
            raise
        return sock

    def remove(self) -> None:
        """Remove the socket this object bound (if the path still holds it) and release the lock."""
        self._remove_own_socket()
        self.release_lock()

    def _remove_stale(self, path: Path) -> None:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise AmbientError(f"{path} exists and is not a socket; remove it or set socket.path")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.setblocking(False)  # a Unix connect() answers at once: accepted, refused or backlog full
        try:
            probe.connect(str(path))
        except (ConnectionRefusedError, FileNotFoundError):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            self._log.info("removed stale socket", path=str(path))
            return
        except BlockingIOError:
            pass  # backlog full: somebody is serving it
        except OSError as e:
            raise AmbientError(f"cannot probe existing socket {path}: {e.strerror or e}") from None
        finally:
            probe.close()
        raise AmbientError(f"another process is already serving {path} (is another ambient daemon running?)")

    def _remove_own_socket(self) -> None:
        if self._socket_id is None:
            return  # never bound: whatever is at the path belongs to someone else
        path = self._cfg.path
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if (st.st_dev, st.st_ino) != self._socket_id:
            self._log.warning("socket path was replaced by another file; leaving it", path=str(path))
            return
        try:
            os.unlink(path)
        except OSError as e:
            self._log.warning("cannot remove socket", path=str(path), error=e.strerror or str(e))

    def release_lock(self) -> None:
        """Let another server take the path (the lock file itself stays)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock; the lock file stays (removing it would race)
            self._lock_fd = None


def _resolve_group(group: str | None) -> int | None:
    if group is None:
        return None
    if group.isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise AmbientError(f"socket.group {group!r} does not exist") from None


def _prepare_dir(directory: Path, gid: int | None) -> None:
    """Create the socket's directory 0700 (0750 with a group) if missing; an existing one is
    left as it is (it may be /tmp or systemd's RuntimeDirectory)."""
    if directory.is_dir():
        return
    mode = 0o750 if gid is not None else 0o700
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        os.mkdir(directory, mode)
        if gid is not None:
            os.chown(directory, -1, gid)
        os.chmod(directory, mode)  # mkdir's mode is narrowed by the umask
    except FileExistsError:
        if not directory.is_dir():
            raise AmbientError(f"socket directory {directory} exists and is not a directory") from None
    except OSError as e:
        raise AmbientError(f"cannot create socket directory {directory}: {e.strerror or e}") from None


def _acquire_lock(path: Path) -> int:
    """Hold ``<socket>.lock`` for the server's lifetime so two daemons cannot race for one path."""
    lock_path = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError as e:
        raise AmbientError(f"cannot open lock file {lock_path}: {e.strerror or e}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise AmbientError(f"another ambient daemon is already serving {path}") from None
    return fd


def _bind(path: Path, *, mode: int, gid: int | None) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # Bind with a tight umask so the socket is never reachable with looser permissions than
    # configured, not even between bind() and chmod(). The umask is process-wide, but only for
    # these few instructions; it can only make files created meanwhile more private.
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    except OSError as e:
        sock.close()
        raise AmbientError(f"cannot create socket {path}: {e.strerror or e}") from None
    finally:
        os.umask(old)
    try:
        if gid is not None:
            os.chown(path, -1, gid)
        os.chmod(path, mode)
        sock.listen(_LISTEN_BACKLOG)
        sock.setblocking(False)
    except OSError as e:
        sock.close()
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise AmbientError(f"cannot set up socket {path}: {e.strerror or e}") from None
    return sock
