"""The caption page in a real browser (headless Debian chromium driven by selenium) following a real
daemon on the virtual microphone: speech is synthesized and played in, the page shows partials and
then the same final text that ``ambient listen`` received; the daemon restarts, the page says so,
reconnects and shows the next final. The model has random weights: the words are noise, the flow
is real, so the page is compared with the socket client, never with the sentence."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ambient.devtools.browser import CaptionPage, browser_missing
from ambient.devtools.captions import CaptionsProcess
from ambient.devtools.client import Listener
from ambient.devtools.daemon import DaemonProcess, daemon_config, write_config
from ambient.devtools.missing import missing_part

pytestmark = pytest.mark.slow


def _final_shown(page: CaptionPage, final: dict[str, Any]) -> None:
    """The page shows ``final`` as the socket client got it (an empty final is not shown)."""
    if final["text"]:
        assert page.wait_final(final["utterance_id"]) == final["text"]
    else:
        page.wait_for("the partial cleared", 'document.getElementById("partial").hidden')


def test_page_follows_the_daemon_across_a_restart(
    pulse: Any, synth: Callable[..., Path], compose: Callable[..., Path], tiny_checkpoint: Path, tmp_path: Path
) -> None:
    if why := browser_missing():
        missing_part(why)
    wav_a = compose(tmp_path / "a.wav", [0.3, synth("turn on the kitchen light"), 1.2])
    wav_b = compose(tmp_path / "b.wav", [0.3, synth("what is the weather like tomorrow", "flite"), 1.2])
    cfg = write_config(
        tmp_path / "config.yaml",
        daemon_config(tmp_path, tiny_checkpoint, audio={"source": "mic"}, event_log={"fsync": "never"}),
    )
    sock = tmp_path / "ambient.sock"
    daemon = DaemonProcess(config=cfg, workdir=tmp_path, env=pulse.client_env())
    captions = CaptionsProcess(sock, tmp_path)
    listener = Listener(sock, reconnect=True)
    page: CaptionPage | None = None
    try:
        daemon.wait_ready()
        listener.wait_type("hello")
        page = CaptionPage(captions.url)
        page.wait_status("listening")

        assert pulse.play(wav_a).wait(timeout=60) == 0
        (first,) = listener.wait_type("final")
        _final_shown(page, first)
        partials = [m["text"] for m in listener.of_type("partial") if m["utterance_id"] == first["utterance_id"]]
        seen = page.record()["partials"]
        assert partials and seen, (partials, seen)
        assert set(seen) <= set(partials), (seen, partials)  # the page coalesces, never invents

        assert daemon.stop() == 0
        page.wait_status("daemon not running")
        daemon = DaemonProcess(config=cfg, workdir=tmp_path, env=pulse.client_env())
        daemon.wait_ready()
        page.wait_status("listening")
        listener.wait_type("hello", count=2)

        assert pulse.play(wav_b).wait(timeout=60) == 0
        second = listener.wait_type("final", count=2)[1]
        _final_shown(page, second)
        shown = [text for _, text in page.finals()]
        assert shown == [f["text"] for f in (first, second) if f["text"]]
        assert shown, "the random model's finals were empty: nothing was compared"
    finally:
        if page is not None:
            page.close()
        listener.close()
        assert captions.stop() == 0
        daemon.close()
