"""Reports: ``report.md`` that reads on its own, and the PNG plots it references.

- :mod:`.stats`: what a report adds to a fit: held-out error of each law (leave the top budgets
  out, and k-fold over runs) and the law that extrapolated best, a backtest (hold out the top
  budgets whole by rank, fit the rest, predict them), the exponent shift between N and C
  conventions, the budgets of the allocation table.
- :mod:`.plots`: the figures (matplotlib, Agg).
- :mod:`.markdown`: the document, :func:`scaling.analysis.report.markdown.write_report`, and its
  verifications table; its sections are in :mod:`.fit_sections` (health, data, law, allocation,
  warnings), :mod:`.heldout_sections` (law comparison, backtest, exponent shift) and
  :mod:`.method`, their cells and tables in :mod:`.cells`.

This package module imports nothing, so the command line can read the default below without
loading matplotlib.
"""

HOLDOUT_MANY = 5  # the backtest holds out the top budget, the top two from this many budgets on
