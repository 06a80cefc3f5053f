"""What a SIGHUP reload applies live and what waits for a restart."""

from __future__ import annotations

from pathlib import Path

from ambient.config import Config, parse_config
from ambient.daemon.reload import plan_reload


def cfg(**sections: dict[str, object]) -> Config:
    base: dict[str, object] = {"model": {"path": "/m/model.pt"}, "socket": {"path": "/tmp/x.sock"}}
    base.update(sections)
    return parse_config(base, env={})


def test_no_changes() -> None:
    plan = plan_reload(cfg(), cfg())
    assert not plan.changed and plan.applied == () and plan.restart_needed == ()


def test_live_sections_are_applied() -> None:
    new = cfg(vad={"hangover_ms": 900}, logging={"level": "debug"}, recognizer={"partials": False})
    plan = plan_reload(cfg(), new)
    assert set(plan.applied) == {"vad", "logging", "recognizer"}
    assert plan.restart_needed == ()
    assert plan.effective.vad.hangover_ms == 900
    assert plan.effective.recognizer.partials is False


def test_restart_only_settings_keep_their_running_values() -> None:
    running = cfg()
    new = cfg(
        model={"path": "/other/model.pt", "threads": 2},
        socket={"path": "/tmp/y.sock"},
        recognizer={
            "chunk_ms": 320,
            "lm": False,  # YAML's unquoted `off` is False
            "lm_weight": 2.0,
            "blank_penalty": 0.0,
            "final_beam_size": 64,
        },
        audio={"device": "usb"},
    )
    assert new.recognizer.lm == "off"
    plan = plan_reload(running, new)
    assert plan.applied == ("audio",)
    assert set(plan.restart_needed) == {
        "model.path",
        "model.threads",
        "socket.path",
        "recognizer.chunk_ms",
        "recognizer.lm",
        "recognizer.lm_weight",
        "recognizer.blank_penalty",
        "recognizer.final_beam_size",
    }
    assert plan.effective.model == running.model
    assert plan.effective.socket == running.socket
    assert plan.effective.recognizer == running.recognizer
    assert plan.effective.audio.device == "usb"
    again = plan_reload(plan.effective, new)  # still reported until the restart
    assert set(again.restart_needed) == set(plan.restart_needed) and again.applied == ()


def test_event_log_changes_are_live(tmp_path: Path) -> None:
    plan = plan_reload(cfg(), cfg(event_log={"path": str(tmp_path / "e.jsonl"), "metadata_only": True}))
    assert plan.applied == ("event_log",)
