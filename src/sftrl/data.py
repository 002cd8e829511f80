"""The experiment's datasets: SFT examples, evaluation episodes, RL prompts and the pretraining corpus.

Every set is a pure function of (config, seed): the same inputs give the same bytes. Hands are split by
rank multiset first, so `id_unseen` episodes come from multisets that no training set ever shows, while
`id` episodes reuse the SFT multisets in a card order the SFT set never shows. Hands are dealt by
`cards.deal`, as the reference code deals them: ID hands uniform over A..K, OOD hands with one card
drawn from J, Q, K (so OOD sets hold more multi-face hands than uniform hands with a face card would).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import random
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import cast

from sftrl import cards, io
from sftrl.cards.expr import apply as cards_apply
from sftrl.config import DataConfig, TaskConfig
from sftrl.names import LOSS_SPLITS

Multiset = tuple[int, ...]
log = logging.getLogger(__name__)


def stage_rng(seed: int, stage: str) -> random.Random:
    """An independent, reproducible random stream per stage (string seeds hash stably in CPython)."""
    return random.Random(f"sftrl:{seed}:{stage}")


def multiset(hand: Iterable[int]) -> Multiset:
    return tuple(sorted(hand))


def rule_record(rule: cards.Rule) -> dict:
    return asdict(rule)


def rule_from_record(record: dict) -> cards.Rule:
    return cards.Rule(**record)


@dataclass(frozen=True)
class HandSplit:
    """ID-solvable rank multisets, partitioned into those training may use and those held out."""

    train: frozenset[Multiset]
    held_out: frozenset[Multiset]


def split_multisets(seed: int, held_out_share: float, target: int) -> HandSplit:
    pool = [
        ms
        for ms in itertools.combinations_with_replacement(range(1, 14), 4)
        if cards.is_solvable(ms, cards.RULES["id"], target)
    ]
    stage_rng(seed, "split").shuffle(pool)
    n_held = max(1, round(held_out_share * len(pool)))
    return HandSplit(train=frozenset(pool[n_held:]), held_out=frozenset(pool[:n_held]))


def sample_hands(
    rng: random.Random,
    rule: cards.Rule,
    target: int,
    n: int,
    accept: Callable[[tuple[int, ...]], bool],
    what: str,
    key: Callable[[tuple[int, ...]], tuple[int, ...]] = tuple,
    max_tries_per_hand: int = 2000,
) -> list[tuple[int, ...]]:
    """`n` hands from `cards.deal`, distinct by `key`, kept only where `accept` says so.

    Rejection keeps the deal's own distribution over the accepted hands (for OOD hands the reference
    code's: three ranks uniform over A..K, one over J..K, shuffled); skipping repeated keys makes the
    set a draw without replacement from that distribution.
    """
    hands: list[tuple[int, ...]] = []
    seen: set[tuple[int, ...]] = set()
    tries = 0
    while len(hands) < n:
        tries += 1
        if tries > max_tries_per_hand * n:
            raise ValueError(f"could only find {len(hands)} of {n} distinct hands for {what}; ask for fewer")
        hand = tuple(cards.deal(rng, rule, target))
        if key(hand) not in seen and accept(hand):
            seen.add(key(hand))
            hands.append(hand)
    return hands


def pick_solutions(rng: random.Random, formulas: list[str], k: int, style: str) -> list[str]:
    """Up to k solutions; the compact style prefers formulas whose steps stay natural numbers,
    which a word-level tokenizer writes as single words."""
    if style == "compact":
        natural = [f for f in formulas if all(_is_natural(s[3]) for s in cards.solution_steps(f))]
        if natural:
            formulas = natural
    return sorted(rng.sample(formulas, min(k, len(formulas))))


def _is_natural(value: Fraction) -> bool:
    return value.denominator == 1 and value >= 0


def example(
    uid: str, hand: tuple[int, ...], rule: cards.Rule, target: int, formula: str, style: str, layout: str = "json"
) -> dict:
    """One supervised example in TRL's conversational prompt/completion form, plus its provenance; `layout`
    is the answer's (`cards.answer`)."""
    return {
        **episode_record(uid, hand, rule, target),
        "formula": formula,
        "prompt": cards.messages(hand, rule, target, style),
        "completion": [{"role": "assistant", "content": cards.answer(hand, rule, formula, target, style, layout)}],
    }


def in_layout(record: dict, layout: str) -> dict:
    """A supervised example with its completion in a pretraining answer layout (`cards.in_answer_layout`)."""
    if layout == "task":
        return record
    (turn,) = record["completion"]
    return {**record, "completion": [{**turn, "content": cards.in_answer_layout(turn["content"], layout)}]}


RETRY_MISTAKES = ("misread", "arithmetic", "stop_early", "wrong_path")


def random_path(rng: random.Random, values: tuple[int, ...]) -> tuple[list[tuple[int, str, int, int]], str]:
    """A random derivation over the values, two numbers combined a step, every result a natural number
    (one word for a word-level tokenizer): its steps (a, op, b, result) and the same as one formula."""
    pool = [(Fraction(v), str(v)) for v in values]
    steps = []
    while len(pool) > 1:
        i, j = rng.sample(range(len(pool)), 2)
        (a, left), (b, right) = pool[i], pool[j]
        natural = [(op, r) for op in "+-*/" if (r := cards_apply(a, op, b)) is not None and _is_natural(r)]
        op, result = rng.choice(natural)  # never empty: a + b of naturals is natural
        pool = [p for k, p in enumerate(pool) if k not in (i, j)] + [(result, f"({left}{op}{right})")]
        steps.append((int(a), op, int(b), int(result)))
    return steps, pool[0][1][1:-1]


def wrong_attempt(
    rng: random.Random, hand: tuple[int, ...], rule: cards.Rule, target: int, formula: str, style: str
) -> str | None:
    """A plausible wrong attempt at a solvable hand, or None where the drawn mistake does not apply:

    - misread: a solution under J = Q = K = 10 although the prompt states other values (the OOD failure);
    - arithmetic: the solution with one step's stated result off by one (compact), or one operator
      changed so the formula misses the target (paper);
    - stop_early: the solution without its last step (compact), or without its last card (paper);
    - wrong_path: a random derivation over the right numbers that misses the target, its last step
      stating either the true result or the target (compact), or claiming the target (paper): the
      mistakes an unskilled solver makes.
    """
    kind = rng.choice(RETRY_MISTAKES)
    if kind == "misread":
        tens = cards.RULES["id"]
        solutions = cards.solutions(hand, tens, target) if tens.values(hand) != rule.values(hand) else []
        return (
            cards.answer(hand, tens, pick_solutions(rng, solutions, 1, style)[0], target, style) if solutions else None
        )
    if kind == "wrong_path":
        values = rule.values(hand)
        steps, path = random_path(rng, values)
        if steps[-1][3] == target:
            return None
        if style == "compact":
            if rng.random() < 0.5:
                a, op, b, _ = steps[-1]
                steps[-1] = (a, op, b, target)
            written = " ; ".join(f"{a} {op} {b} = {r}" for a, op, b, r in steps)
            return f"numbers {' '.join(map(str, values))} ; {written}"
        right = json.loads(cards.answer(hand, rule, formula, target, style))
        return json.dumps({**right, "formula": f"{path}={target}"})
    right = cards.answer(hand, rule, formula, target, style)
    if style == "compact":
        head, *parts = right.split(" ; ")
        if kind == "stop_early":
            return " ; ".join([head, *parts[:-1]])
        i = rng.randrange(len(parts))
        left, _, result = parts[i].rpartition(" = ")
        parts[i] = f"{left} = {Fraction(result) + rng.choice((-1, 1))}"
        return " ; ".join([head, *parts])
    if kind == "stop_early":
        return right.replace(formula, formula.rstrip("0123456789").rstrip("+-*/("))
    at = [i for i, c in enumerate(formula) if c in "+-*/"]
    i = rng.choice(at)
    return right.replace(formula, formula[:i] + rng.choice([o for o in "+-*/" if o != formula[i]]) + formula[i + 1 :])


def retry_example(
    uid: str,
    hand: tuple[int, ...],
    rule: cards.Rule,
    target: int,
    formula: str,
    style: str,
    rng: random.Random,
    failed: int = 1,
    layout: str = "task",
) -> dict | None:
    """A multi-attempt episode for pretraining: `failed` distinct wrong attempts, each followed by the
    verifier's feedback, as the prompt; the right answer as the completion, every answer in `layout`.
    The model learns to act on feedback, and to answer differently after a failure, without ever being
    trained to make a mistake. None where too few distinct wrong attempts apply."""
    episode = cards.Episode(hand, rule, target, style, max_attempts=failed + 1)
    tried: set[str] = set()
    for _ in range(4 * failed):
        if len(tried) == failed:
            break
        wrong = wrong_attempt(rng, hand, rule, target, formula, style)
        wrong = wrong if wrong is None else cards.in_answer_layout(wrong, layout)
        if wrong is None or wrong in tried:
            continue
        if episode.step(wrong).correct:
            return None
        tried.add(wrong)
    if len(tried) < failed:
        return None
    return {**in_layout(example(uid, hand, rule, target, formula, style), layout), "prompt": episode.messages}


def episode_record(uid: str, hand: tuple[int, ...], rule: cards.Rule, target: int) -> dict:
    return {
        "uid": uid,
        "hand": list(hand),
        "cards": [cards.CARD_SYMBOLS[r] for r in hand],
        "rule": rule_record(rule),
        "target": target,
    }


def orders(ms: Multiset) -> int:
    """How many distinct card orders a rank multiset has: 24 for four different ranks, 1 for four alike."""
    return math.factorial(len(ms)) // math.prod(math.factorial(c) for c in Counter(ms).values())


def distinct_orders(rng: random.Random, ms: Multiset, k: int) -> list[tuple[int, ...]]:
    """min(k, orders) distinct random card orders of a multiset (one shuffle each while new ones come)."""
    drawn: list[tuple[int, ...]] = []
    while len(drawn) < min(k, orders(ms)):
        hand = list(ms)
        rng.shuffle(hand)
        if tuple(hand) not in drawn:
            drawn.append(tuple(hand))
    return drawn


@dataclass(frozen=True)
class SftDraw:
    """The SFT set before it is rendered: its multisets and its (card order, solution) examples."""

    multisets: list[Multiset]
    examples: list[tuple[tuple[int, ...], str]]

    @property
    def ordered(self) -> set[tuple[int, ...]]:
        return {hand for hand, _ in self.examples}


def draw_sft(seed: int, task: TaskConfig, data: DataConfig, split: HandSplit) -> SftDraw:
    """`data.sft.hands` training multisets, up to `solutions_per_hand` solutions each, every solution in
    up to `orders_per_solution` distinct card orders."""
    rng = stage_rng(seed, "sft")
    id_rule = cards.RULES["id"]
    hands = sample_hands(
        rng, id_rule, task.target, data.sft.hands, lambda h: multiset(h) in split.train, "sft", key=multiset
    )
    multisets = [multiset(h) for h in hands]
    examples = []
    for ms in multisets:
        formulas = pick_solutions(
            rng, cards.solutions(ms, id_rule, task.target), data.sft.solutions_per_hand, task.style
        )
        for formula in formulas:
            examples += [(hand, formula) for hand in distinct_orders(rng, ms, data.sft.orders_per_solution)]
    return SftDraw(multisets, examples)


def check_sft_source(task: TaskConfig, data: DataConfig) -> None:
    """Refuse, before any job, an SFT source the task cannot use: the authors' answer layout or file is
    the paper's JSON answer, which the compact style's model neither writes nor reads."""
    if task.style == "paper":
        return
    if data.sft.answer_layout != "json":
        raise ValueError(
            f"data.sft.answer_layout {data.sft.answer_layout}: the authors' answer template is the paper "
            f"style's JSON answer; task.style is {task.style!r}: set answer_layout json or task.style paper"
        )
    if data.sft.file is not None:
        raise ValueError(
            f"data.sft.file {data.sft.file}: a file in the authors' format holds paper-style prompts and "
            f"answers; task.style is {task.style!r}: set task.style paper or data.sft.file null"
        )


def _training_part(data: DataConfig, multisets: set[Multiset], split: HandSplit) -> set[Multiset]:
    """The multisets of the SFT file that training may use: those not held out for id_unseen."""
    kept = multisets - split.held_out
    if not kept:
        raise ValueError(
            f"data.sft.file {data.sft.file}: every record's multiset is held out for id_unseen "
            f"(data.id_unseen_share {data.id_unseen_share}); nothing is left to train on"
        )
    return kept


def file_records(data: DataConfig, task: TaskConfig, split: HandSplit) -> list[dict]:
    """The examples of `data.sft.file` (sftrl.sft_file checks every record) on the multisets training may
    use; the records on held-out multisets are left out, so id_unseen stays unseen."""
    from sftrl.sft_file import read_sft_file

    records = read_sft_file(cast(str, data.sft.file), task.target)
    kept = _training_part(data, {multiset(r["hand"]) for r in records}, split)
    chosen = [r for r in records if multiset(r["hand"]) in kept]
    log.info("data.sft.file: %d of %d records (the rest are on held-out multisets)", len(chosen), len(records))
    return chosen


def file_multisets(data: DataConfig, task: TaskConfig, split: HandSplit, cache_dir: Path | None) -> set[Multiset]:
    """The multisets of `file_records`, from a check of the file kept in `cache_dir` (the dry run's)."""
    from sftrl.sft_file import checked_multisets

    found = {tuple(m) for m in checked_multisets(cast(str, data.sft.file), task.target, cache_dir)}
    return _training_part(data, found, split)


def build_datasets(seed: int, task: TaskConfig, data: DataConfig) -> dict[str, list[dict]]:
    """All sets of one experiment except the pretraining corpus, keyed by file stem.

    The SFT set is generated (`data.sft` counts, in `answer_layout`) or read from `data.sft.file`; then
    its records on held-out multisets are left out, and `id` episodes may take any card order of its
    multisets (such a file may hold every order; the authors dealt their ID episodes regardless of it).
    """
    target, style = task.target, task.style
    id_rule, ood_rule = cards.RULES["id"], cards.RULES["ood"]
    split = split_multisets(seed, data.id_unseen_share, target)

    if data.sft.file is not None:
        sft = file_records(data, task, split)
        sft_ordered: set[tuple[int, ...]] = set()
        sft_seen = {multiset(r["hand"]) for r in sft}
    else:
        draw = draw_sft(seed, task, data, split)
        sft = [
            example(f"sft-{i:06d}", hand, id_rule, target, formula, style, data.sft.answer_layout)
            for i, (hand, formula) in enumerate(draw.examples)
        ]
        sft_ordered = draw.ordered
        sft_seen = set(draw.multisets)

    episodes = {
        "id": sample_hands(
            stage_rng(seed, "eval_id"),
            id_rule,
            target,
            data.eval.id,
            lambda h: multiset(h) in sft_seen and h not in sft_ordered,
            "eval id",
        ),
        "id_unseen": sample_hands(
            stage_rng(seed, "eval_id_unseen"),
            id_rule,
            target,
            data.eval.id_unseen,
            lambda h: multiset(h) in split.held_out,
            "eval id_unseen",
        ),
        "ood": sample_hands(stage_rng(seed, "eval_ood"), ood_rule, target, data.eval.ood, lambda h: True, "eval ood"),
    }
    rules = {"id": id_rule, "id_unseen": id_rule, "ood": ood_rule}
    sets: dict[str, list[dict]] = {"sft": sft}
    for name, hands in episodes.items():
        sets[f"eval_{name}"] = [episode_record(f"{name}-{i:05d}", h, rules[name], target) for i, h in enumerate(hands)]

    rng = stage_rng(seed, "loss")
    for name in LOSS_SPLITS:
        sets[f"loss_{name}"] = [
            example(
                f"loss-{ep['uid']}",
                tuple(ep["hand"]),
                rules[name],
                target,
                pick_solutions(rng, cards.solutions(ep["hand"], rules[name], target), 1, style)[0],
                style,
                data.sft.answer_layout,
            )
            for ep in sets[f"eval_{name}"][: data.eval.loss_examples]
        ]

    id_eval = set(episodes["id"])
    rl_hands = sample_hands(
        stage_rng(seed, "rl"),
        id_rule,
        target,
        data.rl.prompts,
        lambda h: multiset(h) in split.train and h not in id_eval,
        "rl prompts",
    )
    sets["rl_prompts"] = [
        {**episode_record(f"rl-{i:06d}", h, id_rule, target), "prompt": cards.messages(h, id_rule, target, style)}
        for i, h in enumerate(rl_hands)
    ]
    return sets


def supply(seed: int, task: TaskConfig, data: DataConfig, cache_dir: Path | None = None) -> dict[str, tuple[int, str]]:
    """The largest value of each dataset count the game can supply, the other settings given, with what
    bounds it. Hands are finite (989 training multisets of 24 in the default split), and a count beyond them
    would stop the datasets job after queueing. Exact: it counts the card orders of the multisets each
    set draws from, and for `id` episodes the orders the SFT set leaves unused, as drawn.
    """
    target = task.target
    split = split_multisets(seed, data.id_unseen_share, target)
    limits = {}
    if data.sft.file is not None:
        multisets = file_multisets(data, task, split, cache_dir)
        limits["data.eval.id"] = (sum(orders(ms) for ms in multisets), "card orders of the SFT file's multisets")
    else:
        limits["data.sft.hands"] = (len(split.train), "distinct ID-solvable training multisets")
    if data.sft.file is None and data.sft.hands <= len(split.train):
        draw = draw_sft(seed, task, data, split)
        limits["data.eval.id"] = (
            sum(orders(ms) for ms in draw.multisets) - len(draw.ordered),
            "card orders of the SFT multisets that no SFT example uses",
        )
    limits["data.eval.id_unseen"] = (
        sum(orders(ms) for ms in split.held_out),
        "card orders of the held-out ID-solvable multisets",
    )
    ood = cards.RULES["ood"]
    limits["data.eval.ood"] = (
        sum(
            orders(ms)
            for ms in itertools.combinations_with_replacement(range(1, 14), 4)
            if max(ms) >= 11 and cards.is_solvable(ms, ood, target)
        ),
        "OOD-solvable card orders holding a face card",
    )
    limits["data.eval.loss_examples"] = (
        min(data.eval.id_unseen, data.eval.ood),
        "the episodes of data.eval.id_unseen and data.eval.ood",
    )
    limits["data.rl.prompts"] = (
        sum(orders(ms) for ms in split.train) - data.eval.id,
        "card orders of the training multisets, less the data.eval.id episodes",
    )
    return limits


# The code whose behaviour decides the limits: a cached result is used only while it is unchanged.
SUPPLY_CODE = (Path(__file__), *sorted((Path(__file__).parent / "cards").glob("*.py")))


def cached_supply(seed: int, task: TaskConfig, data: DataConfig, cache_dir: Path | None) -> dict[str, tuple[int, str]]:
    """`supply`, kept in `cache_dir` under a name made of its settings and of the game's code, so a dry run
    after the first one does not redraw the SFT set (a second or so); an SFT file has its own cache."""
    if cache_dir is None or data.sft.file is not None:
        return supply(seed, task, data, cache_dir)
    digest = hashlib.sha256(json.dumps([seed, asdict(task), asdict(data)], sort_keys=True).encode())
    for source in SUPPLY_CODE:
        digest.update(source.read_bytes())
    stamp = Path(cache_dir) / f"supply-{digest.hexdigest()[:16]}.json"
    if stamp.is_file():
        try:
            return {key: (int(limit), str(what)) for key, (limit, what) in json.loads(stamp.read_text()).items()}
        except (ValueError, TypeError, AttributeError):  # a damaged record is made again
            pass
    limits = supply(seed, task, data, cache_dir)
    io.write_json(stamp, {key: list(value) for key, value in limits.items()})
    return limits


def check_supply(seed: int, task: TaskConfig, data: DataConfig, cache_dir: Path | None = None) -> None:
    """Refuse a count the game cannot supply, naming the key and its largest feasible value; `cache_dir`
    keeps the limits between dry runs (`cached_supply`)."""
    for key, (limit, what) in cached_supply(seed, task, data, cache_dir).items():
        section, name = key.split(".")[1:]
        asked = getattr(getattr(data, section), name)
        if asked > limit:
            raise ValueError(
                f"{key} = {asked}: at most {limit} can be had ({what}; seed {seed}, task.target {task.target}, "
                f"data.id_unseen_share {data.id_unseen_share}); set {key} to {limit} or less"
            )


def pretrain_targets(data: DataConfig, task: TaskConfig) -> list[int]:
    low, high = data.pretrain.targets
    targets = [t for t in range(low, high + 1) if t not in set(data.pretrain.exclude_targets)]
    if not targets:
        raise ValueError(f"data.pretrain: no target left in {low}..{high} after exclude_targets")
    return targets


def check_pretrain(task: TaskConfig, data: DataConfig) -> None:
    """Refuse corpus settings an evaluation could never show: more wrong attempts than it allows."""
    low, high = data.pretrain.failed_attempts
    if not 1 <= low <= high <= task.max_attempts - 1:
        raise ValueError(
            f"data.pretrain.failed_attempts {[low, high]} must be a range within 1..{task.max_attempts - 1} "
            f"(task.max_attempts {task.max_attempts} allows that many failures before the last attempt)"
        )


# Settings that decide which problems a pretraining corpus leaves out: the held-out multisets (drawn from
# the seed's split of the target's solvable hands) and the target no ID or OOD rule is paired with.
CORPUS_EXCLUSION_SETTINGS = ("seed", "data.id_unseen_share", "task.target")


def check_base_layout(task: TaskConfig, data: DataConfig) -> None:
    """A base built here (`model.source: tiny`) answers in `data.pretrain.answer_layout`, a layout of
    compact answers: refused for another style."""
    if data.pretrain.answer_layout != "task" and task.style != "compact":
        raise ValueError(
            f"data.pretrain.answer_layout {data.pretrain.answer_layout!r} rewrites compact answers, but the task's "
            f"style is {task.style!r}: set data.pretrain.answer_layout: task to build a {task.style} base"
        )


def corpus_conflicts(base_config: dict, config: dict) -> list[str]:
    """The settings in which an experiment differs from the one a base was pretrained for, so that the
    base's corpus may hold the experiment's evaluation problems: held-out hands it would test as unseen,
    or the ID or OOD rule paired with its target. Empty where they agree; a setting the base's
    provenance does not record is not compared."""

    def get(section: object, dotted: str) -> object:
        for key in dotted.split("."):
            section = section.get(key) if isinstance(section, dict) else None
        return section

    return [
        f"{name} is {get(config, name)!r}, the base was pretrained for {get(base_config, name)!r}"
        for name in CORPUS_EXCLUSION_SETTINGS
        if get(base_config, name) is not None and get(config, name) != get(base_config, name)
    ]


def corpus_problems(
    rng: random.Random, seed: int, task: TaskConfig, data: DataConfig
) -> Iterator[tuple[tuple[int, ...], cards.Rule, int]]:
    """Endless solvable (hand, rule, target) problems of the pretraining kind: random face-card values
    and targets; never an ID or OOD rule with the evaluation target, never a held-out multiset.

    A generator, so a caller may draw from `rng` between problems and keep one stream of draws.
    """
    split = split_multisets(seed, data.id_unseen_share, task.target)
    targets = pretrain_targets(data, task)
    evaluation_rules = {cards.RULES["id"].values(range(11, 14)), cards.RULES["ood"].values(range(11, 14))}
    while True:
        rule = cards.Rule.random(rng)
        target = rng.choice(targets)
        if target == task.target and rule.values(range(11, 14)) in evaluation_rules:
            continue
        hand = tuple(cards.deal(rng, rule, target, require_face=False))
        if multiset(hand) in split.held_out:
            continue
        yield hand, rule, target


def build_pretrain_corpus(seed: int, task: TaskConfig, data: DataConfig) -> list[dict]:
    """Puzzles under random face-card values and targets stated in the prompt.

    The model must read the rule to answer, which is the skill OOD evaluation probes. A share
    (`data.pretrain.retry_share`) are episodes with `data.pretrain.failed_attempts` (a range) wrong
    attempts before the answer (`retry_example`), so the model learns to use the verifier's feedback; at
    share 0 the corpus is the same bytes as without them. Its answers are in `data.pretrain.answer_layout`
    (the task's, or the steps alone: a base that solves the game but not in the task's layout), judged
    in any layout (the verifier's feedback on the wrong attempts). The evaluation
    problems themselves never appear: no ID or OOD mapping is paired with the evaluation target, and
    no held-out (`id_unseen`) multiset is used at all.
    """
    check_pretrain(task, data)
    check_base_layout(task, data)
    rng = stage_rng(seed, "pretrain")
    corpus: list[dict] = []
    for hand, rule, target in corpus_problems(rng, seed, task, data):
        if len(corpus) == data.pretrain.examples:
            break
        formula = pick_solutions(rng, cards.solutions(hand, rule, target), 1, task.style)[0]
        uid = f"pre-{len(corpus):07d}"
        retry = data.pretrain.retry_share and rng.random() < data.pretrain.retry_share  # no draw at share 0
        layout = data.pretrain.answer_layout
        record = retry and retry_example(
            uid, hand, rule, target, formula, task.style, rng, rng.randint(*data.pretrain.failed_attempts), layout
        )
        corpus.append(record or in_layout(example(uid, hand, rule, target, formula, task.style), layout))
    return corpus
