"""The training stack: torch, Lightning and MLflow live here and nowhere else.

- :mod:`.model`: the GPT decoder in plain torch.
- :mod:`.data`: corpora, processing (dedup, filters), tokenizers, the token cache and the batches.
- :mod:`.module`: the LightningModule (loss, AdamW, LR schedule, log-spaced validation).

One run (``python -m scaling.train``), in the order it happens:

- :mod:`.prepare`: config, tracking store and data checked before anything is written.
- :mod:`.run`: :func:`~.run.train` (lease, record, fit, every way out recorded) and the Hydra
  entry point with its config-validating callback.
- :mod:`.record`: the run's MLflow record: which run an attempt continues, params, config.yaml.
- :mod:`.trainer`: the Lightning Trainer, its checkpoints and where a resume starts.
- :mod:`.branches`: ``train.horizons``: one stable run and a cooldown branch per horizon.
- :mod:`.tracking`: the MLflow store, finding runs by key, the recorder of one run.
- :mod:`.leases`: one run per key: checkpoint folders, the lease on a key, orphaned runs.
- :mod:`.hydra_errors`: Hydra's composition errors as one ``error:`` line (every entry point).

A sweep (``python -m scaling.sweep``):

- :mod:`.sweep`: the driver: the Hydra callback, ``main``, signals and dead workers.
- :mod:`.sweep_grid`: the grid expanded, every point validated and keyed before training.
- :mod:`.sweep_jobs`: what each job runs, its progress line and ETA, the driver's hand-over.
- :mod:`.sweep_results`: the summary, the run table and the fit at the end.

And around them:

- :mod:`.collect`: an MLflow experiment -> the run table of :mod:`scaling.analysis.table`.
- :mod:`.verify`: ``scaling verify``: train a fit's predicted optimum and score it.
- :mod:`.process_corpus`: ``scaling process``: a corpus's ``data.process`` without training.
"""
