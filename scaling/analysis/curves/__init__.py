"""Loss curves: the loss-curve law with LR annealing per model size.

- :mod:`.curve`: the Python API: :func:`~.curve.fit_curves` -> :class:`~.curve.CurveFit`, the law
  of every model size of a curves table, and its predictions.
- :mod:`.law`: the law, the schedule areas it reads (over :mod:`scaling.schedule`), the options.
- :mod:`.runs`: a curves table read into runs, each with its schedule.
- :mod:`.size_fit`: the fit of one size's runs and its bootstrap.
- :mod:`.size_law`: the law of one size and its predictions with intervals.
- :mod:`.curve_dir`: ``scaling fit --law curve``: ``curve_fit.json`` and its plot.
"""
