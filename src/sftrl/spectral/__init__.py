"""Spectral analysis of model weights, streamed one tensor at a time.

- `weights`: the safetensors weights of a model directory, read and written tensor by tensor, and the
  selection of tensors by name pattern;
- `svd`: thin SVDs of weight matrices and their disk cache, shared with restoration;
- `metrics`: the comparison of two checkpoints (or of two updates) matrix by matrix, as a tidy table, and
  its summaries;
- `plots`: the figures of those tables and summaries (the only module that needs matplotlib).
"""
