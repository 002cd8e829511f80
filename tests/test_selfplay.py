"""Self-play refinement: the hands it plays, the episodes it builds from the model's own failures, one round."""

import dataclasses
import random
from collections import Counter
from pathlib import Path

import pytest

from sftrl import cards, data, io, selfplay
from sftrl.config import DataConfig, PretrainDataConfig, TaskConfig
from sftrl.evaluate import run_episodes
from sftrl.names import EVAL_SPLITS

TASK = TaskConfig(target=24, style="compact")
DATA = DataConfig(
    pretrain=PretrainDataConfig(examples=200, targets=(20, 28), exclude_targets=(), failed_attempts=(1, 3))
)
EMBEDDED = Path(__file__).resolve().parents[1] / "resources" / "tiny-base"


def problem(record):
    rule = record["rule"]
    return (tuple(record["hand"]), (rule["jack"], rule["queen"], rule["king"]), record["target"])


def test_rounds_play_fresh_pretraining_style_hands_never_an_evaluation_problem():
    first, again, second = (selfplay.problems(0, r, TASK, DATA, 400) for r in (1, 1, 2))
    assert first == again and first != second
    sets = data.build_datasets(0, TASK, DATA)
    evaluation = {problem(e) for name in EVAL_SPLITS for e in sets[f"eval_{name}"]}
    held_out = data.split_multisets(0, DATA.id_unseen_share, TASK.target).held_out
    evaluation_rules = {(10, 10, 10), (11, 12, 13)}
    for record in first + second:
        assert problem(record) not in evaluation
        assert data.multiset(record["hand"]) not in held_out
        rule = record["rule"]
        assert record["target"] != 24 or (rule["jack"], rule["queen"], rule["king"]) not in evaluation_rules
        assert cards.solutions(tuple(record["hand"]), cards.Rule(**rule), record["target"])
    assert {r["target"] for r in first} == set(range(20, 29))


def test_a_second_base_plays_other_hands_under_the_same_exclusions():
    """model.base_seed: the stream of hands is the base's seed's, the problems left out the experiment's."""
    own, other = selfplay.problems(0, 1, TASK, DATA, 200), selfplay.problems(0, 1, TASK, DATA, 200, stream_seed=1)
    assert own != other and own == selfplay.problems(0, 1, TASK, DATA, 200, stream_seed=0)
    held_out = data.split_multisets(0, DATA.id_unseen_share, TASK.target).held_out
    assert not any(data.multiset(record["hand"]) in held_out for record in other)


class Scripted:
    """A model that answers each hand with its script, one reply per attempt."""

    def __init__(self, script):
        self.script = script

    def generate(self, conversations, keys=None):
        return [self.script[c[0]["content"]][sum(m["role"] == "assistant" for m in c)] for c in conversations]


@pytest.fixture(scope="module")
def played():
    """Episodes a scripted model played: right at once, right at the third attempt, never right, each
    failure the same wrong reply (the habit self-play exists to break) or different ones."""
    records = selfplay.problems(0, 1, TASK, DATA, 30)
    script = {}
    for i, record in enumerate(records):
        hand, rule, target = tuple(record["hand"]), cards.Rule(**record["rule"]), record["target"]
        right = cards.answer(hand, rule, cards.solutions(hand, rule, target)[0], target, "compact")
        wrong = [f"numbers {' '.join(map(str, rule.values(hand)))} ; {k} + 1 = {k + 1}" for k in range(1, 6)]
        script[cards.prompt(hand, rule, target, "compact")] = [
            [right] * 5,
            [wrong[0], wrong[1], right, right, right],
            [wrong[0]] * 5,
            wrong,
        ][i % 4]
    results = {}
    for target in {r["target"] for r in records}:
        group = [r for r in records if r["target"] == target]
        for result in run_episodes(Scripted(script), group, dataclasses.replace(TASK, target=target), progress=False):
            results[result.uid] = result.to_record()
    return [results[r["uid"]] for r in records]


def test_retry_episodes_replay_the_models_own_failures_with_the_verifiers_feedback(played):
    episodes = selfplay.retry_episodes(played, TASK, random.Random(1), max_failed=3)
    by_uid = {r["uid"]: r for r in played}
    assert len(episodes) == sum(not (r["success"] and len(r["turns"]) == 1) for r in played)
    shown: Counter[int] = Counter()
    for example in episodes:
        record = by_uid[example["uid"]]
        hand, rule, target = tuple(record["hand"]), cards.Rule(**record["rule"]), record["target"]
        own = [m["content"] for m in example["prompt"][1::2]]
        assert own == selfplay.failed_replies(record)[: len(own)]
        assert 1 <= len(own) <= min(3, len(selfplay.failed_replies(record)))
        episode = cards.Episode(list(hand), rule, target, "compact", max_attempts=5)
        for reply in own:
            assert not episode.step(reply).correct
        assert example["prompt"] == episode.messages  # the verifier's own words after each failure
        assert cards.verify(example["completion"][0]["content"], hand, rule, target).correct
        shown[len(own)] += 1
    assert set(shown) == {1, 2, 3}  # j is drawn, capped by the failures and by max_failed


def test_a_base_in_the_making_plays_and_learns_in_its_own_layout(monkeypatch):
    """A base taught the steps alone is judged in any layout while it is built (the task's strict layout is
    what SFT teaches), and its retry episodes end in the steps alone."""
    import sftrl.evaluate.backends as backends

    records = selfplay.problems(0, 1, TASK, DATA, 12)
    script = {}
    for record in records:
        hand, rule, target = tuple(record["hand"]), cards.Rule(**record["rule"]), record["target"]
        right = cards.answer(hand, rule, cards.solutions(hand, rule, target)[0], target, "compact")
        script[cards.prompt(hand, rule, target, "compact")] = [cards.in_answer_layout(right, "steps_only")] * 5
    monkeypatch.setattr(backends, "make_backend", lambda model_dir, cfg: Scripted(script))
    assert TASK.layout == "compact"  # the task counts its own layout only
    played = selfplay.play("unused", records, TASK, None)
    assert all(r["success"] and len(r["turns"]) == 1 for r in played)
    failed = [dict(r, success=False) for r in played]  # as if every reply had failed
    for example in selfplay.retry_episodes(failed, TASK, random.Random(0), 2, layout="steps_only"):
        rule, hand, target = cards.Rule(**example["rule"]), tuple(example["hand"]), example["target"]
        answer = example["completion"][0]["content"]
        assert not answer.startswith("numbers") and cards.verify(answer, hand, rule, target).correct


def test_summary_counts_solves_and_retries_that_repeat_a_reply(played):
    summary = selfplay.summary(played)
    # 30 hands, four scripts in turn: 8 right at once, 8 at the third attempt, 7 + 7 never
    assert summary == {
        "episodes": 30,
        "solved_first_attempt": 8,
        "solved_after_failure": 8,
        "retries": 8 * 2 + 14 * 4,
        "repeated_retries": 8 * 0 + 7 * 4 + 7 * 0,
    }


def test_training_set_mixes_replay_at_its_share():
    episodes = [{"uid": f"e{i}"} for i in range(30)]
    corpus = [{"uid": f"c{i}"} for i in range(100)]
    mixed = selfplay.training_set(episodes, corpus, 0.25, random.Random(0))
    assert len(mixed) == 40 and sum(r["uid"].startswith("c") for r in mixed) == 10
    assert len(selfplay.training_set(episodes, corpus, 0.0, random.Random(0))) == 30
    with pytest.raises(ValueError, match=r"replay_share 0.9: 270 replayed examples, the corpus has 100"):
        selfplay.training_set(episodes, corpus, 0.9, random.Random(0))


def test_bad_refine_settings_are_refused():
    with pytest.raises(ValueError, match=r"model.refine: hands >= 1"):
        selfplay.RefineConfig(hands=0, replay_share=0.5)
    with pytest.raises(ValueError, match=r"replay_share 1.0"):
        selfplay.RefineConfig(hands=10, replay_share=1.0)


def test_one_round_plays_the_model_and_trains_it_on_its_failures(tmp_path, default_config):
    """A round on the embedded base: its played episodes, then two training steps from it, exported with
    a provenance that keeps what the corpus left out (read by later experiments) and the round's settings."""
    config = {key: default_config[key] for key in ("seed", "task", "data", "eval")}
    config["model"] = {
        **default_config["model"],
        "refine": {
            "hands": 24,
            "replay_share": 0.5,
            "train": {"max_steps": 2, "save_every": 1, "per_device_batch_size": 4},
        },
    }
    summary = selfplay.run_play(config, EMBEDDED, 1, tmp_path / "played.jsonl")
    played = io.read_jsonl(tmp_path / "played.jsonl")
    assert [r["uid"] for r in played] == [
        r["uid"] for r in selfplay.problems(0, 1, TASK, data_config(default_config), 24)
    ]
    assert summary == selfplay.summary(played) and summary["episodes"] == 24
    assert summary["solved_first_attempt"] < 24  # failures to learn from
    corpus = corpus_file(tmp_path, default_config)
    result = selfplay.run_refine(
        config,
        EMBEDDED,
        tmp_path / "played.jsonl",
        corpus,
        1,
        tmp_path / "refined",
        tmp_path / "work",
        tmp_path / "log.jsonl",
    )
    assert result.global_step == 2 and (tmp_path / "refined" / "model.safetensors").is_file()
    provenance = io.read_json(tmp_path / "refined" / "provenance.json")
    assert data.corpus_conflicts(provenance["config"], default_config) == []
    assert provenance["config"]["data"]["id_unseen_share"] == default_config["data"]["id_unseen_share"]
    assert provenance["resolved"]["refine"]["round"] == 1 and provenance["resolved"]["train"]["max_steps"] == 2


def data_config(config):
    from sftrl.config import from_dict

    return from_dict(DataConfig, config["data"], "data")


def corpus_file(tmp_path, config):
    from sftrl.config import from_dict

    task = from_dict(TaskConfig, config["task"], "task")
    small = dataclasses.replace(
        data_config(config), pretrain=dataclasses.replace(data_config(config).pretrain, examples=100)
    )
    path = tmp_path / "corpus.jsonl"
    io.write_jsonl(path, data.build_pretrain_corpus(0, task, small))
    return path
