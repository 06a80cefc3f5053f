"""The captions user unit: hardened like the user daemon's, Internet sockets only for its loopback
listener, and its command line is one ``ambient captions`` accepts."""

from __future__ import annotations

import configparser
import ipaddress
import shlex
from pathlib import Path

from ambient.cli.main import build_parser

REPO = Path(__file__).resolve().parents[2]


def _service(path: Path) -> dict[str, str]:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string(path.read_text())
    return dict(unit["Service"])


def test_the_unit_is_the_user_daemons_sandbox_plus_a_loopback_listener() -> None:
    unit = _service(REPO / "systemd" / "user" / "ambient-captions.service")
    daemon = _service(REPO / "systemd" / "user" / "ambient.service")
    assert unit["RestrictAddressFamilies"] == "AF_UNIX AF_INET AF_INET6"
    assert daemon["RestrictAddressFamilies"] == "AF_UNIX"  # the daemon itself stays off the network
    for key in ("NoNewPrivileges", "LockPersonality", "RestrictRealtime", "RestrictSUIDSGID", "UMask", "LimitCORE"):
        assert unit[key] == daemon[key], key
    assert unit["MemoryDenyWriteExecute"] == "yes" and unit["SystemCallFilter"] == "@system-service"
    # RuntimeDirectory=ambient here would delete the daemon's socket directory when the page stops.
    assert "RuntimeDirectory" not in unit

    argv = shlex.split(unit["ExecStart"].replace("%h", "/home/u").replace("%t", "/run/user/1000"))
    assert argv[0].endswith("/ambient")
    args = build_parser().parse_args(argv[1:])
    assert args.command == "captions"
    assert ipaddress.ip_address(args.listen[0]).is_loopback
    assert args.socket == Path("/run/user/1000/ambient/ambient.sock")
