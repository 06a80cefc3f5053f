"""The page's own behaviour in headless chromium, fed by a stand-in daemon: auto-scroll that stops
while the reader looks at older lines, the "latest" button, the status line following the daemon's
status events, and the download of the finals as text."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ambient.devtools.browser import CaptionPage, browser_missing
from ambient.devtools.captions import CaptionsProcess, FakeDaemon
from ambient.devtools.missing import missing_part
from ambient.devtools.waiting import wait_until

pytestmark = pytest.mark.slow

_AT_BOTTOM = "window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 48"


def test_scrolling_and_download(tmp_path: Path) -> None:
    if why := browser_missing():
        missing_part(why)
    daemon = FakeDaemon(tmp_path / "d.sock")
    captions = CaptionsProcess(daemon.path, tmp_path)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    t0 = time.mktime((2026, 12, 6, 9, 15, 0, 0, 0, -1))  # local time 09:15:00
    try:
        with CaptionPage(captions.url, downloads=downloads) as page:
            page.wait_status("listening")
            for i in range(30):
                daemon.final(f"line {i}", start=t0 + i)
            page.wait_for("30 finals", 'document.querySelectorAll("#finals .final").length === 30')
            page.wait_for("the newest line in view", _AT_BOTTOM)

            page.run("window.scrollTo(0, 0);")  # the reader scrolls up to an older line
            page.wait_for("the latest button", '!document.getElementById("latest").hidden')
            daemon.final("line 30", start=t0 + 30)
            page.wait_for("31 finals", 'document.querySelectorAll("#finals .final").length === 31')
            assert page.run("return window.scrollY;") == 0  # not pulled back down

            page.run('document.getElementById("latest").click();')
            page.wait_for("the newest line in view again", _AT_BOTTOM)
            page.wait_for("the latest button hidden", 'document.getElementById("latest").hidden')

            page.run('document.getElementById("download").click();')
            wait_until(lambda: [p for p in downloads.glob("captions-*.txt")], what="the downloaded transcript")
            (saved,) = downloads.glob("captions-*.txt")
            expected = "".join(f"[09:15:{i:02d}] line {i}\n" for i in range(31))
            wait_until(lambda: saved.read_text() == expected, what=f"the transcript, got {saved.read_text()!r}")

            daemon.status("audio_lost", "no input for 3 s")
            page.wait_status("audio lost: no input for 3 s")
            daemon.status("audio_restored")
            page.wait_status("listening")

            page.run('document.getElementById("copy").click();')
            page.wait_for("the copy confirmed", 'document.getElementById("copy").textContent === "Copied"')
    finally:
        assert captions.stop() == 0
        daemon.close()
