"""Datasets: split discipline, no evaluation episode in any training set, identical bytes per seed."""

import collections
import dataclasses
import hashlib
import json
import re
import subprocess
import sys

import pytest

from sftrl import cards, data, io
from sftrl.config import DataConfig, EvalDataConfig, PretrainDataConfig, RlDataConfig, SftDataConfig, TaskConfig
from sftrl.names import EVAL_SPLITS

TASK = TaskConfig(target=24, style="compact")
SMALL = DataConfig(
    id_unseen_share=0.2,
    sft=SftDataConfig(hands=60, solutions_per_hand=2),
    eval=EvalDataConfig(id=40, id_unseen=40, ood=40, loss_examples=10),
    rl=RlDataConfig(prompts=80),
    pretrain=PretrainDataConfig(
        examples=300,
        targets=(12, 36),
        exclude_targets=(23, 24, 25),
        retry_share=0.0,
        failed_attempts=(1, 1),
        answer_layout="task",
    ),
)


@pytest.fixture(scope="module")
def sets():
    return data.build_datasets(7, TASK, SMALL)


@pytest.fixture(scope="module")
def corpus():
    return data.build_pretrain_corpus(7, TASK, SMALL)


def problem(record):
    """What makes an episode the same problem: the ordered hand, the face values and the target."""
    rule = record["rule"]
    return (tuple(record["hand"]), (rule["jack"], rule["queen"], rule["king"]), record["target"])


def test_sizes(sets):
    assert len({tuple(sorted(e["hand"])) for e in sets["sft"]}) == SMALL.sft.hands
    assert len(sets["eval_id"]) == SMALL.eval.id
    assert len(sets["eval_id_unseen"]) == SMALL.eval.id_unseen
    assert len(sets["eval_ood"]) == SMALL.eval.ood
    assert len(sets["loss_ood"]) == SMALL.eval.loss_examples
    assert len(sets["rl_prompts"]) == SMALL.rl.prompts


def test_no_evaluation_episode_in_any_training_set(sets, corpus):
    evaluation = {problem(e) for name in EVAL_SPLITS for e in sets[f"eval_{name}"]}
    for name in ("sft", "rl_prompts"):
        assert not evaluation & {problem(r) for r in sets[name]}, name
    assert not evaluation & {problem(r) for r in corpus}
    prompts = {r["prompt"][0]["content"] for name in ("sft", "rl_prompts") for r in sets[name]}
    prompts |= {r["prompt"][0]["content"] for r in corpus}
    for name in EVAL_SPLITS:
        for e in sets[f"eval_{name}"]:
            rule = data.rule_from_record(e["rule"])
            assert cards.prompt(e["hand"], rule, e["target"], TASK.style) not in prompts


def test_id_unseen_multisets_never_trained_on(sets, corpus):
    unseen = {tuple(sorted(e["hand"])) for e in sets["eval_id_unseen"]}
    for records in (sets["sft"], sets["rl_prompts"], corpus):
        assert not unseen & {tuple(sorted(r["hand"])) for r in records}


def test_id_split_reuses_sft_multisets_in_new_orders(sets):
    sft_multisets = {tuple(sorted(e["hand"])) for e in sets["sft"]}
    sft_orders = {tuple(e["hand"]) for e in sets["sft"]}
    for e in sets["eval_id"]:
        assert tuple(sorted(e["hand"])) in sft_multisets
        assert tuple(e["hand"]) not in sft_orders


def test_rules_and_face_cards(sets):
    assert all(e["rule"]["name"] == "id" for e in sets["eval_id"] + sets["eval_id_unseen"] + sets["sft"])
    assert all(e["rule"]["name"] == "ood" for e in sets["eval_ood"])
    assert all(any(r > 10 for r in e["hand"]) for e in sets["eval_ood"])


def test_training_targets_verify_as_correct(sets, corpus):
    for record in sets["sft"] + sets["loss_ood"] + corpus[:100]:
        rule = data.rule_from_record(record["rule"])
        reply = record["completion"][0]["content"]
        verdict = cards.verify(reply, record["hand"], rule, record["target"])
        assert verdict.correct, (record, verdict)
        assert verdict.numbers_follow_rule is not False


def test_pretrain_corpus_avoids_evaluation_target_and_rules(corpus):
    assert {r["target"] for r in corpus}.isdisjoint({23, 24, 25})
    assert all(12 <= r["target"] <= 36 for r in corpus)
    assert len({(r["rule"]["jack"], r["rule"]["queen"], r["rule"]["king"]) for r in corpus}) > 100


@pytest.mark.parametrize("style", ["compact", "paper"])
def test_retry_episodes_teach_the_answer_after_real_feedback(corpus, style):
    """Two-attempt episodes: the prompt holds the puzzle, a wrong attempt and the verifier's own feedback;
    the completion is the right answer. At share 0 nothing of the plain corpus changes."""
    task = dataclasses.replace(TASK, style=style)
    config = dataclasses.replace(SMALL, pretrain=dataclasses.replace(SMALL.pretrain, retry_share=0.5))
    mixed = data.build_pretrain_corpus(7, task, config)
    retries = [r for r in mixed if len(r["prompt"]) == 3]
    assert 0.3 * len(mixed) < len(retries) < 0.6 * len(mixed)
    mistakes = set()
    for record in retries:
        rule = data.rule_from_record(record["rule"])
        hand, target = tuple(record["hand"]), record["target"]
        user, wrong, said = record["prompt"]
        assert user == cards.messages(hand, rule, target, style)[0] and wrong["role"] == "assistant"
        episode = cards.Episode(hand, rule, target, style, max_attempts=2)
        verdict = episode.step(wrong["content"])
        assert not verdict.correct and said == episode.messages[-1]
        assert cards.verify(record["completion"][0]["content"], hand, rule, target).correct
        mistakes.add(verdict.category)
    assert {"wrong_numbers", "no_solution"} <= mistakes
    plain = data.build_pretrain_corpus(7, task, SMALL)
    assert all(len(r["prompt"]) == 1 for r in plain)
    if style == "compact":
        # the plain corpus's bytes as before retry episodes existed (the embedded base was trained on such a corpus)
        digest = hashlib.sha256(io.dumps(plain).encode()).hexdigest()
        assert digest == "79e0af4929d2813579b776b01abe66d18516d7646f0fcf42964e477a0b47568d"
        misread = [r for r in retries if "number 10 not available" in r["prompt"][2]["content"]]
        assert misread, "a face card read as 10 against the stated rule is among the mistakes"


@pytest.mark.parametrize("style", ["compact", "paper"])
def test_multi_attempt_episodes_hold_distinct_wrong_attempts_with_real_feedback(style):
    """Up to `failed_attempts` wrong attempts, each judged by the verifier and followed by its own
    feedback, then the right answer as the completion; the mistakes include random derivations that
    miss the target (in the compact style, half of them claim it in the last step, as weak models do)."""
    task = dataclasses.replace(TASK, style=style)
    pretrain = dataclasses.replace(SMALL.pretrain, examples=400, retry_share=1.0, failed_attempts=(1, 4))
    corpus = data.build_pretrain_corpus(3, task, dataclasses.replace(SMALL, pretrain=pretrain))
    failures: collections.Counter[int] = collections.Counter()
    messages = []
    for record in corpus:
        rule, hand, target = data.rule_from_record(record["rule"]), tuple(record["hand"]), record["target"]
        episode = cards.Episode(hand, rule, target, style, max_attempts=5)
        wrong = [m["content"] for m in record["prompt"][1::2]]
        assert len(set(wrong)) == len(wrong)
        for reply, said in zip(wrong, record["prompt"][2::2], strict=True):
            assert not episode.step(reply).correct and said == episode.messages[-1]
            messages.append(said["content"])
        assert record["prompt"] == episode.messages
        assert cards.verify(record["completion"][0]["content"], hand, rule, target).correct
        failures[len(wrong)] += 1
    # where too few distinct mistakes apply to a hand, the example stays a plain one
    assert failures[0] < 0.1 * len(corpus)
    assert all(failures[k] > 0.15 * len(corpus) for k in (1, 2, 3, 4))
    if style == "compact":
        assert any(re.fullmatch(r"fail ; value \d+ not \d+", m) for m in messages)  # an honest miss
        assert any(re.fullmatch(r"fail ; step 3 : .* not \d+", m) for m in messages)  # a claimed target
    else:
        assert any("the formula evaluates to" in m for m in messages)


def test_a_steps_only_base_corpus_solves_the_game_outside_the_tasks_layout():
    """answer_layout steps_only: every answer, right or wrong, is the steps alone (the rule's values still
    in them); the feedback is the verifier's in any layout, and the right answers count there but not in
    the task's strict layout: the base it makes knows the game, not the task's format."""
    config = dataclasses.replace(
        SMALL, pretrain=dataclasses.replace(SMALL.pretrain, retry_share=0.5, answer_layout="steps_only")
    )
    steps_only = data.build_pretrain_corpus(7, TASK, config)
    task_layout = data.build_pretrain_corpus(
        7, TASK, dataclasses.replace(config, pretrain=dataclasses.replace(config.pretrain, answer_layout="task"))
    )
    assert [r["uid"] for r in steps_only] == [r["uid"] for r in task_layout]  # the same problems
    retried = 0
    for record in steps_only:
        rule = data.rule_from_record(record["rule"])
        hand, target = tuple(record["hand"]), record["target"]
        answer = record["completion"][0]["content"]
        assert not answer.startswith("numbers") and cards.verify(answer, hand, rule, target).correct
        assert cards.verify(answer, hand, rule, target, layout="compact").category == "unparsable"
        for wrong in record["prompt"][1::2]:
            retried += 1
            assert not wrong["content"].startswith("numbers")
    assert retried > 50
    with pytest.raises(ValueError, match="rewrites compact answers, but the task's style is 'paper'"):
        data.check_base_layout(dataclasses.replace(TASK, style="paper"), config)
    data.check_base_layout(TASK, config)


def test_more_failed_attempts_than_an_episode_allows_is_refused():
    pretrain = dataclasses.replace(SMALL.pretrain, retry_share=0.5, failed_attempts=(2, 5))
    with pytest.raises(ValueError, match=r"data.pretrain.failed_attempts \[2, 5\].*1..4"):
        data.build_pretrain_corpus(3, TASK, dataclasses.replace(SMALL, pretrain=pretrain))


def test_corpus_conflicts_name_the_settings_that_decide_what_the_corpus_left_out():
    base = {"seed": 0, "task": {"target": 24, "style": "compact"}, "data": {"id_unseen_share": 0.2}}
    same = {**base, "task": {"target": 24, "style": "paper"}, "data": {"id_unseen_share": 0.2, "sft": {}}}
    assert data.corpus_conflicts(base, same) == []
    moved = {"seed": 1, "task": {"target": 23}, "data": {"id_unseen_share": 0.3}}
    assert data.corpus_conflicts(base, moved) == [
        "seed is 1, the base was pretrained for 0",
        "data.id_unseen_share is 0.3, the base was pretrained for 0.2",
        "task.target is 23, the base was pretrained for 24",
    ]
    unrecorded = {"seed": 0, "task": {"target": 24}}  # an older provenance without the corpus settings
    assert data.corpus_conflicts(unrecorded, moved) == [
        "seed is 1, the base was pretrained for 0",
        "task.target is 23, the base was pretrained for 24",
    ]


def test_same_seed_same_sets_other_seed_other_sets(sets):
    again = data.build_datasets(7, TASK, SMALL)
    assert again == sets
    other = data.build_datasets(8, TASK, SMALL)
    assert other["eval_ood"] != sets["eval_ood"]


def test_impossible_request_is_a_clear_error():
    """Refused by check_supply before any job; a library caller who skips it still gets a clear error."""
    greedy = dataclasses.replace(SMALL, sft=SftDataConfig(hands=5000, solutions_per_hand=1))
    with pytest.raises(ValueError, match=r"data.sft.hands = 5000: at most"):
        data.check_supply(7, TASK, greedy)
    rng = data.stage_rng(7, "sft")
    # keyed by the highest rank: 11 distinct keys exist (no solvable hand tops out at an ace or a 2)
    with pytest.raises(ValueError, match="could only find 11 of 14 distinct hands for sft; ask for fewer"):
        data.sample_hands(rng, cards.RULES["id"], 24, 14, lambda h: True, "sft", key=max, max_tries_per_hand=200)


def test_script_writes_identical_bytes(tmp_path, root):
    import json

    cfg = json.dumps(
        {
            "seed": 3,
            "task": dataclasses.asdict(TASK),
            "data": dataclasses.asdict(SMALL),
        }
    )

    def digest(out):
        subprocess.run(
            [sys.executable, str(root / "scripts/data.py"), "sets", "--config", cfg, "--out", str(out)],
            check=True,
            capture_output=True,
        )
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.glob("*.jsonl"))}

    first, second = digest(tmp_path / "a"), digest(tmp_path / "b")
    assert first == second
    assert set(first) == {
        "sft.jsonl",
        "rl_prompts.jsonl",
        "eval_id.jsonl",
        "eval_id_unseen.jsonl",
        "eval_ood.jsonl",
        "loss_id_unseen.jsonl",
        "loss_ood.jsonl",
    }
    assert (tmp_path / "a" / "manifest.json").exists()


def test_supply_is_exact_at_its_limit(monkeypatch):
    """Each count the config can ask for is buildable at the limit `supply` names and refused one above
    it, naming the key and the limit, before anything is built."""
    config = dataclasses.replace(SMALL, sft=SftDataConfig(hands=40, solutions_per_hand=2, orders_per_solution=3))
    limits = {key: limit for key, (limit, _) in data.supply(0, TASK, config).items()}
    assert limits["data.sft.hands"] == len(data.split_multisets(0, config.id_unseen_share, TASK.target).train)
    at_limit = dataclasses.replace(config, eval=dataclasses.replace(config.eval, id=limits["data.eval.id"]))
    data.check_supply(0, TASK, at_limit)
    sets = data.build_datasets(0, TASK, at_limit)
    hands = [tuple(e["hand"]) for e in sets["eval_id"]]
    assert len(set(hands)) == len(hands) == limits["data.eval.id"]
    over = dataclasses.replace(config, eval=dataclasses.replace(config.eval, id=limits["data.eval.id"] + 1))
    with pytest.raises(
        ValueError, match=rf"data.eval.id = {limits['data.eval.id'] + 1}: at most {limits['data.eval.id']}"
    ):
        data.check_supply(0, TASK, over)
    with pytest.raises(ValueError, match="could only find"):  # what the datasets job would meet
        data.build_datasets(0, TASK, over)
    too_many = dataclasses.replace(config, sft=dataclasses.replace(config.sft, hands=limits["data.sft.hands"] + 1))
    with pytest.raises(
        ValueError, match=rf"data.sft.hands = \d+: at most {limits['data.sft.hands']} .*set data.sft.hands to"
    ):
        data.check_supply(0, TASK, too_many)


def test_supply_kept_between_dry_runs_is_the_supply_of_these_settings(tmp_path):
    """A dry run keeps the limits; the next one with the same settings reads them, other settings do not."""
    config = dataclasses.replace(SMALL, sft=SftDataConfig(hands=40, solutions_per_hand=2, orders_per_solution=3))
    fresh = data.supply(0, TASK, config)
    assert data.cached_supply(0, TASK, config, tmp_path) == fresh
    (kept,) = tmp_path.glob("supply-*.json")
    assert data.cached_supply(0, TASK, config, tmp_path) == fresh
    other = dataclasses.replace(config, sft=dataclasses.replace(config.sft, hands=41))
    assert data.cached_supply(0, TASK, other, tmp_path) == data.supply(0, TASK, other)
    assert data.cached_supply(1, TASK, config, tmp_path) == data.supply(1, TASK, config)
    assert len(list(tmp_path.glob("supply-*.json"))) == 3
    kept.write_text(kept.read_text()[:-9])  # cut short (a full disk): computed again, and kept again
    assert data.cached_supply(0, TASK, config, tmp_path) == fresh
    assert json.loads(kept.read_text())


def test_orders_per_solution_writes_each_solution_in_distinct_orders():
    one = data.build_datasets(0, TASK, SMALL)["sft"]
    several = data.build_datasets(
        0, TASK, dataclasses.replace(SMALL, sft=dataclasses.replace(SMALL.sft, orders_per_solution=4))
    )["sft"]
    by_solution = collections.defaultdict(list)
    for e in several:
        by_solution[tuple(sorted(e["hand"])), e["formula"]].append(tuple(e["hand"]))
    assert all(len(orders) == len(set(orders)) == min(4, data.orders(key[0])) for key, orders in by_solution.items())
    assert {tuple(sorted(e["hand"])) for e in one} == {multiset for multiset, _ in by_solution}  # same hands
    assert len(several) > 2 * len(one)
