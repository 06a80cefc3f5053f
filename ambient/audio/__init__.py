"""Audio in: capture (microphone, file, stdin), resampling, the voice-activity gate, features.

Modules: ``capture`` (supervised input, device loss and recovery), ``sources`` (the producers),
``blockqueue`` (the bounded hand-off), ``devices`` (PortAudio devices), ``resample`` (streaming
polyphase resampling), ``vad`` (the voice gate), ``features`` (log-mel), ``io`` (audio files).
Import from the submodules; this package module stays empty so that importing one part does not
load PortAudio or torch.
"""

__all__: list[str] = []
