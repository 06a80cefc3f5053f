"""Who is on the other end of a Unix socket (SO_PEERCRED), and the allow-list rule.

The kernel records the peer's pid, uid and gid when it connects; they cannot be forged by the
client. Group membership is taken from the primary gid the kernel reports plus the peer user's
groups in the user database (``getgrouplist``), the same rule D-Bus uses: a user added to the
``ambient`` group may connect even when that is a supplementary group.
"""

from __future__ import annotations

import os
import pwd
import socket
import struct
import sys
from collections.abc import Collection
from dataclasses import dataclass

__all__ = ["PeerCredentials", "is_allowed", "peer_credentials", "peercred_supported", "user_groups"]

_UCRED = struct.Struct("3i")  # struct ucred { pid_t pid; uid_t uid; gid_t gid; }


@dataclass(frozen=True, kw_only=True)
class PeerCredentials:
    """Credentials of a connected peer process, as recorded by the kernel at ``connect()``."""

    pid: int
    uid: int
    gid: int


def peercred_supported() -> bool:
    """Whether this platform reports peer credentials (Linux: ``SO_PEERCRED``)."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_PEERCRED")


def peer_credentials(sock: socket.socket) -> PeerCredentials | None:
    """The peer's credentials, or ``None`` where the platform cannot tell.

    Raises ``OSError`` if the socket is no longer connected.
    """
    if not peercred_supported():
        return None
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    pid, uid, gid = _UCRED.unpack(raw)
    return PeerCredentials(pid=pid, uid=uid, gid=gid)


def user_groups(uid: int, primary_gid: int) -> frozenset[int]:
    """The gids of user ``uid`` per the user database, plus ``primary_gid``.

    May block on a network user database (NSS); call it off the event loop.
    """
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:  # a uid without a passwd entry (containers): only its primary gid
        return frozenset({primary_gid})
    return frozenset(os.getgrouplist(name, primary_gid)) | {primary_gid}


def is_allowed(
    cred: PeerCredentials,
    *,
    allow_uids: Collection[int] | None,
    allow_gids: Collection[int] | None,
    allow_root: bool,
    groups: Collection[int] | None = None,
) -> bool:
    """The allow-list rule: with no lists everyone who can open the socket file may connect;
    otherwise the peer must be root (when ``allow_root``), have a listed uid, or belong to a listed
    gid (``groups``: its groups from :func:`user_groups`; only ``cred.gid`` when ``None``)."""
    if allow_uids is None and allow_gids is None:
        return True
    if allow_root and cred.uid == 0:
        return True
    if allow_uids is not None and cred.uid in allow_uids:
        return True
    if allow_gids is not None:
        member_of = set(groups) if groups is not None else {cred.gid}
        member_of.add(cred.gid)
        if not member_of.isdisjoint(allow_gids):
            return True
    return False
