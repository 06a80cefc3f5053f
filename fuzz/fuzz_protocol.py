"""Coverage-guided fuzzing of the socket protocol parsers with atheris (libFuzzer for Python).

Not run in CI: it runs until it finds a crash or is stopped. Install and run (see
docs/reliability.md)::

    .venv/bin/pip install atheris            # or: pip install -e '.[fuzz]'
    .venv/bin/python fuzz/fuzz_protocol.py -max_total_time=600 -max_len=4096 fuzz/corpus/protocol

A crash is any exception other than ``ProtocolError`` from ``parse_client_message`` or
``parse_server_message``, or a broken invariant: an error message must be one line; the daemon must
be able to send a client's error back to it as an ``error`` line; and a line that parses must
re-encode to a line that parses to a message encoding to the same line (floats go out rounded to
microseconds: one round of rounding, then stable). libFuzzer writes the input that failed to
``crash-<sha1>`` in the current directory (or ``-artifact_prefix=DIR/``); replay it with
``fuzz/fuzz_protocol.py crash-<sha1>``.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from ambient.publish.protocol import (
        ErrorMessage,
        ProtocolError,
        parse_client_message,
        parse_server_message,
    )


def test_one_input(data: bytes) -> None:
    """One fuzzer input: a line as a client (or a daemon) could send it."""
    for parse in (parse_client_message, parse_server_message):
        try:
            msg = parse(data)
        except ProtocolError as e:
            text = str(e)
            if "\n" in text:
                raise AssertionError(f"multi-line error message: {text!r}") from None
            if parse is parse_client_message:  # the daemon answers a client's bad line with this
                ErrorMessage(code=e.code, message=text).to_json().encode("utf-8")
            continue
        line = msg.to_json()
        again = parse(line.encode("utf-8"))
        if again.to_json() != line or parse(again.to_json().encode("utf-8")) != again:
            raise AssertionError(f"round trip is not stable: {msg!r} -> {again!r}")


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
