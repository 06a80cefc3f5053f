"""``ambient data prepare|synth|lm``: build training manifests, synthesize speech, build a language model.

- ``ambient data prepare shared DIR --out M [--dev-out D]``: the shared data folder's corpora, with a
  development split (held-out speakers and a text-disjoint slice of chosen corpora).
- ``ambient data prepare librispeech DIR --out M``: a LibriSpeech-layout tree.
- ``ambient data prepare tsv FILE --out M --speaker S``: a generic ``path<TAB>text`` file.
- ``ambient data synth --hours H --out DIR``: a synthetic corpus (resumable; see ``ambient.train.synth``).
- ``ambient data lm --exclude data/dev.jsonl --out DIR``: a word n-gram language model and lexicon for
  lexicon decoding, with held-out transcripts kept out of it (see ``ambient.train.ngram``).

Entries that cannot be used (missing, unreadable or empty audio, no transcript) are counted and the
first few named on stderr; they never stop a run.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ambient.train.ngram_defaults import MIN_COUNTS, ORDER, VOCAB_SIZE

if TYPE_CHECKING:
    from ambient.train.manifest import Utterance
    from ambient.train.readers import Skipped

__all__ = ["register"]

_SHOW_SKIPPED = 5


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``data`` subcommand with ``prepare``, ``synth`` and ``lm``."""
    data = sub.add_parser("data", help="prepare training manifests, synthesize speech, build a word language model")
    dsub = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    prep = dsub.add_parser("prepare", help="write a JSON-lines manifest for a corpus")
    psub = prep.add_subparsers(dest="layout", metavar="LAYOUT", required=True)

    shared = psub.add_parser("shared", help="the shared data folder (corpus/manifest.tsv per corpus)")
    shared.add_argument("src", type=Path, metavar="SRC", help="the shared data folder")
    shared.add_argument("--out", type=Path, required=True, help="training manifest to write")
    shared.add_argument("--dev-out", type=Path, help="development manifest to write (else dev is left out)")
    shared.add_argument(
        "--dev-speakers", default="yweweler", help="comma-separated held-out speakers (default: yweweler)"
    )
    shared.add_argument(
        "--dev-percent", type=float, default=8.0, help="share of each sliced corpus held out for dev (default: 8)"
    )
    shared.add_argument(
        "--dev-corpora",
        default="cathy_arctic,ljspeech_part1",
        help="comma-separated corpora that contribute a dev slice (default: cathy_arctic,ljspeech_part1)",
    )
    shared.add_argument(
        "--unseen-out",
        type=Path,
        help="speaker-disjoint dev manifest to write: held-out speakers of several corpora (readers.UNSEEN_RULES), "
        "none of whose utterances train; also writes its -sentences and -commands parts beside it",
    )
    shared.add_argument(
        "--unseen-per-speaker",
        type=int,
        default=4,
        help="utterances of each held-out speaker kept for the unseen dev set (default: 4; the rest are dropped)",
    )
    shared.set_defaults(func=_prepare_shared)

    libri = psub.add_parser("librispeech", help="a LibriSpeech-layout tree (speaker/chapter/*.trans.txt)")
    libri.add_argument("src", type=Path, metavar="SRC", help="the tree's root (e.g. LibriSpeech/dev-clean)")
    libri.add_argument("--out", type=Path, required=True, help="manifest to write")
    libri.add_argument("--source", help="corpus name stored in the manifest (default: librispeech/<dir name>)")
    libri.set_defaults(func=_prepare_librispeech)

    tsv = psub.add_parser("tsv", help="a path<TAB>text file (paths relative to the file)")
    tsv.add_argument("src", type=Path, metavar="SRC", help="the TSV file")
    tsv.add_argument("--out", type=Path, required=True, help="manifest to write")
    tsv.add_argument("--speaker", help="speaker id of every line (default: the file's stem)")
    tsv.add_argument("--source", help="corpus name (default: the file's stem)")
    tsv.set_defaults(func=_prepare_tsv)

    syn = dsub.add_parser(
        "synth",
        help="synthesize a speech corpus from the shared sentences",
        description="Synthesize 16 kHz FLAC + manifest.jsonl into --out with every installed engine. "
        "Re-running the same command resumes. Reserved voices (flite:slt and festival's slt HTS voice) are "
        "used only when named with --voices; with only reserved voices the held-out sentences are used.",
    )
    syn.add_argument("--hours", type=float, help="hours of audio to plan (estimated from word counts)")
    syn.add_argument("--out", type=Path, help="output folder (audio/, manifest.jsonl, stats.json)")
    syn.add_argument("--workers", type=int, default=1, help="worker processes (default: 1)")
    syn.add_argument("--seed", type=int, default=0, help="seed of the plan (default: 0)")
    syn.add_argument("--engines", help="comma-separated engines: piper,festival,flite,espeak (default: all installed)")
    syn.add_argument(
        "--voices", nargs="+", metavar="ENGINE[:VOICE[:VARIANT]]", help="voices to use instead of the default set"
    )
    syn.add_argument("--text-dir", type=Path, help="folder of sentence files (default: the shared data's text/)")
    syn.add_argument(
        "--text-split",
        choices=("auto", "train", "heldout"),
        default="auto",
        help="sentences to draw from (default auto: heldout for reserved voices only, else train)",
    )
    syn.add_argument("--list-voices", action="store_true", help="list installed voices and their weights, then exit")
    syn.add_argument("--no-progress", action="store_true", help="no progress bar")
    syn.set_defaults(func=_synth)

    cmd = dsub.add_parser(
        "commands",
        help="write Home Assistant command sentences (hassil + home-assistant-intents) for synthesis and the LM",
        description="Expand Home Assistant's English intent templates with room, device and floor names "
        "(ambient/train/command_text.py), normalize and deduplicate them, and write one sentence a line.",
    )
    cmd.add_argument("--out", type=Path, required=True, help="text file to write (e.g. data/text_commands/ha.txt)")
    cmd.add_argument("--per-intent", type=int, default=2000, help="sentences expanded per intent (default: 2000)")
    cmd.add_argument("--seed", type=int, default=0, help="seed of the order (default: 0)")
    cmd.set_defaults(func=_commands)

    lm = dsub.add_parser(
        "lm",
        help="build a word n-gram language model (ARPA) and a lexicon from the shared sentences",
        description="Normalize the sentences of --text/*.txt, drop every sentence equal to or sharing a word "
        "6-gram with a transcript of an --exclude manifest, estimate an interpolated modified Kneser-Ney "
        "model and write OUT/lm.arpa.gz (or lm.arpa), OUT/lexicon.txt and OUT/lm.json (statistics, "
        "dev OOV rate and perplexity).",
    )
    lm.add_argument("--text", type=Path, help="folder of sentence files (default: the shared data's text/)")
    lm.add_argument(
        "--exclude",
        type=Path,
        nargs="+",
        action="extend",
        default=[],
        metavar="MANIFEST",
        help="JSON-lines manifests whose transcripts are held out (and evaluated on); repeatable",
    )
    lm.add_argument("--out", type=Path, required=True, help="output folder")
    lm.add_argument("--order", type=int, default=ORDER, help=f"n-gram order (default: {ORDER})")
    lm.add_argument("--vocab", type=int, default=VOCAB_SIZE, help=f"most frequent words kept (default: {VOCAB_SIZE})")
    min_counts = ",".join(map(str, MIN_COUNTS))
    lm.add_argument(
        "--min-count",
        default=min_counts,
        help=f"minimum count per order, unigrams first; the last value repeats (default: {min_counts})",
    )
    lm.add_argument("--plain", action="store_true", help="write lm.arpa instead of gzip-compressed lm.arpa.gz")
    lm.set_defaults(func=_lm)

    lmb = dsub.add_parser(
        "lm-binary",
        help="write an LM folder's ARPA model as KenLM's binary trie lm.bin (a third of the memory)",
        description="Convert DIR/lm.arpa[.gz] to DIR/lm.bin with KenLM's build_binary (8-bit quantized trie; "
        "scripts/build_kenlm.sh compiles the tool). The daemon prefers lm.bin when a folder has both; "
        "--drop-arpa removes the ARPA file afterwards.",
    )
    lmb.add_argument("folder", type=Path, help="LM folder made by `ambient data lm`")
    lmb.add_argument("--drop-arpa", action="store_true", help="remove the ARPA file once lm.bin is written")
    lmb.set_defaults(func=_lm_binary)


def _commands(args: argparse.Namespace) -> int:
    from ambient.errors import AmbientError

    if args.per_intent < 1:
        raise AmbientError(f"--per-intent must be at least 1, not {args.per_intent}")
    from ambient.train.command_text import command_sentences, write_command_text

    try:
        sentences = command_sentences(per_intent=args.per_intent, seed=args.seed)
    except ImportError as e:
        raise AmbientError(f"{e}: install the training tools (scripts/setup.sh --train)") from e
    n = write_command_text(args.out, sentences)
    print(f"{args.out}: {n} sentences")
    return 0


def _report_skipped(skipped: Sequence[Skipped]) -> None:
    if not skipped:
        return
    print(f"ambient: skipped {len(skipped)} entries:", file=sys.stderr)
    for s in skipped[:_SHOW_SKIPPED]:
        print(f"  {s.path}: {s.reason}", file=sys.stderr)
    if len(skipped) > _SHOW_SKIPPED:
        print(f"  ... and {len(skipped) - _SHOW_SKIPPED} more", file=sys.stderr)


def _summary(path: Path, utts: Sequence[Utterance]) -> str:
    hours = sum(u.duration for u in utts) / 3600
    speakers = len({u.speaker for u in utts})
    return f"{path}: {len(utts)} utterances, {hours:.2f} h, {speakers} speakers"


def _csv(s: str) -> list[str]:
    return [x.strip() for x in s.split(",") if x.strip()]


def _prepare_shared(args: argparse.Namespace) -> int:
    from ambient.errors import AmbientError
    from ambient.train.manifest import write_manifest
    from ambient.train.readers import UNSEEN_GROUPS, DevSplit, read_shared, split_dev, split_speakers

    if not args.src.is_dir():
        raise AmbientError(f"not a folder: {args.src}")
    if args.unseen_per_speaker < 1:
        raise AmbientError(f"--unseen-per-speaker must be at least 1, not {args.unseen_per_speaker}")
    result = read_shared(args.src)
    _report_skipped(result.skipped)
    split = DevSplit(
        speakers=frozenset(_csv(args.dev_speakers)),
        percent=args.dev_percent,
        sliced_sources=frozenset(_csv(args.dev_corpora)),
    )
    if args.unseen_out is None:
        train, dev = split_dev(result.utterances, split)
    else:
        parts = split_speakers(result.utterances, split, per_speaker=args.unseen_per_speaker)
        train, dev = parts.train, parts.seen
        write_manifest(args.unseen_out, parts.unseen)
        print(_summary(args.unseen_out, parts.unseen))
        for group, corpora in UNSEEN_GROUPS.items():
            path = args.unseen_out.with_name(f"{args.unseen_out.stem}-{group}{args.unseen_out.suffix}")
            subset = [u for u in parts.unseen if u.source in corpora]
            write_manifest(path, subset)
            print(_summary(path, subset))
        n_speakers = len({(u.source, u.speaker) for u in parts.unseen})
        print(
            f"held out {n_speakers} speakers; {len(parts.unseen_dropped)} more of their utterances "
            f"are in neither training nor dev"
        )
    write_manifest(args.out, train)
    print(_summary(args.out, train))
    if args.dev_out is not None:
        write_manifest(args.dev_out, dev)
        print(_summary(args.dev_out, dev))
    return 0


def _prepare_librispeech(args: argparse.Namespace) -> int:
    from ambient.errors import AmbientError
    from ambient.train.manifest import write_manifest
    from ambient.train.readers import read_librispeech

    if not args.src.is_dir():
        raise AmbientError(f"not a folder: {args.src}")
    result = read_librispeech(args.src, source=args.source)
    _report_skipped(result.skipped)
    write_manifest(args.out, result.utterances)
    print(_summary(args.out, result.utterances))
    return 0


def _prepare_tsv(args: argparse.Namespace) -> int:
    from ambient.errors import AmbientError
    from ambient.train.manifest import write_manifest
    from ambient.train.readers import read_tsv

    if not args.src.is_file():
        raise AmbientError(f"not a file: {args.src}")
    stem = args.src.stem
    result = read_tsv(args.src, speaker=args.speaker or stem, source=args.source or stem)
    _report_skipped(result.skipped)
    write_manifest(args.out, result.utterances)
    print(_summary(args.out, result.utterances))
    return 0


def _synth(args: argparse.Namespace) -> int:
    from ambient.errors import AmbientError
    from ambient.train.synth import SynthOptions, run_synthesis
    from ambient.train.synth_voices import catalogue

    if args.list_voices:
        for v in catalogue():
            print(f"{v.name}\t{v.weight:.5f}" + ("\treserved" if v.reserved else ""))
        return 0
    if args.hours is None or args.out is None:
        raise AmbientError("data synth needs --hours and --out")
    opts = SynthOptions(
        out_dir=args.out,
        hours=args.hours,
        seed=args.seed,
        workers=args.workers,
        engines=tuple(_csv(args.engines)) if args.engines else None,
        voices=tuple(args.voices) if args.voices else None,
        text_dir=args.text_dir,
        text_split=args.text_split,
        progress=not args.no_progress,
    )
    report = run_synthesis(opts)
    print(report.table())
    print(
        f"{report.manifest}: {report.utterances} utterances, {report.hours:.2f} h "
        f"({report.added} added, {report.failed_now} failed in this run, {report.wall_seconds:.0f} s)"
    )
    if report.sentences_reused:
        print("ambient: warning: the plan is longer than the sentence pool; sentences repeat", file=sys.stderr)
    return 0


def _lm_binary(args: argparse.Namespace) -> int:
    from ambient.errors import AmbientError
    from ambient.model.lexicon_lm import ARPA_FILES
    from ambient.train.kenlm_binary import write_kenlm_binary

    arpa = next((args.folder / n for n in ARPA_FILES if (args.folder / n).is_file()), None)
    if arpa is None:
        raise AmbientError(f"{args.folder}: no lm.arpa or lm.arpa.gz to convert")
    size = write_kenlm_binary(arpa, args.folder / "lm.bin")
    stats_file = args.folder / "lm.json"
    if stats_file.is_file():  # record what lm.bin is, for the model card
        import json

        from ambient.train.kenlm_binary import QUANT_BITS

        stats = json.loads(stats_file.read_text())
        stats["binary"] = {
            "file": "lm.bin",
            "bytes": size,
            "from": arpa.name,
            "kenlm": f"trie -q {QUANT_BITS} -b {QUANT_BITS}",
        }
        stats_file.write_text(json.dumps(stats, indent=2) + "\n")
    print(f"{args.folder / 'lm.bin'}: {size / 1e6:.1f} MB (from {arpa.name}, {arpa.stat().st_size / 1e6:.1f} MB)")
    if args.drop_arpa:
        arpa.unlink()
        print(f"removed {arpa}")
    return 0


def _lm(args: argparse.Namespace) -> int:
    from ambient.errors import AmbientError
    from ambient.train.manifest import iter_manifest
    from ambient.train.ngram import NgramOptions, build_language_model
    from ambient.train.synth_text import default_data_root

    try:
        min_counts = tuple(int(c) for c in _csv(args.min_count))
        options = NgramOptions(order=args.order, vocab_size=args.vocab, min_counts=min_counts)
    except ValueError as e:
        raise AmbientError(f"--order/--vocab/--min-count: {e}") from None
    text_dir = args.text if args.text is not None else default_data_root() / "text"
    if not text_dir.is_dir():
        raise AmbientError(f"not a folder: {text_dir}")
    held_out = [(u.source, u.text) for path in args.exclude for u in iter_manifest(path)]
    if not args.exclude:
        print("ambient: warning: no --exclude manifest: nothing is held out of the model", file=sys.stderr)
    stats = build_language_model(
        text_dir=text_dir, out_dir=args.out, options=options, held_out=held_out, compress=not args.plain
    )
    s = stats["sentences"]
    print(
        f"{s['lines']} sentences read, {s['empty']} empty after normalization, "
        f"{s['excluded_exact']} excluded as held-out copies, {s['excluded_overlap']} for a shared "
        f"{stats['overlap_n']}-gram, {s['used']} used ({stats['tokens']} tokens)"
    )
    counts = ", ".join(f"{n}-grams {c}" for n, c in enumerate(stats["ngrams"], 1))
    print(f"{args.out / stats['arpa']}: {stats['arpa_bytes'] / 1e6:.1f} MB, vocabulary {stats['vocab_size']}, {counts}")
    print(f"{args.out / 'lexicon.txt'}: {stats['lexicon_words']} words")
    if "dev" in stats:
        dev = stats["dev"]
        for name, r in dev.items():
            if name != "kenlm_check":
                print(
                    f"  held-out {name}: {r['sentences']} sentences, OOV {100 * r['oov_rate']:.2f} %, "
                    f"perplexity {r['perplexity']:.1f} ({r['perplexity_known']:.1f} without OOV words)"
                )
        check = dev["kenlm_check"]
        print(f"  KenLM agrees on {check['sentences']} sentences within {check['max_abs_diff_log10']:.1e} (log10)")
    return 0
