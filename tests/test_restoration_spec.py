"""Edit specifications as a grid: checks, layer counts from a model config, deduplicated layer resets."""

import subprocess
import sys

import pytest

from sftrl.restoration.spec import EditError, EditSpec, dedupe_layer_edits, num_decoder_layers, parse_edits


def test_parse_edits_builds_specs_in_order():
    specs = parse_edits([{"kind": "direction", "top": 0.2}, {"kind": "layer", "layers": "0:0.25"}])
    assert [s.name for s in specs] == ["direction-top20-tail0", "layer-0to25pct"]


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ([{"kind": "direction"}], r"edits\[0\]: a direction edit with top = tail = 0 edits nothing"),
        (
            [{"kind": "value", "top": 1.0}, {"kind": "value", "top": 1}],
            r"\['value-top100-tail0'\] given more than once",
        ),
        (
            [{"kind": "direction", "top": 0.2}, {"kind": "direction", "top": 1.5}],
            r"edits\[1\]: top = 1.5 is not a fraction",
        ),
        ([{"kind": "layer", "layers": 0.0}], r"edits\[0\]: layers = 0.0"),
        ([{"kind": "direction", "top": 0.2, "k": 3}], r"edits\[0\]: unknown edit field\(s\) \['k'\]"),
        ([], "no edits"),
    ],
)
def test_parse_edits_rejects_bad_grids(items, message):
    with pytest.raises(EditError, match=message):
        parse_edits(items)


def test_layer_count_from_model_configs():
    assert num_decoder_layers({"num_hidden_layers": 28}) == 28
    assert num_decoder_layers({"model_type": "mllama", "text_config": {"num_hidden_layers": 40}}) == 40
    assert num_decoder_layers({"model_type": "llama"}) is None
    assert num_decoder_layers(None) is None


def test_identical_layer_resets_are_made_once():
    grid = [
        EditSpec("layer", layers=0.25),
        EditSpec("layer", layers=0.5),
        EditSpec("layer", layers="0:0.25"),
        EditSpec("layer", layers="0.25:0.5"),
        EditSpec("layer", layers=[0]),
        EditSpec("layer", layers="0:0.25", patterns=("*.mlp.*",)),
        EditSpec("direction", top=0.2),
    ]
    kept, dropped = dedupe_layer_edits(grid, 4)
    assert [s.name for s in kept] == [
        "layer-first25pct",
        "layer-first50pct",
        "layer-25to50pct",
        grid[5].name,  # other patterns: another edit
        "direction-top20-tail0",
    ]
    assert dropped == {"layer-0to25pct": "layer-first25pct", "layer-L0": "layer-first25pct"}
    assert dedupe_layer_edits(grid, 8)[1] == {"layer-0to25pct": "layer-first25pct"}  # [0] is not 0-1 now
    assert dedupe_layer_edits(grid, None) == (grid, {})


def test_layer_reset_beyond_the_model_is_an_error():
    with pytest.raises(EditError, match="only 4 decoder layers"):
        dedupe_layer_edits([EditSpec("layer", layers=[5])], 4)


def test_planning_does_not_import_torch():
    code = "import sys, sftrl.restoration.spec, sftrl.roles, sftrl.restoration.table; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
