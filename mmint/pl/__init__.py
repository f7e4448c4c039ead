"""Figures of runs and benchmarks for a notebook: each function returns a matplotlib figure.

- :func:`umap`: the joint latents of one or several runs, one panel per run (scanpy's UMAP);
- :func:`curves`: a run's per-epoch validation metrics (``curves.csv``);
- :func:`leaderboard`: a benchmark's leaderboard heat map (the figure of ``report.md``).
"""

from mmint.pl.figures import curves, leaderboard, umap

__all__ = ["curves", "leaderboard", "umap"]
