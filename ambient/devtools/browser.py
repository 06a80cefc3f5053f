"""The caption page in a real browser, for tests and benchmarks: Debian's ``chromium``, headless,
driven by selenium through Debian's ``chromedriver`` (nothing is downloaded).

:class:`CaptionPage` opens the page and installs a recorder in it (a ``MutationObserver``) that
notes, with the browser's wall clock (``performance.timeOrigin + performance.now()``, the same
clock as ``time.time()`` on this machine), every partial text shown, every status line, and the
moment each final's text entered the DOM, so nothing that flashes by between two polls is missed.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from ambient.devtools.waiting import WAIT_S

__all__ = ["CHROMEDRIVER", "CHROMIUM", "CaptionPage", "browser_missing"]

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

#: Flags that work on a machine with no display, no GPU and no network beyond loopback.
_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1000,700",
)

_RECORDER = """
const now = () => performance.timeOrigin + performance.now();
const rec = window.__captions = {partials: [], statuses: [], finals: {}};
const partial = document.getElementById("partial"), status = document.getElementById("status");
const finals = document.getElementById("finals");
const note = () => {
  const t = partial.textContent;
  if (!partial.hidden && t && rec.partials[rec.partials.length - 1] !== t) rec.partials.push(t);
  const s = status.textContent;
  if (rec.statuses[rec.statuses.length - 1] !== s) rec.statuses.push(s);
  for (const li of finals.children) {
    if (!(li.dataset.id in rec.finals)) {
      rec.finals[li.dataset.id] = {at: now(), text: li.querySelector(".text").textContent};
    }
  }
};
const all = {subtree: true, childList: true, characterData: true, attributes: true};
new MutationObserver(note).observe(document.body, all);
note();
"""


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        return f"missing {', '.join(missing)} (scripts/setup.sh --dev: apt install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (scripts/setup.sh --dev)"
    return None


class CaptionPage:
    """The caption page at ``url`` in headless Chromium, with the recorder installed; downloads (the
    page's "Download .txt") go to ``downloads``."""

    def __init__(self, url: str, *, downloads: Path | None = None) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self._profile = Path(tempfile.mkdtemp(prefix="amb-chromium-"))
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for flag in (*_FLAGS, f"--user-data-dir={self._profile}"):
            options.add_argument(flag)
        self.driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
        try:
            if downloads is not None:  # headless Chromium saves downloads only where it is told to
                self.driver.execute_cdp_cmd(
                    "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
                )
            self.driver.get(url)
            self.driver.execute_script(_RECORDER)
        except BaseException:
            self.close()
            raise

    def record(self) -> dict[str, Any]:
        """What the recorder saw: ``partials`` (texts), ``statuses`` (status lines) and ``finals``
        (``{utterance_id: {"at": wall-clock s * 1000, "text": ...}}``)."""
        return dict(self.driver.execute_script("return window.__captions;"))

    def status(self) -> str:
        """The status line as shown now."""
        return str(self.driver.execute_script('return document.getElementById("status").textContent;'))

    def partial(self) -> str:
        """The partial as shown now ("" when none is shown)."""
        return str(
            self.driver.execute_script(
                'const p = document.getElementById("partial"); return p.hidden ? "" : p.textContent;'
            )
        )

    def finals(self) -> list[tuple[str, str]]:
        """``(utterance_id, text)`` of every final in the page, in order."""
        rows = self.driver.execute_script(
            'return [...document.querySelectorAll("#finals .final")].map(li => [li.dataset.id, '
            'li.querySelector(".text").textContent]);'
        )
        return [(str(i), str(t)) for i, t in rows]

    def run(self, script: str) -> Any:
        """Run JavaScript in the page; returns what it returns."""
        return self.driver.execute_script(script)

    def wait_for(self, what: str, cond: str, *, timeout: float = WAIT_S) -> None:
        """Poll the JavaScript expression ``cond`` until it is true; ``AssertionError`` with ``what``."""
        deadline = time.monotonic() + timeout
        while not self.driver.execute_script(f"return Boolean({cond});"):
            if time.monotonic() > deadline:
                raise AssertionError(f"the page never showed {what}; recorded: {self.record()}")
            time.sleep(0.05)

    def wait_status(self, text: str, *, timeout: float = WAIT_S) -> None:
        """Wait until the status line starts with ``text``."""
        self.wait_for(
            f"status {text!r}", f'document.getElementById("status").textContent.startsWith({text!r})', timeout=timeout
        )

    def wait_final(self, utterance_id: str, *, timeout: float = WAIT_S) -> str:
        """Wait until the final of ``utterance_id`` is in the page; returns its text."""
        self.wait_for(f"final {utterance_id}", f"window.__captions.finals[{utterance_id!r}]", timeout=timeout)
        return str(self.record()["finals"][utterance_id]["text"])

    def screenshot(self, path: Path) -> Path:
        """A PNG of the visible page."""
        self.driver.save_screenshot(str(path))
        return path

    def close(self) -> None:
        """Quit the browser and remove its profile."""
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> CaptionPage:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
