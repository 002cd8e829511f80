"""Atomic writes: a failed write leaves nothing under the final name and keeps what was there."""

import pytest

from sftrl import io


def test_failed_write_leaves_old_file(tmp_path):
    path = tmp_path / "out.json"
    io.write_json(path, {"a": 1})
    with pytest.raises(RuntimeError), io.atomic_path(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert io.read_json(path) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_directory_replaced_whole(tmp_path):
    target = tmp_path / "model"
    with io.atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "a").write_text("1")
    with io.atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "b").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == ["b"]


def test_jsonl_round_trip_is_canonical(tmp_path):
    path = tmp_path / "x.jsonl"
    assert io.write_jsonl(path, [{"b": 1, "a": "é"}, {"c": [1, 2]}]) == 2
    assert path.read_text() == '{"a": "é", "b": 1}\n{"c": [1, 2]}\n'
    assert io.read_jsonl(path) == [{"a": "é", "b": 1}, {"c": [1, 2]}]
