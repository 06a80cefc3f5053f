"""Coverage-guided fuzzing of configuration loading (YAML text -> ``Config``) with atheris.

Not run in CI. Run it like fuzz/fuzz_protocol.py (see docs/reliability.md)::

    .venv/bin/python fuzz/fuzz_config.py -max_total_time=600 -max_len=2048 fuzz/corpus/config

A crash is any exception other than ``ConfigError``, or an error message that is not one short line.
"""

from __future__ import annotations

import os
import sys
import tempfile

import atheris

with atheris.instrument_imports():
    from ambient.config import load_config
    from ambient.errors import ConfigError

_MAX_MESSAGE = 400
_FD, _PATH = tempfile.mkstemp(prefix="ambient-fuzz-", suffix=".yaml")
os.close(_FD)


def test_one_input(data: bytes) -> None:
    """One fuzzer input: the bytes of a configuration file."""
    with open(_PATH, "wb") as f:
        f.write(data)
    try:
        load_config(_PATH, env={})
    except ConfigError as e:
        text = str(e)
        if "\n" in text or len(text) > _MAX_MESSAGE:
            raise AssertionError(f"not one short line: {text!r}") from None


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    try:
        atheris.Fuzz()
    finally:
        os.unlink(_PATH)


if __name__ == "__main__":
    main()
