"""Bounce classification against sisimai's labelled bounces: one JSON line per figure.

The corpus is /work/shared/corpora/bounces (README.md there): 315 real bounces, and for each
the failed recipients as sisimai reports them (status, reply code, reason, hard). Our recipients
are matched to the labels by position (both list them in the bounce's order); a label without a
recipient of ours counts as a disagreement on every figure.

Figures, each for all files and for two halves (files sorted by name, even and odd positions):

- detection: files whose labels report a failure and that parse_bounce calls a bounce. Three
  files are provider notifications of a delivery or a complaint (labels "delivered" and
  "feedback"); `not_bounce` counts those we rightly call no bounce. They take no part in the
  per-recipient figures.
- hard_soft: our kind is "hard" exactly when the label says hard. sisimai's hard means the
  address is dead, which is what our "hard" means; our "blocked" (the receiver refused the
  sender) is scored as not hard, like sisimai, whose blocked, spamdetected, policyviolation and
  authfailure labels are all soft.
- status: the exact enhanced status code, over labels that carry one from the bounce. When a
  bounce has no code, sisimai writes an internal one of its own (x.0.9NN: 5.0.911 for an unknown
  user, 4.0.947 for an expiry, ...); those labels are left out, and `status_absent` counts how
  often we too report no code for them.
- reply_code: the exact SMTP reply code ("" included).
- reason: the exact reason name.
- speed: parse_bounce over the corpus in memory, files per second on one core.
- ham: SpamAssassin easy ham (ordinary mail) that parse_bounce wrongly calls a bounce.

.venv/bin/python benchmarks/bounce_agreement.py [--disagreements]
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mail.bounces import parse_bounce
from mail.mime import read_corpus_message
from models.bounces import BounceReport

CORPUS = Path("/work/shared/corpora/bounces")
HAM = Path("/work/shared/corpora/spamassassin/easy-ham-1")
SECONDS_FOR_SPEED = 2.0
NOT_FAILURES = frozenset({"delivered", "feedback"})
SISIMAI_INTERNAL_STATUS = re.compile(r"[245]\.0\.9\d\d")


def load_corpus(corpus: Path = CORPUS) -> list[tuple[str, bytes, list[dict[str, Any]]]]:
    """(file name, raw bytes, labels) for every labelled file, sorted by name."""
    labels = json.loads((corpus / "sisimai-labels.json").read_text())
    files = []
    for path in sorted((corpus / "sisimai").glob("*.eml")):
        if path.name in labels:
            files.append((path.name, read_corpus_message(path), labels[path.name]["expected"]))
    return files


class Tally:
    """Agreements over the corpus (or a part of it)."""

    def __init__(self) -> None:
        self.counts: dict[str, list[int]] = {}  # figure -> [agree, of]

    def add(self, figure: str, agree: bool) -> None:
        counted = self.counts.setdefault(figure, [0, 0])
        counted[0] += int(agree)
        counted[1] += 1

    def value(self, figure: str) -> float:
        agree, of = self.counts.get(figure, [0, 0])
        return agree / of if of else 0.0


def score(report: BounceReport, labels: list[dict[str, Any]], tally: Tally) -> list[str]:
    """Add one file's agreements to `tally`; the disagreements, described."""
    failures = [label for label in labels if label["reason"] not in NOT_FAILURES]
    if not failures:
        tally.add("not_bounce", not report.is_bounce)
        return [] if not report.is_bounce else ["called a bounce"]
    tally.add("detection", report.is_bounce)
    notes = [] if report.is_bounce else ["not detected"]
    for index, label in enumerate(failures):
        ours = report.recipients[index] if index < len(report.recipients) else None
        kind, status = (ours.kind, ours.status) if ours else ("", "")
        reply, reason = (ours.reply_code, ours.reason) if ours else ("", "")
        checks = {
            "hard_soft": (kind == "hard") == bool(label["hard"]) and ours is not None,
            "reply_code": reply == label["reply_code"] and ours is not None,
            "reason": reason == label["reason"],
        }
        if SISIMAI_INTERNAL_STATUS.fullmatch(label["status"]) or not label["status"]:
            checks["status_absent"] = ours is not None and status == ""
        else:
            checks["status"] = status == label["status"]
        for figure, agree in checks.items():
            tally.add(figure, agree)
        wrong = [figure for figure, agree in checks.items() if not agree]
        if wrong:
            expected = f"{label['status']}/{label['reply_code']}/{label['reason']}/{'hard' if label['hard'] else 'soft'}"
            got = f"{status}/{reply}/{reason}/{kind}" if ours else "missing"
            notes.append(f"#{index} {','.join(wrong)}: want {expected} got {got}")
    return notes


def _emit(figure: str, value: float, **detail: object) -> None:
    line = {"benchmark": "bounce_agreement", "figure": figure, **detail, "value": round(value, 4)}
    print(json.dumps(line), flush=True)


def _speed(raws: Iterable[bytes]) -> float:
    messages = list(raws)
    parsed, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < SECONDS_FOR_SPEED:
        for raw in messages:
            parse_bounce(raw)
        parsed += len(messages)
    return parsed / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--disagreements", action="store_true", help="Also print each disagreement.")
    parser.add_argument("--no-ham", action="store_true", help="Skip the easy-ham false-positive figure.")
    options = parser.parse_args()

    corpus = load_corpus()
    tallies = {"all": Tally(), "even": Tally(), "odd": Tally()}
    for index, (name, raw, labels) in enumerate(corpus):
        report = parse_bounce(raw)
        half = "even" if index % 2 == 0 else "odd"
        notes = score(report, labels, tallies["all"])
        score(report, labels, tallies[half])
        if options.disagreements:
            for note in notes:
                print(f"# {name}: {note}", flush=True)
    for split, tally in tallies.items():
        for figure in (
            "detection",
            "not_bounce",
            "hard_soft",
            "status",
            "status_absent",
            "reply_code",
            "reason",
        ):
            agree, of = tally.counts.get(figure, [0, 0])
            _emit(figure, tally.value(figure), split=split, agree=agree, of=of)
    _emit("files_per_s", _speed(raw for _, raw, _ in corpus), files=len(corpus))
    if not options.no_ham and HAM.is_dir():
        ham = [read_corpus_message(path) for path in sorted(HAM.iterdir()) if path.is_file()]
        wrong = sum(parse_bounce(raw).is_bounce for raw in ham)
        _emit("ham_called_bounce", wrong / len(ham) if ham else 0.0, wrong=wrong, of=len(ham))


if __name__ == "__main__":
    main()
