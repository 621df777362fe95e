"""Laws and their estimators: a run table in, a fitted law with bootstrap intervals out.

- :mod:`.laws`: every registered law (Chinchilla, Kaplan forms, data-constrained) in log space,
  with what it is: its terms, its allocation, whether it joins model selection.
- :mod:`.log_models`: the laws' log-space models and their Jacobians.
- :mod:`.optimize`: the summed Huber objective of log residuals, batched multi-start L-BFGS.
- :mod:`.bootstrap`: resample weights, the refit process pool, percentile intervals.
- :mod:`.approach3`: a law fitted to every run (approach 3, Kaplan), with its bootstrap.
- :mod:`.isoflop`: approach 2, a parabola per compute budget.
- :mod:`.envelope`: approach 1, the least loss at each FLOP count over loss curves.
- :mod:`.frontier`: power laws in C and the loss frontier through compute-optimal points.
- :mod:`.allocation`: compute-optimal N and D of a law (closed forms, a numeric optimum).
- :mod:`.noise`: run-to-run noise (seed replicates, robust residuals).
- :mod:`.results`: FitOptions, FitResult; the one writer and reader of ``fit.json``.
- :mod:`.fit`: :func:`~scaling.analysis.fitting.fit.fit`, the entry point over approaches 1-3.
- :mod:`.fit_dir`: a run table file -> a fit directory (fit.json, runs.csv, report), atomically.
"""
