"""sftrl: a Snakemake workflow reproducing a study of SFT vs RL fine-tuning on GeneralPoints."""
