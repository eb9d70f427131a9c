"""Judges against people: `vidjudge eval` (correlation with human labels) and `vidjudge leaderboard`.

  results.py      read a rescore output dataset (committed rows of one judge)
  labels.py       read human labels: LOVE JSON lines, Video-Bench human_anno/<dim>.json, plain CSV
  stats.py        SRCC / PLCC / KRCC, accuracy, bootstrap intervals (scipy)
  evaluate.py     join results with labels, compute every metric per dimension, write the report
  plots.py        scatter and ranking PNGs (matplotlib, headless)
  leaderboard.py  mean, interval and rank per generator and dimension
  cli.py          the Typer commands

Needs the `rescore` extra (pyarrow, scipy, matplotlib, pandas), imported when a command runs.
"""
