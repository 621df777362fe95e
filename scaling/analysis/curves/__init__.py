"""Loss curves: the loss-curve law with LR annealing per model size.

- :mod:`.curve`: the law, its fit and its bootstrap, over the schedules of
  :mod:`scaling.schedule`.
- :mod:`.curve_dir`: ``scaling fit --law curve``: ``curve_fit.json`` and its plot.
"""
