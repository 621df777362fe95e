"""``train.compile``: the training forward through ``torch.compile``, the same result as eager to
rounding (without dropout), and checkpoints that a compiled and an eager run both resume from."""

from __future__ import annotations

import pytest
import torch

from scaling.training import run, trainer
from scaling.training.prepare import prepare
from scaling.training.run import train
from tests.test_resume import KILL_AT, Killed, _die_at

# A compiled run's final loss against the eager run's (measured: 3e-8 relative, README).
TOLERANCE = 1e-4


def _compiled_frames() -> int:
    return int(torch._dynamo.utils.counters["frames"]["ok"])


@pytest.mark.slow
def test_a_compiled_run_compiles_and_ends_at_the_eager_runs_loss(compose, text_data) -> None:
    eager = train(prepare(compose(*text_data, "tracking.experiment=eager")))
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    compiled = train(prepare(compose(*text_data, "train.compile=true", "tracking.experiment=c")))
    assert _compiled_frames() > 0  # torch.compile traced the model
    assert compiled.status == eager.status == "FINISHED"
    assert compiled.run_key == eager.run_key  # no dropout: the same run (README)
    assert compiled.val_loss == pytest.approx(eager.val_loss, abs=TOLERANCE)


@pytest.mark.slow
@pytest.mark.parametrize(
    "killed_compiled", [True, False], ids=["compiled-then-eager", "eager-then-compiled"]
)
def test_compiled_and_eager_runs_resume_from_each_others_checkpoints(
    compose, text_data, monkeypatch, killed_compiled: bool
) -> None:
    """Killed after its checkpoint at step 20, a run resumes with the other setting of
    ``train.compile`` (the same key without dropout) and ends at the uninterrupted eager loss."""
    every = ["train.checkpoint_every=10", "train.eval_points=8"]
    reference = train(prepare(compose(*text_data, *every, "tracking.experiment=ref")))

    def prep(compiled: bool):  # type: ignore[no-untyped-def]
        flag = f"train.compile={str(compiled).lower()}"
        return prepare(compose(*text_data, *every, flag, "tracking.experiment=killed"))

    first = prep(killed_compiled)
    ckpt = run.checkpoint_dir(first.cfg) / "last.ckpt"
    _die_at(monkeypatch, KILL_AT)
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    with pytest.raises(Killed):
        train(first)
    monkeypatch.undo()
    assert (_compiled_frames() > 0) == killed_compiled
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert saved["global_step"] == 20 and saved[trainer.RUN_ID_KEY]
    assert "model.wte.weight" in saved["state_dict"]  # the eager model's names, compiled or not
    assert not any("_orig_mod" in k for k in saved["state_dict"])

    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    resumed = train(prep(not killed_compiled))
    assert (_compiled_frames() > 0) == (not killed_compiled)  # the resumed run compiled
    assert resumed.status == "FINISHED" and resumed.resumed_from_step == 20
    assert resumed.val_loss == pytest.approx(reference.val_loss, abs=TOLERANCE)
