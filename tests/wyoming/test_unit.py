"""The Wyoming server's systemd unit: sandboxed like the daemon's, TCP only on the configured port and
to loopback peers unless a drop-in widens it."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from ambient.config import WyomingConfig
from ambient.devtools.units import read_unit

REPO = Path(__file__).resolve().parents[2]


def test_the_unit_allows_tcp_on_the_configured_port_and_loopback_peers_only() -> None:
    u = read_unit(REPO / "systemd" / "ambient-wyoming.service")
    daemon = read_unit(REPO / "systemd" / "ambient.service")
    port = urlparse(WyomingConfig().uri[0]).port
    assert u["Service.IPAddressDeny"] == ["any"] and u["Service.IPAddressAllow"] == ["localhost"]
    assert u["Service.SocketBindDeny"] == ["any"] and u["Service.SocketBindAllow"] == [f"tcp:{port}"]
    assert u["Service.RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6"]
    assert "Service.SupplementaryGroups" not in u and u["Service.PrivateDevices"] == ["yes"]
    assert "wyoming" in u["Service.ExecStart"][0]
    # Every other hardening setting of the daemon's unit is here too, with the same value.
    skip = {"PrivateNetwork", "RestrictAddressFamilies", "DeviceAllow", "SupplementaryGroups", "WatchdogSec"}
    for key, value in daemon.items():
        section, _, name = key.partition(".")
        if section == "Service" and name not in skip and not name.startswith(("Exec", "Runtime", "State")):
            assert u.get(key) == value, key
