"""Restoration: putting parts of a source checkpoint S back into a target T, and what it recovers.

- `spec`: what an edit is (its kind, from the registry `EDIT_KINDS`, and its singular indices or layers),
  checked as a grid; free of torch, so the workflow names and checks the edited models when it builds
  its DAG;
- `apply`: making the edited models, each a complete model directory;
- `table`: their success per split and the recovery between source and target, as a table and figures.
"""
