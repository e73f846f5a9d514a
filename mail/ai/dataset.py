"""The labelled examples the heads are trained and measured on (provenance: mail/ai/data/README.md).

Two sources:

- `written`: mail/ai/data/*.jsonl, short emails the mailray team wrote for this purpose, with every
  label (category, priority, sentiment, intents).
- `spamassassin`: the SpamAssassin public corpus next to the checkout (../shared/corpora), read
  with mail.mime. Its folders give the category only, by these rules:
    spam-1      spam, priority low
    easy-ham-1  newsletter, priority low, when it is list or feed mail: a List-Id, List-Post,
                List-Unsubscribe, X-BeenThere, Mailing-List or X-Mailing-List header, Precedence
                bulk, list or junk, a "[tag]" subject prefix, or an RSS/feed sender; otherwise left
                out (a few dozen personal notes and stray replies we will not guess at)
    hard-ham-1  promotion, priority low, when its subject or sender offers something (sale, save,
                free, offer, deal, shopper, sweepstakes, prize, ...); otherwise newsletter, low
  Sentiment and intents are not labelled there: those heads learn from the written set only.

The held-out split is fixed and stable: within each (source, category), examples are ordered by
the SHA-256 of their key (file name, or the written example's id) and the first fifth is held out.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Iterable
from email.parser import BytesHeaderParser
from email.policy import compat32
from pathlib import Path
from typing import Literal

import msgspec

from mail.ai.text import from_parsed
from mail.errors import ValidationError
from models.ai import Category, EmailText, Intent, Priority, Sentiment

DATA_DIR = Path(__file__).resolve().parent / "data"
DEFAULT_CORPUS_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "corpora" / "spamassassin"
HELD_OUT_FRACTION = 0.2

Source = Literal["written", "spamassassin"]

_LIST_HEADERS = ("list-id", "list-post", "list-unsubscribe", "x-beenthere", "mailing-list", "x-mailing-list")
_BULK_PRECEDENCE = {"bulk", "list", "junk"}
_SUBJECT_TAG = re.compile(r"^\s*(?:(?:re|fwd?|aw)\s*:\s*)*\[[^\]\s][^\]]{0,40}\]", re.IGNORECASE)
_FEED_SENDER = re.compile(r"\b(?:rss|feeds?|blogged)\b|rssfeeds@", re.IGNORECASE)
_OFFER = re.compile(
    r"\b(?:sale|save|saving|free|offer|deals?|discount|coupon|shopper|buyer'?s alert|sweeps(?:takes)?|"
    r"prize|win|bargain|shipping|special|freebies|% off)\b|\$\d",
    re.IGNORECASE,
)


class WrittenEmail(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One line of mail/ai/data/*.jsonl."""

    id: str
    subject: str
    sender: str
    body: str
    category: Category
    priority: Priority
    sentiment: Sentiment
    intents: list[Intent]


class LabelledEmail(msgspec.Struct, frozen=True, kw_only=True):
    key: str  # unique and stable: "written/<id>" or "spamassassin/<folder>/<file name>"
    source: Source
    text: EmailText
    category: Category
    priority: Priority | None = None  # None: not labelled (left out of that head's loss and figures)
    sentiment: Sentiment | None = None
    intents: list[Intent] | None = None
    held_out: bool = False


_written_decoder = msgspec.json.Decoder(WrittenEmail)


def load_written(directory: Path = DATA_DIR) -> list[LabelledEmail]:
    """Every example of the *.jsonl files in `directory`; ValidationError names a bad line."""
    examples: list[LabelledEmail] = []
    seen: set[str] = set()
    for path in sorted(directory.glob("*.jsonl")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                written = _written_decoder.decode(line)
            except msgspec.ValidationError as error:
                raise ValidationError(f"{path.name}:{number}: {error}", field="data") from error
            if written.id in seen:
                raise ValidationError(f"{path.name}:{number}: duplicate id {written.id!r}", field="data")
            if not written.intents:
                raise ValidationError(f"{path.name}:{number}: no intents", field="data")
            seen.add(written.id)
            examples.append(
                LabelledEmail(
                    key=f"written/{written.id}",
                    source="written",
                    text=EmailText(subject=written.subject, sender=written.sender, body=written.body),
                    category=written.category,
                    priority=written.priority,
                    sentiment=written.sentiment,
                    intents=list(dict.fromkeys(written.intents)),
                )
            )
    return examples


def load_spamassassin(corpus_dir: Path = DEFAULT_CORPUS_DIR) -> list[LabelledEmail]:
    """The corpus's messages that the rules above label, in file order."""
    from mail.mime import parse_message, read_corpus_message

    examples: list[LabelledEmail] = []
    for folder in ("spam-1", "easy-ham-1", "hard-ham-1"):
        directory = corpus_dir / folder
        if not directory.is_dir():
            raise ValidationError(f"no corpus folder {directory}", field="corpus_dir")
        for path in sorted(directory.iterdir()):
            if not path.is_file():
                continue
            raw = read_corpus_message(path)
            category = corpus_category(folder, raw)
            if category is None:
                continue
            examples.append(
                LabelledEmail(
                    key=f"spamassassin/{folder}/{path.name}",
                    source="spamassassin",
                    text=from_parsed(parse_message(raw)),
                    category=category,
                    priority="low",
                )
            )
    return examples


def corpus_category(folder: str, raw: bytes) -> Category | None:
    """The category the labelling rules give a corpus message in `folder`; None: left out."""
    if folder == "spam-1":
        return "spam"
    headers = BytesHeaderParser(policy=compat32).parsebytes(raw)
    subject = str(headers.get("subject") or "")
    sender = str(headers.get("from") or "")
    if folder == "hard-ham-1":
        return "promotion" if _OFFER.search(subject) or _OFFER.search(sender) else "newsletter"
    if folder == "easy-ham-1":
        names = {name.lower() for name in headers}
        precedence = str(headers.get("precedence") or "").strip().lower()
        if (
            names.intersection(_LIST_HEADERS)
            or precedence in _BULK_PRECEDENCE
            or _SUBJECT_TAG.match(subject)
            or _FEED_SENDER.search(sender)
        ):
            return "newsletter"
        return None
    raise ValidationError(f"unknown corpus folder {folder!r}", field="folder")


def split(
    examples: Iterable[LabelledEmail], fraction: float = HELD_OUT_FRACTION, salt: str = ""
) -> list[LabelledEmail]:
    """The examples with `held_out` set: per (source, category), the fifth first by hash of key.

    Another `salt` draws another split of the same kind (training uses one to pick its L2 strength).
    """
    examples = list(examples)
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for index, example in enumerate(examples):
        groups[(example.source, example.category)].append(index)
    held: set[int] = set()
    for indices in groups.values():
        ordered = sorted(indices, key=lambda index: _rank(salt, examples[index].key))
        # At least one held out from a group of two or more, so every label gets measured.
        count = round(len(ordered) * fraction) if len(ordered) >= 5 else min(1, len(ordered) - 1)
        held.update(ordered[:count])
    return [
        msgspec.structs.replace(example, held_out=index in held) for index, example in enumerate(examples)
    ]


def _rank(salt: str, key: str) -> bytes:
    return hashlib.sha256(f"{salt}{key}".encode()).digest()


def first_per_group(examples: Iterable[LabelledEmail], count: int) -> list[LabelledEmail]:
    """At most `count` examples of each (source, category), the first by hash of key: a stable subset."""
    groups: dict[tuple[str, str], list[LabelledEmail]] = defaultdict(list)
    examples = list(examples)
    for example in examples:
        groups[(example.source, example.category)].append(example)
    chosen = {
        example.key
        for members in groups.values()
        for example in sorted(members, key=lambda member: _rank("subset", member.key))[:count]
    }
    return [example for example in examples if example.key in chosen]


def load_all(corpus_dir: Path | None = DEFAULT_CORPUS_DIR, data_dir: Path = DATA_DIR) -> list[LabelledEmail]:
    """The written set and (unless `corpus_dir` is None) the corpus, split."""
    examples = load_written(data_dir)
    if corpus_dir is not None:
        examples += load_spamassassin(corpus_dir)
    return split(examples)
