"""Input devices as PortAudio sees them: listing, choosing one by name or index, and re-scanning.

PortAudio enumerates devices once, when it is initialized. A device that appears later (a USB
microphone plugged in, a PulseAudio/PipeWire server restarted) is invisible until PortAudio is
re-initialized, so :func:`rescan` is called before every attempt to reopen a lost device.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ambient.errors import AudioError

__all__ = ["InputDevice", "find_input_device", "list_input_devices", "rescan"]


@dataclass(frozen=True, kw_only=True)
class InputDevice:
    """One capture device: PortAudio ``index``, ``name``, host API, ``channels`` (max input
    channels), ``default_rate`` (Hz), and whether it is the default input."""

    index: int
    name: str
    hostapi: str
    channels: int
    default_rate: float
    default: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return asdict(self)


def _sd() -> Any:
    try:
        import sounddevice as sd
    except OSError as e:  # libportaudio2 missing
        raise AudioError(f"PortAudio is not available ({e}); install libportaudio2") from None
    return sd


def list_input_devices() -> list[InputDevice]:
    """Every device with at least one input channel, in PortAudio order."""
    sd = _sd()
    try:
        devices = sd.query_devices()
        hostapis = sd.query_hostapis()
    except sd.PortAudioError as e:
        raise AudioError(f"cannot list audio devices: {e}") from None
    try:
        default_in = int(sd.default.device[0])
    except (TypeError, ValueError, IndexError):
        default_in = -1
    if default_in < 0:
        try:
            default_in = int(sd.query_devices(kind="input")["index"])
        except sd.PortAudioError:
            default_in = -1
    out: list[InputDevice] = []
    for d in devices:
        if int(d["max_input_channels"]) < 1:
            continue
        out.append(
            InputDevice(
                index=int(d["index"]),
                name=str(d["name"]),
                hostapi=str(hostapis[int(d["hostapi"])]["name"]),
                channels=int(d["max_input_channels"]),
                default_rate=float(d["default_samplerate"]),
                default=int(d["index"]) == default_in,
            )
        )
    return out


def find_input_device(spec: str | int | None) -> InputDevice:
    """The device for ``audio.device``: an index, a case-insensitive name substring (an exact
    name wins over substrings), or None for the default input. Raises :class:`AudioError`."""
    devices = list_input_devices()
    if not devices:
        raise AudioError("no audio input devices found")
    if spec is None:
        for d in devices:
            if d.default:
                return d
        return devices[0]
    if isinstance(spec, int):
        for d in devices:
            if d.index == spec:
                return d
        raise AudioError(f"no input device with index {spec} (see `ambient devices`)")
    wanted = spec.lower()
    exact = [d for d in devices if d.name.lower() == wanted]
    if exact:
        return exact[0]
    matches = [d for d in devices if wanted in d.name.lower()]
    if not matches:
        raise AudioError(f"no input device matches {spec!r} (see `ambient devices`)")
    if len(matches) > 1:
        names = ", ".join(f"{d.index}: {d.name}" for d in matches)
        raise AudioError(f"input device {spec!r} is ambiguous ({names}); use an index or a longer name")
    return matches[0]


def rescan() -> None:
    """Re-initialize PortAudio so devices that appeared or came back are seen. Only call it while
    no stream is open."""
    sd = _sd()
    # sounddevice has no public re-scan; its private helpers wrap Pa_Terminate/Pa_Initialize.
    # Without this, a stream cannot be reopened after the PulseAudio server restarted
    # ("Error querying device -1"), as measured with the test suite's virtual microphone.
    try:
        sd._terminate()
        sd._initialize()
    except sd.PortAudioError as e:
        raise AudioError(f"cannot re-initialize PortAudio: {e}") from None
