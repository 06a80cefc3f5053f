"""``ambient listen`` as a real subprocess against a real EventServer."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from publish_helpers import IO_TIMEOUT_S, T0, final, partial, serving, speech_start, status, wait_until

from ambient.config import SocketConfig


class Listen:
    """``ambient listen`` running as a child process."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, *args: str, env: dict[str, str] | None = None) -> Listen:
        full_env = {**os.environ, "TZ": "UTC", **(env or {})}
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "ambient",
            "listen",
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=full_env,
        )
        return cls(proc)

    async def line(self) -> bytes:
        assert self.proc.stdout is not None
        out = await asyncio.wait_for(self.proc.stdout.readline(), IO_TIMEOUT_S)
        assert out, "listen exited early: " + (await self.stderr())
        return out

    async def json_until(self, kind: str) -> list[dict[str, Any]]:
        got: list[dict[str, Any]] = []
        while not got or got[-1]["type"] != kind:
            got.append(json.loads(await self.line()))
        return got

    async def stderr_until(self, text: str) -> str:
        assert self.proc.stderr is not None
        seen = ""
        while text not in seen:
            chunk = await asyncio.wait_for(self.proc.stderr.readline(), IO_TIMEOUT_S)
            assert chunk, f"stderr ended before {text!r}: {seen!r}"
            seen += chunk.decode()
        return seen

    async def finish(self) -> tuple[int, bytes, str]:
        out, err = await asyncio.wait_for(self.proc.communicate(), IO_TIMEOUT_S)
        assert self.proc.returncode is not None
        return self.proc.returncode, out, err.decode()

    async def stderr(self) -> str:
        assert self.proc.stderr is not None
        return (await self.proc.stderr.read()).decode()


def test_json_output_is_every_message_one_object_per_line(sock_dir: Path) -> None:
    async def main() -> None:
        async with serving(SocketConfig(path=sock_dir / "ambient.sock")) as srv:
            listen = await Listen.start("--socket", str(srv.path), "--json", "--count", "2")
            head = await listen.json_until("subscribed")
            assert [m["type"] for m in head] == ["hello", "subscribed"]
            assert head[0]["instance"] == srv.instance
            srv.publish(speech_start(1))
            srv.publish(partial(1, "hel"))
            srv.publish(final(1, "hello there"))
            srv.publish(status("audio_lost"))
            srv.publish(final(2, "second"))
            srv.publish(final(3, "never printed"))
            code, out, err = await listen.finish()
            assert code == 0, err
            msgs = [json.loads(line) for line in out.splitlines()]
            assert [m["type"] for m in msgs] == ["speech_start", "partial", "final", "status", "final"]
            assert [m["seq"] for m in msgs] == [1, 2, 3, 4, 5]
            assert msgs[2]["text"] == "hello there" and msgs[2]["words"][0]["word"] == "hello"

    asyncio.run(main())


def test_events_option_selects_what_is_sent(sock_dir: Path) -> None:
    async def main() -> None:
        async with serving(SocketConfig(path=sock_dir / "ambient.sock")) as srv:
            listen = await Listen.start("--socket", str(srv.path), "--json", "--events", "final", "--once")
            sub = (await listen.json_until("subscribed"))[-1]
            assert sub["events"] == ["final"]
            srv.publish(partial(1))
            srv.publish(status())
            srv.publish(final(1, "only this"))
            code, out, _ = await listen.finish()
            assert code == 0
            assert [json.loads(line)["text"] for line in out.splitlines()] == ["only this"]

    asyncio.run(main())


def test_text_output_prints_finals_with_clock_time(sock_dir: Path) -> None:
    async def main() -> None:
        async with serving(SocketConfig(path=sock_dir / "ambient.sock")) as srv:
            # path from the environment; stdout is a pipe, so partials are not drawn
            listen = await Listen.start("--count", "2", env={"AMBIENT_SOCKET": str(srv.path)})
            # registered means greeted; events from here on reach it (before or after its subscribe)
            await wait_until(lambda: srv.client_count == 1, "listen connected")
            srv.publish(partial(1, "good mor"))
            srv.publish(final(1, "good morning", t=T0))
            srv.publish(status("audio_lost"))
            srv.publish(final(2, "second line", t=T0 + 3661))
            code, out, err = await listen.finish()
            assert code == 0, err
            assert out.decode() == "[22:13:20] good morning\n[23:14:21] second line\n"
            assert "status audio_lost" in err

    asyncio.run(main())


def test_reconnects_when_the_daemon_restarts(sock_dir: Path) -> None:
    async def main() -> None:
        cfg = SocketConfig(path=sock_dir / "ambient.sock")
        listen = await Listen.start("--socket", str(cfg.path), "--json", "--once")
        await listen.stderr_until("waiting for the daemon")  # started before the daemon
        async with serving(cfg) as first:
            head = await listen.json_until("subscribed")
            assert head[0]["instance"] == first.instance
        bye = await listen.json_until("bye")
        assert bye[-1]["reason"] == "shutdown"
        await listen.stderr_until("reconnecting")
        async with serving(cfg) as second:
            head = await listen.json_until("subscribed")
            assert head[0]["instance"] == second.instance != first.instance
            await listen.stderr_until("restarted daemon")
            second.publish(final(1, "after restart"))
            code, out, _ = await listen.finish()
            assert code == 0
            assert json.loads(out)["text"] == "after restart"

    asyncio.run(main())


def test_ctrl_c_exits_zero(sock_dir: Path) -> None:
    async def main() -> None:
        async with serving(SocketConfig(path=sock_dir / "ambient.sock")) as srv:
            listen = await Listen.start("--socket", str(srv.path), "--json")
            await listen.json_until("subscribed")
            listen.proc.send_signal(signal.SIGINT)
            code, _, err = await listen.finish()
            assert code == 0, err
            assert "Traceback" not in err

    asyncio.run(main())


def test_no_reconnect_fails_with_one_line_error(sock_dir: Path) -> None:
    async def main() -> None:
        listen = await Listen.start("--socket", str(sock_dir / "nobody.sock"), "--no-reconnect")
        code, out, err = await listen.finish()
        assert code == 1 and out == b""
        assert err.startswith("ambient: error: cannot connect to ") and err.count("\n") == 1

    asyncio.run(main())


def test_refused_client_exits_with_the_reason(sock_dir: Path) -> None:
    async def main() -> None:
        cfg = SocketConfig(path=sock_dir / "ambient.sock", allow_uids=[os.geteuid() + 4242], allow_root=False)
        async with serving(cfg) as srv:
            listen = await Listen.start("--socket", str(srv.path))
            code, _, err = await listen.finish()
            assert code == 1
            assert "refused" in err and "forbidden" in err and "Traceback" not in err

    asyncio.run(main())


def test_partials_redraw_one_line_on_a_terminal(sock_dir: Path) -> None:
    import pty

    async def main() -> None:
        master, slave = pty.openpty()
        try:
            async with serving(SocketConfig(path=sock_dir / "ambient.sock")) as srv:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "ambient",
                    "listen",
                    "--socket",
                    str(srv.path),
                    "--once",
                    stdout=slave,
                    stderr=asyncio.subprocess.PIPE,
                    env={**os.environ, "TZ": "UTC", "COLUMNS": "80"},
                )
                os.close(slave)
                slave = -1
                # greeted: partials reach it (all types before its subscribe, which includes them on a tty)
                await wait_until(lambda: srv.client_count == 1, "listen connected")
                srv.publish(partial(1, "good mor"))
                srv.publish(partial(1, "good morning every"))
                srv.publish(final(1, "good morning everyone"))
                await asyncio.wait_for(proc.wait(), IO_TIMEOUT_S)
                assert proc.returncode == 0
                out = await asyncio.to_thread(_drain_pty, master)
        finally:
            os.close(master)
            if slave >= 0:
                os.close(slave)
        text = out.decode()
        assert "\r\x1b[K[22:13:20] good mor" in text
        assert "\r\x1b[K[22:13:20] good morning every" in text
        # the final replaces the partial line and ends it
        assert text.endswith("\r\x1b[K[22:13:20] good morning everyone\r\n")

    asyncio.run(main())


def _drain_pty(fd: int) -> bytes:
    out = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the child side is closed and everything was read
            return out
        if not chunk:
            return out
        out += chunk
