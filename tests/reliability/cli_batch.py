"""Run several ``ambient`` command lines in one interpreter (torch is imported once) and print, as
JSON, each one's exit status, what it wrote to stderr, and any exception that escaped ``main()``
(which, in a real process, would have been a traceback)."""

from __future__ import annotations

import contextlib
import io
import json
import sys
import traceback
from typing import Any

from ambient.cli.main import main


def run_all(commands: list[list[str]]) -> list[dict[str, Any]]:
    results = []
    for argv in commands:
        err = io.StringIO()
        code: object = None
        escaped: str | None = None
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = main(argv)
            except SystemExit as e:
                code = e.code
            except BaseException:
                escaped = traceback.format_exc()
        results.append({"argv": argv, "code": code, "stderr": err.getvalue(), "exception": escaped})
    return results


if __name__ == "__main__":
    print(json.dumps(run_all(json.loads(sys.stdin.read()))))
