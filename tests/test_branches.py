"""WSD cooldown branches (``train.horizons``): one stable run, one branch per horizon.

What a user relies on: each branch is the plain ``wsd`` run of its horizon (same key, same final
loss as a float, dropout on), the group trains fewer steps than the separate runs, the MLflow
record nests the branches under the stable run, a table of results leaves the stable run out,
and a group killed mid-cooldown finishes exactly its missing branches when rerun.
"""

from __future__ import annotations

import pytest

from scaling.analysis.table import compute_spent, read_run_table, write_table
from scaling.config import build_run_config
from scaling.errors import ConfigError
from scaling.identity import run_key
from scaling.schedule import lr_factor
from scaling.training import tracking
from scaling.training.branches import PARENT_TAG, member_keys, point_path, points_folder
from scaling.training.collect import collect_runs
from scaling.training.module import LMModule
from scaling.training.prepare import prepare
from scaling.training.run import checkpoint_dir, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# TINY: 8 x 32 = 256 tokens a step. Horizons of 39, 78 and 156 steps; warmup 5% of the longest
# (8 steps); cooldowns (20%) start at steps 31, 62 and 125.
GROUP = [
    "model.dropout=0.1",
    "train.schedule=wsd",
    "train.horizons=[10000,20000,40000]",
    "train.checkpoint_every=10",
    "train.eval_points=6",
]


class Killed(BaseException):
    """What SIGKILL does to a process, in-process: nothing after it runs."""


def _runs(cfg) -> list:  # type: ignore[no-untyped-def]
    client = tracking.mlflow_client(cfg.tracking.uri)
    exp = client.get_experiment_by_name(cfg.tracking.experiment)
    return client.search_runs([exp.experiment_id]) if exp else []


def test_the_group_plan_shares_the_stable_phase(compose) -> None:  # type: ignore[no-untyped-def]
    cfg = build_run_config(compose(*GROUP))
    assert [b.steps for b in cfg.branches()] == [39, 78, 156]
    # warmup: 5% of the longest horizon (156 steps), under the cap of half the shortest
    # branch's 31 steps before its cooldown
    assert cfg.branch_warmup() == 8 and cfg.branch_starts() == [31, 62, 125]
    stable = cfg.stable()
    assert stable.train.schedule == "constant" and stable.steps == 125
    # the stable schedule is every branch's up to that branch's cooldown start
    for branch, start in zip(cfg.branches(), cfg.branch_starts()):
        for step in range(start):
            assert lr_factor(step, branch.steps, branch.train) == lr_factor(
                step, stable.steps, stable.train
            )
        assert lr_factor(start, branch.steps, branch.train) < 1.0
    # 125 stable steps + cooldowns of 8, 16 and 31 steps, against 39 + 78 + 156 separately
    assert cfg.spent_tokens() == (125 + 8 + 16 + 31) * 256
    assert len(set(member_keys(cfg))) == 4


def test_the_shared_warmup_leaves_the_shortest_branch_a_stable_phase(compose) -> None:  # type: ignore[no-untyped-def]
    # horizons of 7 and 156 steps: 5% of the longest is 8 steps, but the shortest branch cools
    # down from step 6, so the shared warmup is capped at half of that; auto is capped the same
    base = ["train.schedule=wsd", "train.horizons=[2000,40000]"]
    cfg = build_run_config(compose(*base))
    assert cfg.warmup_cap == 3 and cfg.branch_warmup() == 3
    auto = build_run_config(compose(*base, "model.n_layer=2", "train.warmup_steps=auto"))
    assert auto.train.warmup_steps == 3
    assert lr_factor(3, auto.branches()[0].steps, auto.branches()[0].train) == 1.0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["train.horizons=[10000,20000]"], "needs train.schedule=wsd"),
        (["train.schedule=wsd", "train.horizons=[10000,10000]"], "lists a horizon twice"),
        (["train.schedule=wsd", "train.horizons=[10000,-5]"], "must list positive tokens"),
        (["train.schedule=wsd", "train.horizons=[]"], "must list positive tokens"),
        (
            ["train.schedule=wsd", "train.horizons=[10000,20000]", "train.warmup_steps=40"],
            "does not end before the shortest horizon's cooldown",
        ),
        (["train.warmup_steps=-1"], "train.warmup_steps=-1 must be a whole number"),
    ],
)
def test_a_bad_group_is_one_line_before_anything_runs(compose, overrides, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=message) as err:
        cfg = build_run_config(compose(*overrides))
        cfg.validate_horizon()
    assert "\n" not in str(err.value)


@pytest.mark.slow
def test_branches_are_the_plain_wsd_runs_bit_for_bit_and_cost_less(compose, tmp_path) -> None:  # type: ignore[no-untyped-def]
    prep = prepare(compose(*GROUP, "tracking.experiment=group"))
    group = train(prep)
    assert group.status == "FINISHED"

    runs = _runs(prep.cfg)
    by_role = {r.data.params["branch.role"]: r for r in runs if r.data.params.get("branch.role")}
    assert len(runs) == 4 and {r.info.status for r in runs} == {"FINISHED"}
    stable = by_role["stable"]
    branches = [r for r in runs if r.data.params["branch.role"] == "branch"]
    assert {r.data.tags[PARENT_TAG] for r in branches} == {stable.info.run_id}
    assert sorted(int(r.data.params["branch.start_step"]) for r in branches) == [31, 62, 125]
    assert {r.data.tags[tracking.KEY_TAG] for r in runs} == set(member_keys(prep.cfg))
    assert not points_folder(prep.cfg.stable()).exists()  # removed once every branch finished

    # the middle branch against the plain wsd run of 20,000 tokens, warmup 8 steps, elsewhere
    plain = prepare(
        compose(
            "model.dropout=0.1",
            "train.schedule=wsd",
            "train.tokens=20000",
            "train.warmup_steps=8",
            "train.checkpoint_every=10",
            f"results_dir={tmp_path / 'plain'}",
            f"tracking.uri=sqlite:///{tmp_path / 'plain.db'}",
        )
    )
    middle = next(r for r in branches if r.data.params["branch.start_step"] == "62")
    assert plain.key == middle.data.tags[tracking.KEY_TAG]
    reference = train(plain)
    assert reference.val_loss == middle.data.metrics["val/loss"]  # the same float

    table = collect_runs(prep.cfg.tracking.uri, "group")
    assert sorted(table["tokens"]) == [39 * 256, 78 * 256, 156 * 256]  # no stable row
    curves = collect_runs(prep.cfg.tracking.uri, "group", curves=True)
    assert set(curves["branch_role"]) == {"stable", "branch"}
    path = write_table(table, tmp_path / "group.csv")
    represented, spent = compute_spent(read_run_table(path))
    assert represented == pytest.approx(6 * table["params"].iloc[0] * (39 + 78 + 156) * 256)
    assert spent / represented == pytest.approx((125 + 8 + 16 + 31) / (39 + 78 + 156))

    again = train(prep)  # a rerun trains nothing
    assert again.status == "SKIPPED" and len(_runs(prep.cfg)) == 4


@pytest.mark.slow
def test_a_group_killed_mid_cooldown_finishes_exactly_the_missing_branches(
    compose, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    prep = prepare(compose(*GROUP, "tracking.experiment=killed"))
    longest = prep.cfg.branches()[-1]
    original, finish = LMModule.step_end, tracking.RunRecorder.finish
    dead: list[bool] = []

    def step_end(self: LMModule) -> None:  # dies at step 140 of the longest branch
        original(self)
        if self.total_steps == longest.steps and self.trainer.global_step == 140:
            dead.append(True)
            raise Killed

    def no_record_once_dead(self, status="FINISHED", reason=None) -> None:  # type: ignore[no-untyped-def]
        if dead:  # SIGKILL: the run stays RUNNING, buffered metrics are lost
            self._metrics.clear()
        else:
            finish(self, status, reason)

    monkeypatch.setattr(LMModule, "step_end", step_end)
    monkeypatch.setattr(tracking.RunRecorder, "finish", no_record_once_dead)
    with pytest.raises(Killed):
        train(prep)
    monkeypatch.undo()
    before = {r.info.run_id: r.info.status for r in _runs(prep.cfg)}
    assert sorted(before.values()) == ["FINISHED"] * 3 + ["RUNNING"]
    assert (checkpoint_dir(longest) / "last.ckpt").exists()  # its own, at step 130
    assert point_path(points_folder(prep.cfg.stable()), 125).exists()

    result = train(prep)
    assert result.status == "FINISHED" and result.resumed_from_step == 130
    after = _runs(prep.cfg)
    assert {r.info.run_id for r in after} == set(before)  # no new run: the orphan taken over
    assert {r.info.status for r in after} == {"FINISHED"}
    finished_at = {r.info.run_id: r.info.end_time for r in after}
    (resumed,) = [i for i, s in before.items() if s == "RUNNING"]
    assert all(finished_at[resumed] >= t for t in finished_at.values())
    assert result.run_key == prep.key and result.tokens == longest.tokens
    assert run_key(longest) in {r.data.tags[tracking.KEY_TAG] for r in after}
