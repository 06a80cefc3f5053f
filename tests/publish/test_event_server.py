"""EventServer on real Unix sockets: greeting, subscriptions, bad input, backpressure, the socket
file's life cycle and permissions, and peer allow-lists."""

from __future__ import annotations

import asyncio
import grp
import json
import os
import shutil
import socket
import stat
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from publish_helpers import IO_TIMEOUT_S, LineClient, final, partial, serving, speech_start, status, wait_until
from structlog.testing import capture_logs

from ambient.config import SocketConfig
from ambient.errors import AmbientError
from ambient.publish.peercred import PeerCredentials, is_allowed, user_groups
from ambient.publish.protocol import PROTOCOL_VERSION
from ambient.publish.server import EventServer, HelloInfo

is_root = os.geteuid() == 0
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_PEERCRED is Linux-only")


def cfg_for(d: Path, **kw: Any) -> SocketConfig:
    return SocketConfig(path=d / "run" / "ambient.sock", **kw)


# --------------------------------------------------------------------------- protocol basics


def test_hello_on_connect_then_events_with_increasing_seq(sock_dir: Path) -> None:
    async def main() -> None:
        async with serving(cfg_for(sock_dir)) as srv:
            srv.publish(status())  # before anyone connects: seq 1
            c = await LineClient.connect(srv.path)
            h = c.hello
            assert h["protocol"] == PROTOCOL_VERSION
            assert h["model"] == "test-model" and h["sample_rate"] == 16000
            assert h["instance"] == srv.instance and h["last_seq"] == 1
            assert isinstance(h["version"], str) and isinstance(h["time"], float)
            srv.publish(speech_start(1))
            srv.publish(partial(1))
            srv.publish(final(1))
            got = [await c.recv() for _ in range(3)]
            assert [m["type"] for m in got] == ["speech_start", "partial", "final"]
            assert [m["seq"] for m in got] == [2, 3, 4]
            assert got[2]["text"] == "hello world" and got[2]["words"][1]["word"] == "world"
            assert srv.client_count == 1
            await c.close()
            await wait_until(lambda: srv.client_count == 0, "client removed after disconnect")

    asyncio.run(main())


def test_subscribe_filters_event_types(sock_dir: Path) -> None:
    async def main() -> None:
        async with serving(cfg_for(sock_dir)) as srv:
            only_finals = await LineClient.connect(srv.path)
            reply = await only_finals.request({"type": "subscribe", "events": ["final", "no_such_type"]}, "subscribed")
            assert reply["events"] == ["final"] and reply["ignored"] == ["no_such_type"]
            nothing = await LineClient.connect(srv.path)
            assert (await nothing.request({"type": "subscribe", "events": []}, "subscribed"))["events"] == []
            everything = await LineClient.connect(srv.path)
            for n in range(3):
                srv.publish(speech_start(n))
                srv.publish(partial(n))
                srv.publish(status())
                srv.publish(final(n))
            assert [(m["type"], m["utterance_id"]) for m in [await only_finals.recv() for _ in range(3)]] == [
                ("final", "u0"),
                ("final", "u1"),
                ("final", "u2"),
            ]
            assert [(await everything.recv())["type"] for _ in range(4)] == [
                "speech_start",
                "partial",
                "status",
                "final",
            ]
            # control messages still reach a client subscribed to nothing, and nothing else did
            pong = await nothing.request({"type": "ping", "id": "after"}, "pong")
            assert pong["id"] == "after"
            # re-subscribing to all (events omitted) restores everything
            await only_finals.request({"type": "subscribe"}, "subscribed")
            srv.publish(partial(9))
            assert (await only_finals.recv())["type"] == "partial"

    asyncio.run(main())


def test_ping_pong_echoes_id(sock_dir: Path) -> None:
    async def main() -> None:
        async with serving(cfg_for(sock_dir)) as srv:
            c = await LineClient.connect(srv.path)
            assert (await c.request({"type": "ping", "id": 17}, "pong"))["id"] == 17
            assert (await c.request({"type": "ping", "id": "é-1"}, "pong"))["id"] == "é-1"
            assert (await c.request({"type": "ping"}, "pong"))["id"] is None
            # a blank line is a keep-alive: no reply, the next request is answered normally
            await c.send(b"\n")
            pong = await c.request({"type": "ping", "id": 3, "unknown_field": True}, "pong")
            assert pong["id"] == 3

    asyncio.run(main())


# --------------------------------------------------------------------------- bad input


def test_bad_messages_get_errors_and_never_affect_other_clients(sock_dir: Path) -> None:
    async def main() -> None:
        cfg = cfg_for(sock_dir, max_message_bytes=4096)
        async with serving(cfg) as srv:
            good = await LineClient.connect(srv.path)
            bad = await LineClient.connect(srv.path)
            cases = [
                (b"{not json\n", "bad_json"),
                (b"\xff\xfe\xfd\n", "bad_encoding"),
                (b"[1,2,3]\n", "not_object"),
                (b'{"type":"explode"}\n', "unknown_type"),
                (b'{"type":"ping","id":[1]}\n', "bad_field"),
                (json.dumps({"type": "ping", "id": "x" * 5000}).encode() + b"\n", "too_long"),
            ]
            for n, (line, code) in enumerate(cases):
                await bad.send(line)
                err = await bad.recv_type("error")
                assert err["code"] == code, (line[:40], err)
                srv.publish(final(n))
            # the misbehaving client is still served normally afterwards
            assert (await bad.request({"type": "ping", "id": "still-here"}, "pong"))["id"] == "still-here"
            got = [await good.recv() for _ in cases]
            assert [m["utterance_id"] for m in got] == [f"u{n}" for n in range(len(cases))]
            assert srv.stats.bad_messages == len(cases)

    asyncio.run(main())


def test_ten_megabyte_line_without_newline_is_discarded_not_buffered(sock_dir: Path) -> None:
    async def main() -> None:
        cfg = cfg_for(sock_dir)  # max_message_bytes 65536
        async with serving(cfg) as srv:
            good = await LineClient.connect(srv.path)
            hog = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            hog.connect(str(srv.path))
            sent = threading.Event()

            def send_huge() -> None:  # blocking sends: the server must keep reading and dropping
                hog.sendall(b"x" * (10 * 1024 * 1024))
                hog.sendall(b'\n{"type":"ping","id":"after"}\n')
                sent.set()

            sender = threading.Thread(target=send_huge, daemon=True)
            sender.start()
            n = 0
            while not sent.is_set():  # finals keep flowing to the other client meanwhile
                srv.publish(final(n))
                assert (await good.recv())["utterance_id"] == f"u{n}"
                n += 1
                await asyncio.sleep(0.005)
            sender.join()
            lines = await asyncio.to_thread(_read_until_pong, hog)
            lines = [m for m in lines if m["type"] != "final"]  # it is subscribed to finals too
            assert [m["type"] for m in lines] == ["hello", "error", "pong"]
            assert lines[1]["code"] == "too_long" and lines[2]["id"] == "after"
            hog.close()
            assert n >= 1

    asyncio.run(main())


def _read_until_pong(sock: socket.socket) -> list[dict[str, Any]]:
    reader = sock.makefile("rb")
    out: list[dict[str, Any]] = []
    while not out or out[-1]["type"] != "pong":
        out.append(json.loads(reader.readline()))
    return out


def test_message_flood_does_not_starve_other_clients(sock_dir: Path) -> None:
    async def main() -> None:
        async with serving(cfg_for(sock_dir)) as srv:
            good = await LineClient.connect(srv.path)
            flooder = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            flooder.connect(str(srv.path))
            stop = threading.Event()

            def flood() -> None:
                burst = b'{"type":"ping"}\n' * 1000
                try:
                    while not stop.is_set():
                        flooder.sendall(burst)
                except OSError:
                    pass

            t = threading.Thread(target=flood, daemon=True)
            t.start()
            for n in range(30):
                srv.publish(final(n))
                assert (await good.recv())["utterance_id"] == f"u{n}"
                await asyncio.sleep(0.01)
            stop.set()
            # the flooder is served too (rate-limited), not dropped
            reader = flooder.makefile("rb")
            first = await asyncio.to_thread(lambda: [json.loads(reader.readline()) for _ in range(3)])
            assert [m["type"] for m in first] == ["hello", "pong", "pong"]
            flooder.shutdown(socket.SHUT_RDWR)
            flooder.close()
            t.join(IO_TIMEOUT_S)

    asyncio.run(main())


# --------------------------------------------------------------------------- backpressure


def test_slow_client_loses_partials_first_then_is_disconnected(sock_dir: Path) -> None:
    async def main() -> None:
        cfg = cfg_for(sock_dir, client_queue=8)
        async with serving(cfg) as srv:
            fast = await LineClient.connect(srv.path)
            slow = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # never reads until the end
            slow.connect(str(srv.path))
            await wait_until(lambda: srv.client_count == 2, "slow client registered")
            published: list[tuple[int, str]] = []

            async def publish_and_check(event: Any) -> None:
                srv.publish(event)
                published.append((srv.stats.last_seq, event.TYPE))
                got = await fast.recv()  # the fast client gets every event, immediately
                assert (got["seq"], got["type"]) == published[-1]

            text = "word " * 800  # 4 KB partials fill the slow client's buffers quickly
            for n in range(2000):
                await publish_and_check(partial(1, f"{n} {text}"))
                if srv.stats.partials_dropped:
                    break
            assert srv.stats.partials_dropped > 0
            assert srv.stats.disconnected_slow == 0, "partials alone must never disconnect a client"
            finals_before_cut = 0
            for n in range(100):
                await publish_and_check(final(n, f"final {n} {text}"))
                if srv.stats.disconnected_slow:
                    break
                finals_before_cut += 1
            assert srv.stats.disconnected_slow == 1
            # queued partials made room for finals before the client was cut off
            assert finals_before_cut >= cfg.client_queue
            assert srv.client_count == 1
            # the fast client is unaffected: more events keep flowing
            await publish_and_check(final(999, "after"))

            received = await asyncio.to_thread(lambda: [json.loads(line) for line in slow.makefile("rb")])
            slow.close()
            assert received[0]["type"] == "hello"
            assert [m["type"] for m in received[-2:]] == ["error", "bye"]
            assert received[-2]["code"] == "too_slow" and received[-1]["reason"] == "too_slow"
            events = received[1:-2]
            seqs = [m["seq"] for m in events]
            assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
            all_partials = [s for s, kind in published if kind == "partial"]
            got_partials = [m["seq"] for m in events if m["type"] == "partial"]
            assert len(got_partials) < len(all_partials)  # some partials were dropped for it
            got_finals = [m["seq"] for m in events if m["type"] == "final"]
            all_finals = [s for s, kind in published if kind == "final"]
            # every final it got is a gapless prefix of the finals: none lost silently
            assert got_finals == all_finals[: len(got_finals)]
            assert len(got_finals) >= finals_before_cut

    asyncio.run(main())


def test_client_vanishing_with_a_full_queue_is_cleaned_up(sock_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        async with serving(cfg_for(sock_dir, client_queue=8)) as srv:
            fast = await LineClient.connect(srv.path)
            gone = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            gone.connect(str(srv.path))
            await wait_until(lambda: srv.client_count == 2, "second client registered")
            text = "word " * 800
            for n in range(2000):  # until its queue is in use
                srv.publish(partial(1, f"{n} {text}"))
                await fast.recv()
                if srv.stats.partials_dropped:
                    break
            gone.close()  # vanishes with unread data and a full queue
            for n in range(5):
                srv.publish(final(n))
                assert (await fast.recv())["utterance_id"] == f"u{n}"
            await wait_until(lambda: srv.client_count == 1, "vanished client removed")
            assert srv.stats.disconnected_slow == 0

    with caplog.at_level("ERROR", logger="asyncio"):
        asyncio.run(main())
    assert not [r for r in caplog.records if r.name == "asyncio"], [r.getMessage() for r in caplog.records]


def test_max_clients_refused_with_error(sock_dir: Path) -> None:
    async def main() -> None:
        async with serving(cfg_for(sock_dir, max_clients=2)) as srv:
            a = await LineClient.connect(srv.path)
            b = await LineClient.connect(srv.path)
            c = await LineClient.connect(srv.path, expect_hello=False)
            msgs = await c.recv_all()
            assert [m["type"] for m in msgs] == ["error", "bye"]
            assert msgs[0]["code"] == "too_many_clients"
            assert srv.stats.rejected_full == 1
            await a.close()
            await wait_until(lambda: srv.client_count == 1, "slot freed")
            d = await LineClient.connect(srv.path)
            assert d.hello["type"] == "hello"
            await b.close()

    asyncio.run(main())


def test_half_closed_client_still_receives_events(sock_dir: Path) -> None:
    async def main() -> None:
        async with serving(cfg_for(sock_dir)) as srv:
            c = await LineClient.connect(srv.path)
            await c.send({"type": "subscribe", "events": ["final"]})
            await c.recv_type("subscribed")
            c.writer.write_eof()  # like `nc -N`: done sending, still listening
            await asyncio.sleep(0.05)  # let the server see the EOF (no assertion on time)
            srv.publish(final(5))
            assert (await c.recv())["utterance_id"] == "u5"
            assert srv.client_count == 1

    asyncio.run(main())


def test_publish_threadsafe_and_thread_check(sock_dir: Path) -> None:
    async def main() -> None:
        async with serving(cfg_for(sock_dir)) as srv:
            c = await LineClient.connect(srv.path)
            errors: list[BaseException] = []

            def from_thread() -> None:
                try:
                    srv.publish(final(1))
                except RuntimeError as e:
                    errors.append(e)
                for n in range(2, 6):
                    srv.publish_threadsafe(final(n))

            await asyncio.to_thread(from_thread)
            assert len(errors) == 1 and "publish_threadsafe" in str(errors[0])
            assert [(await c.recv())["utterance_id"] for _ in range(4)] == ["u2", "u3", "u4", "u5"]
            with pytest.raises(TypeError):
                srv.publish("final")  # type: ignore[arg-type]

    asyncio.run(main())


def test_close_sends_bye_after_queued_events_and_removes_socket(sock_dir: Path) -> None:
    async def main() -> None:
        cfg = cfg_for(sock_dir)
        srv = EventServer(cfg, hello=HelloInfo(model="m", sample_rate=16000))
        await srv.start()
        c = await LineClient.connect(cfg.path)
        srv.publish(final(1))
        await srv.close("reloading")
        assert not cfg.path.exists()
        msgs = await c.recv_all()
        assert [m["type"] for m in msgs] == ["final", "bye"] and msgs[1]["reason"] == "reloading"
        srv.publish(final(2))  # after close: ignored, no error
        await srv.close()  # idempotent
        with pytest.raises((ConnectionRefusedError, FileNotFoundError)):
            await asyncio.open_unix_connection(str(cfg.path))

    asyncio.run(main())


# --------------------------------------------------------------------------- the socket file


def test_socket_file_mode_and_private_directory(sock_dir: Path) -> None:
    async def main() -> None:
        old = os.umask(0)  # the configured mode must win over any umask
        try:
            async with serving(cfg_for(sock_dir)) as srv:
                assert stat.S_ISSOCK(os.stat(srv.path).st_mode)
                assert stat.S_IMODE(os.stat(srv.path).st_mode) == 0o660
                assert stat.S_IMODE(os.stat(srv.path.parent).st_mode) == 0o700
            async with serving(SocketConfig(path=sock_dir / "other.sock", mode="0600")) as srv:
                assert stat.S_IMODE(os.stat(srv.path).st_mode) == 0o600
                assert stat.S_IMODE(os.stat(sock_dir).st_mode) == 0o700  # existing dir left as it was
        finally:
            os.umask(old)

    asyncio.run(main())


@pytest.mark.skipif(not is_root, reason="chown to another group needs root")
def test_socket_group_and_group_readable_directory(sock_dir: Path) -> None:
    group = next((g for g in ("daemon", "nogroup", "users") if _group_exists(g)), None)
    if group is None:
        pytest.skip("no spare group on this system")
    gid = grp.getgrnam(group).gr_gid

    async def main() -> None:
        async with serving(cfg_for(sock_dir, group=group)) as srv:
            assert os.stat(srv.path).st_gid == gid
            assert stat.S_IMODE(os.stat(srv.path.parent).st_mode) == 0o750
            assert os.stat(srv.path.parent).st_gid == gid
        with pytest.raises(AmbientError, match="does not exist"):
            await EventServer(cfg_for(sock_dir, group="no-such-group-xyz"), hello=_hello()).start()

    asyncio.run(main())


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def _hello() -> HelloInfo:
    return HelloInfo(model="m", sample_rate=16000)


def test_stale_socket_is_replaced(sock_dir: Path) -> None:
    path = sock_dir / "ambient.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()  # the file stays, nobody accepts: a crashed daemon's leftover
    assert path.exists()
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with pytest.raises(ConnectionRefusedError):
        probe.connect(str(path))
    probe.close()

    async def main() -> None:
        with capture_logs() as logs:
            async with serving(SocketConfig(path=path)) as srv:
                c = await LineClient.connect(srv.path)
                assert c.hello["type"] == "hello"
        assert any(e["event"] == "removed stale socket" for e in logs)

    asyncio.run(main())


def test_live_daemon_on_the_path_is_a_clear_error(sock_dir: Path) -> None:
    async def main() -> None:
        cfg = cfg_for(sock_dir)
        async with serving(cfg) as first:
            second = EventServer(cfg, hello=_hello())
            with pytest.raises(AmbientError, match="already serving") as info:
                await second.start()
            assert "\n" not in str(info.value)
            await second.close()  # a daemon's cleanup after a failed start leaves the live socket alone
            assert cfg.path.exists()
            c = await LineClient.connect(first.path)  # the first one is untouched
            first.publish(final(1))
            assert (await c.recv())["type"] == "final"

    asyncio.run(main())


def test_foreign_listener_on_the_path_is_not_removed(sock_dir: Path) -> None:
    path = sock_dir / "ambient.sock"
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    other.bind(str(path))
    other.listen(1)

    async def main() -> None:
        with pytest.raises(AmbientError, match="already serving"):
            await EventServer(SocketConfig(path=path), hello=_hello()).start()

    try:
        asyncio.run(main())
        assert path.exists()
    finally:
        other.close()


def test_path_that_is_not_a_socket_is_refused(sock_dir: Path) -> None:
    path = sock_dir / "ambient.sock"
    path.write_text("important data")

    async def main() -> None:
        with pytest.raises(AmbientError, match="not a socket"):
            await EventServer(SocketConfig(path=path), hello=_hello()).start()

    asyncio.run(main())
    assert path.read_text() == "important data"


# --------------------------------------------------------------------------- allow-lists


@linux_only
def test_allow_list_denies_uid_not_listed_and_logs_it(sock_dir: Path) -> None:
    me = os.geteuid()

    async def main() -> None:
        cfg = cfg_for(sock_dir, allow_uids=[me + 12345], allow_root=False)
        with capture_logs() as logs:
            async with serving(cfg) as srv:
                c = await LineClient.connect(srv.path, expect_hello=False)
                msgs = await c.recv_all()
                assert [m["type"] for m in msgs] == ["error", "bye"]
                assert msgs[0]["code"] == "forbidden"
                assert srv.stats.rejected_forbidden == 1 and srv.client_count == 0
        refused = [e for e in logs if e["event"] == "client refused by allow-list"]
        assert refused and refused[0]["uid"] == me and refused[0]["pid"] == os.getpid()

    asyncio.run(main())


@linux_only
def test_allow_list_admits_listed_uid_gid_and_root_by_default(sock_dir: Path) -> None:
    me, my_gid = os.geteuid(), os.getegid()

    async def main() -> None:
        rules: list[dict[str, Any]] = [
            {"allow_uids": [me], "allow_root": False},
            {"allow_gids": [my_gid], "allow_root": False},
            {"allow_uids": [me + 12345]},  # root bypass is the default
        ]
        for i, kw in enumerate(rules):
            if "allow_root" not in kw and me != 0:
                continue
            async with serving(SocketConfig(path=sock_dir / f"s{i}.sock", **kw)) as srv:
                c = await LineClient.connect(srv.path)
                assert c.hello["type"] == "hello", kw

    asyncio.run(main())


_CHILD = """
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
print(json.loads(s.makefile("rb").readline())["type"], flush=True)
"""


@linux_only
@pytest.mark.skipif(not is_root, reason="needs root to run a client as another uid")
@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"allow_uids": [12345]}, "hello"),
        ({"allow_uids": [54321]}, "error"),
        ({"allow_gids": [12345]}, "hello"),
        ({"allow_gids": [54321], "allow_uids": [1]}, "error"),
    ],
)
def test_allow_list_with_a_real_other_user(sock_dir: Path, rule: dict[str, Any], expected: str) -> None:
    python = shutil.which("python3", path="/usr/bin:/bin")
    if python is None:
        pytest.skip("no system python3 runnable by another user")
    os.chmod(sock_dir, 0o755)  # an existing directory is left as is, so uid 12345 can reach the socket

    async def main() -> None:
        cfg = SocketConfig(path=sock_dir / "ambient.sock", mode=0o666, **rule)
        async with serving(cfg) as srv:
            proc = await asyncio.create_subprocess_exec(
                python,
                "-I",
                "-c",
                _CHILD,
                str(srv.path),
                user=12345,
                group=12345,
                extra_groups=[],
                stdout=asyncio.subprocess.PIPE,
            )
            out, _ = await asyncio.wait_for(proc.communicate(), IO_TIMEOUT_S)
            assert proc.returncode == 0
            assert out.decode().strip() == expected

    asyncio.run(main())


def test_allow_rule_unit() -> None:
    cred = PeerCredentials(pid=1, uid=1000, gid=1000)
    rule: dict[str, Any] = {"allow_uids": None, "allow_gids": None, "allow_root": True}
    assert is_allowed(cred, **rule)  # no lists: the file mode decides
    assert not is_allowed(cred, **{**rule, "allow_uids": [1001]})
    assert is_allowed(cred, **{**rule, "allow_uids": [1000]})
    assert not is_allowed(cred, **{**rule, "allow_gids": [50]})
    assert is_allowed(cred, **{**rule, "allow_gids": [50]}, groups=[1000, 50])  # supplementary group
    root = PeerCredentials(pid=1, uid=0, gid=0)
    assert is_allowed(root, **{**rule, "allow_uids": [1000]})
    assert not is_allowed(root, **{**rule, "allow_uids": [1000], "allow_root": False})
    assert 0 in user_groups(0, 0)
    assert user_groups(987654, 4321) == frozenset({4321})  # no passwd entry: primary gid only
