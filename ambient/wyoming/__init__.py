"""The Wyoming speech-to-text server (``ambient wyoming``): Home Assistant's protocol, with streaming
transcripts, on the ``wyoming`` package's events (see docs/protocol.md, "Wyoming")."""
