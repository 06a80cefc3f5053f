"""Spoken-command sentences from Home Assistant's English intent templates.

What people say to a home assistant ("turn off the kitchen lights", "is the garage door open",
"set a timer for five minutes") is short, imperative and full of room and device names: sentence
styles that the read prose of the shared text folder lacks. Home Assistant's own templates
(``home-assistant-intents``, parsed and expanded by ``hassil``, both maintained by the Home
Assistant project) give those sentences; the entity lists they leave open (``area``, ``name``,
``floor``) are filled from :data:`AREAS`, :data:`DEVICES` and :data:`FLOORS`, and the free-text
wildcards (timer names, shopping items) from a few common values.

The sentences feed two things: the synthesized command speech (``ambient data synth --text-dir``)
and the word LM's text (``ambient data lm``). They are normalized like every transcript
(:func:`ambient.text.normalize.normalize_text`) and deduplicated; the order is seeded.

Both packages are training-time dependencies (``scripts/setup.sh --train``), never imported by the
daemon.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from pathlib import Path

from ambient.text.normalize import normalize_text

__all__ = ["AREAS", "DEVICES", "FLOORS", "WILDCARD_VALUES", "command_sentences", "write_command_text"]

#: Rooms of a home, as people name them.
AREAS: tuple[str, ...] = (
    "kitchen", "living room", "bedroom", "master bedroom", "kids room", "bathroom", "office",
    "garage", "hallway", "dining room", "basement", "attic", "guest room", "laundry room", "porch",
    "garden", "patio", "nursery", "study", "den", "front yard", "back yard", "entrance", "pantry",
)  # fmt: skip

#: Devices and entities, as they are named in a typical installation.
DEVICES: tuple[str, ...] = (
    "ceiling light", "desk lamp", "floor lamp", "kitchen lights", "porch light", "night light",
    "reading lamp", "christmas tree", "tv", "television", "stereo", "speaker", "coffee maker",
    "dishwasher", "washing machine", "dryer", "fan", "ceiling fan", "heater", "air conditioner",
    "thermostat", "garage door", "front door", "back door", "blinds", "curtains", "shades",
    "window", "sprinklers", "vacuum", "robot vacuum", "humidifier", "air purifier", "kettle",
    "oven", "fridge", "freezer", "alarm", "doorbell", "camera", "smoke detector", "water heater",
)  # fmt: skip

#: Floors.
FLOORS: tuple[str, ...] = ("first floor", "second floor", "ground floor", "upstairs", "downstairs", "basement")

#: Values for the templates' free-text lists, so that sentences using them are not lost.
WILDCARD_VALUES: dict[str, tuple[str, ...]] = {
    "timer_name": ("pizza", "pasta", "eggs", "laundry", "tea", "nap"),
    "shopping_list_item": ("milk", "eggs", "bread", "apples", "coffee", "paper towels", "butter"),
    "todo_list_item": ("call mom", "pay the bills", "water the plants", "take out the trash"),
    "search_query": ("jazz", "the beatles", "rain sounds", "the news"),
    "message": ("dinner is ready", "time for bed", "i am on my way"),
    "zone": ("home", "work", "school"),
    "timer_command": ("turn off the lights", "turn on the fan"),
}


def command_sentences(*, per_intent: int = 4000, seed: int = 0) -> list[str]:
    """Expanded, normalized and deduplicated Home Assistant command sentences, in a seeded order.

    Args:
        per_intent: at most this many sentences are expanded per intent (the templates expand to
            millions; the first ones of each template are kept, so every template contributes).
        seed: order of the returned list.

    Raises:
        ImportError: ``hassil`` or ``home-assistant-intents`` is not installed.
    """
    from hassil.intents import Intents, SlotList, TextSlotList
    from hassil.sample import sample_intents
    from home_assistant_intents import get_intents

    data = get_intents("en")
    if data is None:
        raise ImportError("home-assistant-intents has no English intents")
    intents = Intents.from_dict(data)
    lists: dict[str, SlotList] = {
        "area": TextSlotList.from_strings(AREAS),
        "name": TextSlotList.from_strings(DEVICES),
        "floor": TextSlotList.from_strings(FLOORS),
        **{k: TextSlotList.from_strings(v) for k, v in WILDCARD_VALUES.items()},
    }
    seen: set[str] = set()
    out: list[str] = []
    for _intent, text in sample_intents(
        intents,
        slot_lists=lists,
        max_sentences_per_intent=per_intent,
        exclude_sentences_with_wildcards=False,
        language="en",
    ):
        norm = normalize_text(text)
        if norm and norm not in seen:
            seen.add(norm)
            out.append(norm)
    random.Random(seed).shuffle(out)
    return out


def write_command_text(path: Path, sentences: Iterable[str]) -> int:
    """Write one sentence a line (creating the folder); returns how many were written."""
    lines = list(sentences)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(s + "\n" for s in lines), encoding="utf-8")
    return len(lines)
