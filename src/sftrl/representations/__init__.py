"""How RL moves a model's representations relative to the OOD-peak SFT checkpoint.

- `features`: two models read the same evaluation prompts; pooled final-layer states and next-token
  metrics, streamed in batches (torch);
- `metrics`: the registry of metrics (cosine, linear CKA, MMD², Fréchet distance, Jensen–Shannon, top-k
  overlap), the paired bootstrap and the recovery Δ (numpy/scipy);
- `table`: the pair files, the tidy table `representations.csv` and its figure.
"""
