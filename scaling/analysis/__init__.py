"""The analysis stack: run tables in, fitted laws, predictions and reports out.

numpy, scipy, pandas and matplotlib only: nothing here imports torch, lightning, mlflow or
:mod:`scaling.training`; of the core it reads :mod:`scaling.errors`, :mod:`scaling.counting`,
the config's schema and :mod:`scaling.schedule` (the LR schedule of the curve law).
This package module imports nothing itself.

Modules, in the order they build on each other:

- ``numbers``: JSON-safe floats and short text forms of numbers.
- ``laws``: the registered laws (Chinchilla, Kaplan forms) in log space, with Jacobians.
- ``table``: the run table: reading, validating, writing.
- ``columns``: the (N, D, C, loss) arrays of a run table, their ranges, a law's predictions.
- ``bootstrap``: resample weights, the process pool for refits, percentile intervals.
- ``results``: FitOptions, FitResult and its parts; the one writer and reader of ``fit.json``.
- ``allocation``: compute-optimal N and D of a law: closed forms and a numeric optimum.
- ``optimize``: objective (summed Huber of log-residuals), batched L-BFGS, multi-start fit.
- ``approach3``: any law fitted to every run (approach 3, Kaplan), with its bootstrap.
- ``frontier``: power laws in C and the loss frontier through compute-optimal points.
- ``isoflop``: approach 2, parabolas per compute budget.
- ``envelope``: approach 1, the least loss at each FLOP count over loss curves.
- ``fit``: :func:`~scaling.analysis.fitting.fit.fit`, the entry point over approaches 1-3.
- ``fit_dir``: a run table file -> a fit directory (fit.json, runs.csv, report), atomically.
- ``curve``: the loss-curve law with LR annealing (Tissue et al. 2024) per model size, over the
  schedules of :mod:`scaling.schedule`; ``curve_dir``: ``curve_fit.json`` and its plot.
- ``predict``: Predictor: allocation of a budget, loss of a size, compute for a target loss.
- ``report``: ``report.md`` and its plots (``report.stats``, ``report.plots``,
  ``report.markdown``).
"""
