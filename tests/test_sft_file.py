"""An SFT set read from a file in the authors' format (sftrl.sft_file, data.sft.file), on a fixture written
in that format: the reference prompt as the human turn, the authors' response template as the gpt turn."""

import dataclasses
import json
import shutil

import pytest

from sftrl import cards, data
from sftrl.config import DataConfig, EvalDataConfig, RlDataConfig, SftDataConfig, TaskConfig
from sftrl.sft_file import SftFileError, checked_multisets, read_sft_file

TASK = TaskConfig(style="paper")


@pytest.fixture
def fixture(root):
    return root / "tests" / "fixtures" / "gp_l_sample.json"


def test_every_record_becomes_an_example_with_its_own_texts(fixture):
    records = json.loads(fixture.read_text())
    examples = read_sft_file(fixture, 24)
    assert len(examples) == len(records) == 6
    for record, example in zip(records, examples, strict=False):
        human, gpt = (turn["value"] for turn in record["conversations"])
        assert example["prompt"] == [{"role": "user", "content": human}]
        assert example["completion"] == [{"role": "assistant", "content": gpt}]
        assert cards.verify(gpt, example["hand"], cards.Rule(**example["rule"])).correct
        assert example["rule"]["name"] == "id"
    assert examples[0]["hand"] == [7, 13, 3, 4] and examples[0]["formula"] == "(3+10-7)*4"
    assert [e["line"] for e in examples] == [2, 16, 30, 44, 58, 72]  # where each record opens


def write_broken(tmp_path, fixture, change):
    records = json.loads(fixture.read_text())
    change(records[1])
    path = tmp_path / "data.json"
    path.write_text(json.dumps(records, indent=2))
    return path


@pytest.mark.parametrize(
    "change, reason",
    [
        (lambda r: r["conversations"][1].update(value='{"formula": "1+2+3+4=24"}'), "the answer is not a solution"),
        (lambda r: r["conversations"][0].update(value="What is 24?"), "target is none"),
        (
            lambda r: r["conversations"][0].update(value=r["conversations"][0]["value"].replace("Cards: ", "Deck: ")),
            "no 'Cards: \\[...\\]' line",
        ),
        (lambda r: r.update(image="cards.png"), "has an image"),
        (lambda r: r["conversations"].append({"from": "human", "value": "again"}), "3 turns"),
        (lambda r: r["conversations"].reverse(), "expected a human turn then a gpt turn"),
    ],
)
def test_a_bad_record_is_refused_with_its_line_and_reason(tmp_path, fixture, change, reason):
    path = write_broken(tmp_path, fixture, change)
    with pytest.raises(SftFileError, match=rf"data.json, line 16: .*{reason}"):
        read_sft_file(path, 24)


def test_json_lines_and_broken_json_name_the_line(tmp_path, fixture):
    records = json.loads(fixture.read_text())
    lines = tmp_path / "data.jsonl"
    lines.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert [e["line"] for e in read_sft_file(lines, 24)] == [1, 2, 3, 4, 5, 6]
    lines.write_text(json.dumps(records[0]) + "\n{broken\n")
    with pytest.raises(SftFileError, match="line 2: not JSON"):
        read_sft_file(lines, 24)
    unclosed = tmp_path / "unclosed.json"
    unclosed.write_text(json.dumps(records)[:-1])
    with pytest.raises(SftFileError, match="not closed"):
        read_sft_file(unclosed, 24)
    with pytest.raises(SftFileError, match="target is 24, the task's is 12"):
        read_sft_file(fixture, 12)


def config(path, **eval_counts) -> DataConfig:
    counts = {"id": 8, "id_unseen": 8, "ood": 8, "loss_examples": 4, **eval_counts}
    sft = SftDataConfig(file=None if path is None else str(path))
    return DataConfig(sft=sft, eval=EvalDataConfig(**counts), rl=RlDataConfig(prompts=50))


def test_the_datasets_train_on_the_file_and_keep_id_unseen_unseen(fixture):
    cfg = config(fixture)
    sets = data.build_datasets(0, TASK, cfg)
    split = data.split_multisets(0, cfg.id_unseen_share, 24)
    examples = read_sft_file(fixture, 24)
    kept = [e for e in examples if data.multiset(e["hand"]) not in split.held_out]
    assert 0 < len(kept) <= len(examples)
    assert [r["completion"] for r in sets["sft"]] == [e["completion"] for e in kept]
    trained = {data.multiset(r["hand"]) for r in sets["sft"]}
    assert {data.multiset(r["hand"]) for r in sets["eval_id"]} <= trained  # ID hands the file holds
    assert not {data.multiset(r["hand"]) for r in sets["eval_id_unseen"]} & trained
    assert data.build_datasets(0, TASK, cfg) == sets  # deterministic


def test_the_dry_run_checks_the_file_once_and_counts_what_it_supplies(tmp_path, fixture):
    path = tmp_path / "data.json"
    shutil.copy(fixture, path)
    cache = tmp_path / "cache"
    first = checked_multisets(path, 24, cache)
    assert len(list(cache.iterdir())) == 1 and checked_multisets(path, 24, cache) == first
    with pytest.raises(ValueError, match=r"data.eval.id = 10000: at most \d+ can be had \(card orders of the SFT file"):
        data.check_supply(0, TASK, config(path, id=10000), cache)
    path.write_text(path.read_text().replace("*4=24", "*5=24", 1))  # a new size and time: checked again
    with pytest.raises(SftFileError, match="line 2: the answer is not a solution"):
        data.check_supply(0, TASK, config(path), cache)


def test_the_authors_layout_and_the_file_need_the_paper_style(fixture):
    compact = TaskConfig(style="compact")
    with pytest.raises(ValueError, match=r"data.sft.answer_layout authors: .*task.style is 'compact'"):
        data.check_sft_source(compact, DataConfig(sft=SftDataConfig(answer_layout="authors")))
    with pytest.raises(ValueError, match=r"data.sft.file .*task.style is 'compact'"):
        data.check_sft_source(compact, config(fixture))
    data.check_sft_source(TASK, config(fixture))


def test_the_generated_set_in_the_authors_layout_is_their_template_and_verifies():
    cfg = dataclasses.replace(config(None), sft=SftDataConfig(hands=5, answer_layout="authors"))
    sets = data.build_datasets(0, TASK, cfg)
    answer = sets["sft"][0]["completion"][0]["content"]
    assert answer.startswith('\n{\n  "cards": [\'') and answer.endswith('",\n}')
    for record in sets["sft"] + sets["loss_ood"]:
        reply = record["completion"][0]["content"]
        assert cards.verify(reply, record["hand"], cards.Rule(**record["rule"])).correct
