"""Support code for ambient's tests and benchmarks, in the spirit of ``numpy.testing``: the daemon
never imports it.

- :mod:`~ambient.devtools.pulse`: a private PulseAudio server with a virtual microphone.
- :mod:`~ambient.devtools.daemon`: configurations, and ``ambient run`` as a subprocess.
- :mod:`~ambient.devtools.notify`: the ``NOTIFY_SOCKET`` a service manager would listen on.
- :mod:`~ambient.devtools.client`: clients of the daemon's socket, raw or ``ambient listen --json``.
- :mod:`~ambient.devtools.waiting`: the hang guard every wait shares.

Failures raise ``AssertionError`` with what was seen so far, as a test expects; nothing here asserts
on how long something took.
"""

__all__: list[str] = []
