"""The daemon that wires capture -> voice gate -> recognizer -> event log and socket.

- ``service``: startup, the asyncio loop, signals (SIGHUP reload, SIGTERM drain), ``run_daemon``;
- ``worker``: the recognition thread (gate, recognizer, utterance events);
- ``sink``: log-then-publish in one order from any thread;
- ``reload``: what a reload changes live and what needs a restart;
- ``preflight``: configuration checks that need the machine (files exist);
- ``notify``: systemd's notify protocol (READY, STATUS, WATCHDOG, STOPPING);
- ``memlock``: ``mlockall`` for ``model.mlock``;
- ``logstream``: the diagnostic log's stream, which never raises (a broken stderr costs lines, not the daemon);
- ``ids``: ULID utterance ids.

Import from the submodules; this package module stays empty so that ``ambient config check``
(which needs ``preflight``) does not load torch.
"""

__all__: list[str] = []
