#!/usr/bin/env python
"""Restoration edits of a target model with a source model: one complete model directory per edit.

--edit is a JSON list of EditSpec dicts (inline or a file), e.g.
  '[{"kind": "direction", "top": 0.2}, {"kind": "layer", "layers": 0.25}]'
and each edit is written to OUT_ROOT/{spec.name}, e.g. OUT_ROOT/direction-top20-tail0.
"""

import argparse
import logging
from pathlib import Path

from sftrl.config import load_json_arg
from sftrl.restoration.apply import edit_grid
from sftrl.restoration.spec import EditSpec
from sftrl.spectral.svd import SvdCache


def load_specs(text_or_path: str) -> list[EditSpec]:
    data = load_json_arg(text_or_path)
    return [EditSpec.from_dict(item) for item in (data if isinstance(data, list) else [data])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", required=True, type=Path, help="model S whose parts are put back")
    parser.add_argument("--target", required=True, type=Path, help="model T that is edited")
    parser.add_argument("--edit", required=True, help="JSON list of EditSpec dicts, or a file holding one")
    parser.add_argument("--out-root", required=True, type=Path, help="one model directory per edit goes here")
    parser.add_argument("--cache", type=Path, help="SVD cache directory shared with spectral analysis")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    edit_grid(args.source, args.target, load_specs(args.edit), args.out_root, SvdCache(args.cache))


if __name__ == "__main__":
    main()
