"""Who may listen, proven on the real daemon: the socket's directory and file modes and group, the
SO_PEERCRED allow-lists with clients running as other users, and the absence of any network
socket (checked in /proc while the daemon records from a microphone and serves clients). The
system units are checked to enforce the same (PrivateNetwork, RestrictAddressFamilies=AF_UNIX)."""

from __future__ import annotations

import grp
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from reliability_helpers import daemon_config, socket_tables

from ambient.devtools.client import Client
from ambient.devtools.daemon import DaemonProcess, write_config
from ambient.devtools.units import read_unit
from ambient.devtools.waiting import wait_until

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
is_root = os.geteuid() == 0
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_PEERCRED and /proc are Linux")

NOBODY = 65534
NOGROUP = 65534

# A client run as another user: pings, then prints the lines the daemon sent up to the pong or the
# end of the connection, or the errno name when it cannot even connect (file permissions refuse it
# before the allow-lists are consulted).
_CLIENT = """
import errno, json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect(sys.argv[1])
except OSError as e:
    print(json.dumps({"errno": errno.errorcode[e.errno]}))
    sys.exit(0)
try:
    s.sendall(b'{"type":"ping"}\\n')
except OSError:
    pass  # refused and closed already
lines = []
try:
    for raw in s.makefile("rb"):
        lines.append(json.loads(raw))
        if lines[-1]["type"] == "pong":
            break
except ConnectionResetError:
    pass  # closed by the daemon with our ping unread: the lines before it were delivered
print(json.dumps({"lines": lines}))
"""


def _run_as(uid: int, gid: int, socket_path: Path) -> dict[str, Any]:
    python = shutil.which("python3", path="/usr/bin:/bin")
    if python is None:
        pytest.skip("no system python3 that another user can run")
    out = subprocess.run(
        [python, "-I", "-c", _CLIENT, str(socket_path)],
        user=uid,
        group=gid,
        extra_groups=[],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@linux_only
@pytest.mark.skipif(not is_root, reason="needs root to run clients as other users")
def test_group_socket_in_a_private_directory_and_peer_allow_lists(tiny_checkpoint: Path, workdir: Path) -> None:
    os.chmod(workdir, 0o755)  # other users must be able to reach the socket's directory at all
    group = grp.getgrgid(NOGROUP).gr_name
    sock_path = workdir / "run" / "ambient.sock"  # "run" does not exist: the daemon creates it
    data = daemon_config(
        workdir,
        tiny_checkpoint,
        audio={"source": "stdin"},
        socket={"path": str(sock_path), "group": group, "allow_uids": [NOBODY], "allow_root": False},
    )
    cfg = write_config(workdir / "config.yaml", data)
    daemon = DaemonProcess(config=cfg, workdir=workdir, stdin_pipe=True, args=(), stderr="pipe")
    try:
        daemon.wait_ready()
        run_dir = sock_path.parent
        assert _mode(run_dir) == 0o750 and os.stat(run_dir).st_gid == NOGROUP
        assert _mode(sock_path) == 0o660 and os.stat(sock_path).st_gid == NOGROUP
        assert stat.S_ISSOCK(os.lstat(sock_path).st_mode)
        assert _mode(sock_path.with_name("ambient.sock.lock")) == 0o600

        # Allowed: uid nobody, a member of the socket's group.
        allowed = _run_as(NOBODY, NOGROUP, sock_path)
        assert [m["type"] for m in allowed["lines"]] == ["hello", "pong"]
        # The file permissions let uid 12345 of group nogroup reach the socket; the allow-list refuses it.
        refused = _run_as(12345, NOGROUP, sock_path)
        assert [m["type"] for m in refused["lines"]] == ["error", "bye"]  # and then the end of the connection
        assert refused["lines"][0]["code"] == "forbidden" and refused["lines"][1]["reason"] == "forbidden"
        # Not in the group: the directory (0750) stops it before the daemon ever sees it.
        assert _run_as(1, 1, sock_path) == {"errno": "EACCES"}
        # Root, with allow_root: false, is refused like anyone else.
        me = Client(sock_path)
        me.wait_eof()
        assert [m["type"] for m in me.messages] == ["error", "bye"]
        me.close()

        # The refusal reaches the client before its log line has come through the stderr reader.
        refused_event = "client refused by allow-list"
        wait_until(lambda: len(daemon.events_logged(refused_event)) >= 2, what="both refusals logged")
        refusals = daemon.events_logged(refused_event)
        assert [(r["uid"], r["gid"]) for r in refusals] == [(12345, NOGROUP), (0, 0)]
        assert all(r["level"] == "warning" and r["pid"] > 0 for r in refusals)
        connected = daemon.events_logged("client connected")
        assert [r["uid"] for r in connected] == [NOBODY]
        daemon.close_stdin()
        assert daemon.wait() == 0
    finally:
        daemon.close()
    assert not sock_path.exists()


@linux_only
def test_the_daemon_opens_no_network_socket(
    pulse: Any, tiny_checkpoint: Path, workdir: Path, synth: Any, compose: Any
) -> None:
    data = daemon_config(workdir, tiny_checkpoint, audio={"source": "mic"})
    cfg = write_config(workdir / "config.yaml", data)
    daemon = DaemonProcess(config=cfg, workdir=workdir, env=pulse.client_env(), watchdog_usec=3_000_000, stderr="pipe")
    clients: list[Client] = []
    try:
        daemon.wait_ready()
        clients = [Client(workdir / "ambient.sock") for _ in range(3)]
        player = pulse.play(compose(workdir / "s.wav", [0.3, synth("open the window"), 1.0]))
        assert player.wait(timeout=60) == 0
        clients[0].wait_type("final")  # capture, recognition, publishing and notify all in use
        tables = socket_tables(daemon.pid)
        wait_until(lambda: daemon.notify.count("WATCHDOG") > 0, what="a watchdog ping")
        tables |= socket_tables(daemon.pid)
        assert tables, "no sockets at all: the check would prove nothing"
        assert set(tables.values()) == {"unix"}, tables
        for table in ("tcp", "tcp6", "udp", "udp6", "raw", "raw6"):
            listed = Path(f"/proc/{daemon.pid}/net/{table}").read_text()
            assert not any(str(inode) in listed.split() for inode in tables), table
    finally:
        for c in clients:
            c.close()
        daemon.close()


def test_the_system_unit_enforces_no_network_and_private_files() -> None:
    u = read_unit(REPO / "systemd" / "ambient.service")
    assert u["Service.PrivateNetwork"] == ["yes"]
    assert u["Service.RestrictAddressFamilies"] == ["AF_UNIX"]
    assert u["Service.IPAddressDeny"] == ["any"]
    assert u["Service.RuntimeDirectoryMode"] == ["0750"] and u["Service.StateDirectoryMode"] == ["0750"]
    assert u["Service.UMask"] == ["0027"]
    assert u["Service.LimitCORE"] == ["0"]  # a core dump would hold audio and transcripts
    assert u["Service.User"] == ["ambient"] and u["Service.NoNewPrivileges"] == ["yes"]
    assert u["Service.CapabilityBoundingSet"] == [""]


def test_the_user_unit_enforces_no_network_and_private_files() -> None:
    u = read_unit(REPO / "systemd" / "user" / "ambient.service")
    assert u["Service.RestrictAddressFamilies"] == ["AF_UNIX"]
    assert u["Service.RuntimeDirectoryMode"] == ["0700"] and u["Service.UMask"] == ["0077"]
    assert u["Service.LimitCORE"] == ["0"]
