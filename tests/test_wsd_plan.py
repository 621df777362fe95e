"""`scaling plan --schedule wsd`: an IsoFLOP ladder of cooldown branches, budgets sharing sizes."""

from __future__ import annotations

import pytest
import yaml

from scaling.analysis.design.options import PlanOptions
from scaling.analysis.design.plan import plan_ladder
from scaling.analysis.design.wsd import plan_wsd
from scaling.analysis.design.wsd_preset import validate_groups, wsd_preset, wsd_table
from scaling.cli import main
from scaling.errors import UserError
from tests.test_plan import _compose_preset

WSD = PlanOptions(target_flops=3e13, schedule="wsd")


@pytest.fixture(scope="module")
def branched():
    return plan_wsd(WSD)


def test_the_budgets_share_sizes_and_each_size_trains_once(branched) -> None:
    """22 points from 10 stable runs (seed 0): a size's budgets are its horizons."""
    groups = [g for g in branched.groups if not g.replicate]
    points = [r for b in branched.points.budgets for r in b.runs]
    assert len(groups) < len(points) / 2
    assert len({g.shape for g in groups}) == len(groups)  # one stable run per size
    for b in branched.points.budgets:  # every point is a branch of its size's group
        for r in b.runs:
            (g,) = [g for g in groups if g.shape == r.shape]
            assert b.flops in g.horizons
    # the seed replicate is the top budget's centre size's whole group again: the same
    # branches (batch, LR, tokens), so each of its budgets gets a seed pair for the noise
    (rep,) = [g for g in branched.groups if g.replicate]
    (base,) = [g for g in groups if g.shape == rep.shape]
    assert rep.shape == branched.points.budgets[0].centre.shape and rep.seed == 1
    assert [(r.budget, r.tokens, r.batch_size, r.lr) for r in rep.branches] == [
        (r.budget, r.tokens, r.batch_size, r.lr) for r in base.branches
    ]
    # consecutive budgets overlap in sizes: the lower one's are the upper one's moved down
    tops = [{r.shape for r in b.runs} for b in branched.points.budgets]
    assert all(len(a & b) >= 2 for a, b in zip(tops, tops[1:], strict=False))


def test_a_group_trains_its_stable_phase_once_and_a_cooldown_per_budget(branched) -> None:
    """Tokens trained, counted by hand from the branches' steps: the stable phase up to the
    longest branch's cooldown start (its last 20% decays), plus every branch's cooldown; the
    batch and LR are the group's, at its longest horizon."""
    g = max(branched.groups, key=lambda g: len(g.branches))
    assert len(g.branches) >= 3
    batch = {r.batch_size for r in g.branches}
    lrs = {r.lr for r in g.branches}
    assert len(batch) == 1 and len(lrs) == 1
    steps = [r.steps for r in g.branches]
    cooldowns = [max(1, round(0.2 * s)) for s in steps]
    stable = steps[-1] - cooldowns[-1]
    per_step = batch.pop() * WSD.seq_len
    assert g.tokens == (stable + sum(cooldowns)) * per_step
    assert g.flops == 6 * g.shape.params * g.tokens
    # against the separate runs of the same points: each would train its whole horizon
    assert g.tokens < sum(r.tokens for r in g.branches)
    # the group's LR is the separate ladder's at its top budget (the rule at that compute)
    top = max(g.horizons)
    separate = [r for r in plan_ladder(PlanOptions(target_flops=3e13)).runs if r.budget == top]
    assert separate and all(r.lr == pytest.approx(g.branches[0].lr) for r in separate)


def test_the_plan_prints_both_designs_and_counts_the_flops_trained(branched) -> None:
    text = wsd_table(branched)
    total = text.splitlines()[-1]
    assert total.startswith(f"total: {len(branched.groups)} runs ")
    assert f"{branched.total_flops:.3g} FLOPs" in total
    assert f"{sum(g.flops for g in branched.groups):.3g}" in total
    assert (
        f"separate runs for the same target (--schedule cosine): {len(branched.separate.runs)}"
        in text
    )
    assert branched.total_flops < branched.separate.total_flops


def test_the_preset_composes_into_groups_whose_branches_are_the_budgets(tmp_path, branched) -> None:
    """The written preset composed and expanded as the sweep does: one job per stable run, its
    train.horizons the budgets (in FLOPs, so each branch records train.flops = its budget and
    the IsoFLOP fit groups branches by budget), batch and LR as planned."""
    validate_groups(branched)
    text = wsd_preset(branched, "wl", "scaling plan --schedule wsd")
    doc = yaml.safe_load(text)
    assert doc["train"]["schedule"] == "wsd" and doc["train"]["tokens"] is None
    jobs, built = _compose_preset(tmp_path, "wl", text, lambda jobs: [0, len(jobs) - 1])
    assert len(jobs) == len(branched.groups)
    for i, cfg in built.items():
        g = branched.groups[i]
        assert [b.train.flops for b in cfg.branches()] == g.horizons
        assert [b.tokens for b in cfg.branches()] == [r.tokens for r in g.branches]
        assert cfg.train.batch_size == g.branches[0].batch_size and cfg.seed == g.seed
        assert cfg.spent_tokens() == g.tokens


def test_the_cli_writes_a_wsd_preset_and_refuses_a_target_too_small(
    tmp_path, monkeypatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["plan", "--target-flops", "3e13", "--schedule", "wsd", "--name", "wl"]) == 0
    out = capsys.readouterr().out
    assert "IsoFLOP ladder of WSD cooldown branches" in out and "total: " in out
    assert "horizons: ${sweep.point.horizons}" in (tmp_path / "sweeps" / "wl.yaml").read_text()
    with pytest.raises(UserError, match="target-flops"):
        plan_wsd(PlanOptions(target_flops=1e9, schedule="wsd"))
    with pytest.raises(SystemExit) as exit_:
        main(["plan", "--target-flops", "3e13", "--schedule", "linear"])
    assert exit_.value.code == 2 and "--schedule" in capsys.readouterr().err
