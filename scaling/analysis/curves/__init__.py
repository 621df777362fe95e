"""Loss curves: a law of the loss curve under any LR schedule, per model size.

- :mod:`.curve`: the Python API: :func:`~.curve.fit_curves` -> :class:`~.curve.CurveFit`, the law
  of every model size of a curves table, and its predictions.
- :mod:`.forms`: the curve forms: the multi-power law (:mod:`.mpl`, the default) and Tissue et
  al.'s law (:mod:`.tissue`).
- :mod:`.law`: schedules, the LR of every update, Tissue's areas, the options.
- :mod:`.runs`: a curves table read into runs, each with its rebuilt schedule; :mod:`.traces`:
  a table with an ``lr`` column, each run with its LR trace.
- :mod:`.size_fit`: the fit of one size's runs and its bootstrap.
- :mod:`.size_law`: the law of one size and its predictions with intervals.
- :mod:`.curve_dir`: ``scaling fit --law curve``: ``curve_fit.json``, its plot, ``--score``.
"""
