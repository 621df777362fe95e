"""The analysis stack: run tables in, fitted laws, predictions and reports out.

numpy, scipy, pandas and matplotlib only: nothing here imports torch, lightning, mlflow or
:mod:`scaling.training`; of the core it reads :mod:`scaling.errors`, :mod:`scaling.counting`,
:mod:`scaling.numbers`, :mod:`scaling.files`, the config and :mod:`scaling.schedule` (the LR
schedule of the curve law). This package module imports nothing itself.

Shared by the folders below: ``table`` (the run table: columns, reading, validating, writing),
``columns`` (the (N, D, C, loss) arrays of a table, ranges, a law's predictions) and ``outdir``
(an output folder written whole or not at all). The folders, by job:

- :mod:`.fitting`: laws and their estimators (approaches 1-3), bootstrap, noise, ``fit.json``.
- :mod:`.prediction`: what a fit says beyond its runs (predict), whether it may (health), and
  two fits side by side (compare).
- :mod:`.design`: the runs before they are trained: the ladder planner, its throughput model and
  shape catalogue, the sweep preset it writes, the hyperparameter rule's fit.
- :mod:`.curves`: the loss-curve law with LR annealing per model size.
- :mod:`.report`: ``report.md``, its held-out statistics and plots, ``compare.md``.
"""
