"""A test helper shared by the weight-reading and restoration tests."""

import json
import shutil

from safetensors import safe_open
from safetensors.torch import save_file

from sftrl.spectral.weights import INDEX_FILE, SINGLE_FILE


def shard(model_dir, out):
    """A copy of `model_dir` with its weights split over two shard files and an index."""
    shutil.copytree(model_dir, out, ignore=shutil.ignore_patterns("*.safetensors"))
    with safe_open(model_dir / SINGLE_FILE, framework="pt") as handle:
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    names = sorted(tensors)
    files = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for file, part in files.items():
        save_file({n: tensors[n] for n in part}, out / file, metadata={"format": "pt"})
    weight_map = {n: f for f, part in files.items() for n in part}
    (out / INDEX_FILE).write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return out
