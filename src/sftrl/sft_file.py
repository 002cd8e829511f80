"""An SFT set read from a file in the authors' format (`data.sft.file`), such as Chu et al.'s GeneralPoints
set `SFTvsRL_Data/SFT_Data/gp-l/data.json` (about 800,000 examples) that the authors trained on.

The format is the one the authors' SFT data loader reads (`sft/src/training/data.py`, `LazySupervisedDataset`):
a JSON array (or JSON lines) of records, each with `conversations`, a list of turns
`{"from": "human" | "gpt", "value": text}`, and optionally `image` (null for the text-only set) and `id`.
A record here is one prompt and its answer: the human turn is a GeneralPoints prompt (its `Cards: [...]`
line, its face-card rule and its target are read from the text) and the gpt turn an answer that the
verifier scores as correct for those cards. Training uses both texts as they are in the file.

Every record is checked before anything is written; the first bad one stops the whole set with its line
number and the reason, so no partial dataset appears.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

from sftrl import cards
from sftrl.cards.expr import expression
from sftrl.cards.rules import symbols

ROLES = {"human": "user", "gpt": "assistant"}
_CARDS_LINE = re.compile(r"Cards:\s*\[([^\]\n]{0,200})\]")
_TARGET = re.compile(r"You are an expert (\d{1,4}) points card game player")
SYMBOL_RANKS = {symbol: rank for rank, symbol in cards.CARD_SYMBOLS.items()} | {"T": 10}


class SftFileError(ValueError):
    """A record of the SFT file that cannot be used; the message names the file, the line and the reason."""


def _records(text: str, path: Path) -> Iterator[tuple[int, object]]:
    """(line, record) of a JSON array or of JSON lines, with the line each record starts on."""
    decoder = json.JSONDecoder()
    start = len(text) - len(text.lstrip())
    if text[start : start + 1] != "[":  # JSON lines
        for number, content in enumerate(text.splitlines(), 1):
            if content.strip():
                try:
                    yield number, json.loads(content)
                except ValueError as err:
                    raise SftFileError(f"data.sft.file {path}, line {number}: not JSON: {err}") from None
        return
    position = start + 1
    line, counted = 1, 0  # the line of `counted`, counted forward only
    while True:
        while position < len(text) and text[position] in " \t\r\n,":
            position += 1
        if position >= len(text):
            raise SftFileError(f"data.sft.file {path}: the JSON array is not closed")
        if text[position] == "]":
            return
        line, counted = line + text.count("\n", counted, position), position
        try:
            record, position = decoder.raw_decode(text, position)
        except ValueError as err:
            raise SftFileError(f"data.sft.file {path}, line {line}: not JSON: {err}") from None
        yield line, record


def _hand(prompt: str) -> tuple[int, ...]:
    match = _CARDS_LINE.search(prompt)
    if match is None:
        raise ValueError("the prompt has no 'Cards: [...]' line")
    symbols = [item.strip().strip("'\"") for item in match.group(1).split(",") if item.strip()]
    unknown = [s for s in symbols if s not in SYMBOL_RANKS]
    if unknown or not symbols:
        raise ValueError(f"the prompt's cards {symbols} are not card symbols ({', '.join(SYMBOL_RANKS)})")
    return tuple(SYMBOL_RANKS[s] for s in symbols)


def _rule(prompt: str) -> cards.Rule:
    stated = [rule for rule in cards.RULES.values() if rule.sentence.rstrip(".") in prompt]
    if len(stated) != 1:
        raise ValueError("the prompt states neither the ID nor the OOD face-card rule in the reference wording")
    return stated[0]


def read_record(record: object, target: int) -> dict:
    """One file record as an SFT example of this workflow (uid, hand, rule, target, formula, prompt,
    completion), or a ValueError saying why it cannot be one."""
    if not isinstance(record, dict) or not isinstance(record.get("conversations"), list):
        raise ValueError("a record is an object with a 'conversations' list")
    if record.get("image") is not None or "video" in record:
        raise ValueError("the record has an image or video; this workflow trains on text only (the gp-l set)")
    turns = record["conversations"]
    if len(turns) != 2 or not all(isinstance(t, dict) for t in turns):
        raise ValueError(f"the record has {len(turns)} turns; an SFT example is one human and one gpt turn")
    speakers = [t.get("from") for t in turns]
    if speakers != ["human", "gpt"] or not all(isinstance(t.get("value"), str) for t in turns):
        raise ValueError(f"the turns are {speakers}; expected a human turn then a gpt turn, each with a text 'value'")
    prompt, reply = turns[0]["value"], turns[1]["value"]
    found = _TARGET.search(prompt)
    if found is None or int(found.group(1)) != target:
        stated = found.group(1) if found else "none"
        raise ValueError(f"the prompt's target is {stated}, the task's is {target} (task.target)")
    hand, rule = _hand(prompt), _rule(prompt)
    verdict = cards.verify(reply, hand, rule, target)
    if not verdict.correct:
        raise ValueError(f"the answer is not a solution of the cards {symbols(hand)}: {verdict.message}")
    parsed = cards.parse(reply)
    return {
        "hand": list(hand),
        "cards": symbols(hand),
        "rule": asdict(rule),
        "target": target,
        "formula": expression(parsed.formula or "").strip(),
        "prompt": [{"role": ROLES["human"], "content": prompt}],
        "completion": [{"role": ROLES["gpt"], "content": reply}],
    }


def read_sft_file(path: str | os.PathLike, target: int) -> list[dict]:
    """Every record of the file as an SFT example, uid `file-{n}` (its position) and `line`; an SftFileError
    names the first record that cannot be one. A prompt and answer met before are not read again (such
    sets repeat each hand under several suits)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise SftFileError(f"data.sft.file {path}: cannot read it: {err}") from None
    examples: list[dict] = []
    seen: dict[str, dict] = {}
    for line, record in _records(text, path):
        # what read_record reads: the turns and whether there is an image (not the record's own id)
        key = json.dumps(
            [record.get(k) for k in ("conversations", "image", "video")] if isinstance(record, dict) else record
        )
        try:
            example = seen[key] if key in seen else seen.setdefault(key, read_record(record, target))
        except ValueError as err:
            raise SftFileError(f"data.sft.file {path}, line {line}: {err}") from None
        examples.append({"uid": f"file-{len(examples):07d}", "line": line, **example})
    if not examples:
        raise SftFileError(f"data.sft.file {path}: holds no records")
    return examples


def checked_multisets(path: str | os.PathLike, target: int, cache_dir: Path | None = None) -> list[list[int]]:
    """The sorted hands of the file's records (what the dry run needs to count the evaluation sets), after
    `read_sft_file` checked every record. With `cache_dir`, the result is kept under a name made of the
    file's path, size and modification time, so an unchanged file is checked once, not at every dry run."""
    path = Path(path).resolve()
    stamp = None
    if cache_dir is not None:
        stat = path.stat()
        key = json.dumps([str(path), stat.st_size, stat.st_mtime_ns, target])
        stamp = Path(cache_dir) / f"sft-file-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"
        if stamp.is_file():
            return json.loads(stamp.read_text())
    multisets = sorted({tuple(sorted(r["hand"])) for r in read_sft_file(path, target)})
    if stamp is not None:
        from sftrl import io

        io.write_json(stamp, [list(m) for m in multisets])
    return [list(m) for m in multisets]
