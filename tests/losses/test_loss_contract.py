"""The loss contract (`dmlbench check-loss`): a good plugin passes, each broken plugin fails its own rule,
and the ten built-in losses pass every check."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dmlbench.checks import ContractReport, check_loss, time_losses
from dmlbench.losses import LOSSES

PLUGINS = Path(__file__).parent / "plugins" / "contract_losses.py"
REPO = Path(__file__).parents[2]
DDP_CHECK = "2-process gloo = 1 process"
# Each broken plugin and the one check it must fail (the others it may pass or fail as a consequence).
BROKEN = {
    "NonFiniteLoss": "finite scalar + gradients",
    "OrderDependentLoss": "row order",
    "LabelValueLoss": "class ids",
    "PerRankLoss": DDP_CHECK,
}
ONLY_FAILURE = {"OrderDependentLoss", "LabelValueLoss", "PerRankLoss"}  # right everywhere else


def plugin(attr: str) -> str:
    return f"{PLUGINS}:{attr}"


@pytest.fixture(scope="module")
def reports() -> dict[str, ContractReport]:
    """One run of the contract over the plugins and two built-ins (one spawn of the gloo processes)."""
    names = [plugin("GoodLoss"), *(plugin(attr) for attr in BROKEN), "triplet", "proxyanchor"]
    return {report.name: report for report in check_loss(names)}


def test_a_loss_meeting_the_contract_passes_every_check(reports: dict[str, ContractReport]) -> None:
    good = reports[plugin("GoodLoss")]
    assert good.passed, good.failed
    assert {c.check for c in good.checks} >= {"finite scalar + gradients", "row order", "class ids", DDP_CHECK}
    assert len(good.checks) == 9


@pytest.mark.parametrize(("attr", "check"), BROKEN.items(), ids=list(BROKEN))
def test_each_broken_loss_fails_for_its_reason(attr: str, check: str, reports: dict[str, ContractReport]) -> None:
    report = reports[plugin(attr)]
    failed = {c.check for c in report.failed}
    assert check in failed, report.checks
    if attr in ONLY_FAILURE:
        assert failed == {check}, report.failed


@pytest.mark.parametrize("name", ["triplet", "proxyanchor"])
def test_built_in_losses_pass(name: str, reports: dict[str, ContractReport]) -> None:
    assert reports[name].passed, reports[name].failed


def test_edge_batches_accept_a_clear_error_or_a_value() -> None:
    """npairs refuses a batch without positives with LossInputError: a pass, named in the detail."""
    (report,) = check_loss(["npairs"], ddp=False)
    edges = {c.check: c for c in report.checks if c.check.startswith("edge:")}
    assert set(edges) == {"edge: one class", "edge: singleton classes", "edge: no positives"}
    assert all(c.passed for c in edges.values())
    assert any(c.detail.startswith(("clear error", "value")) for c in edges.values())


def test_timings_cover_each_size_and_mark_a_failing_loss() -> None:
    timings = time_losses(["triplet", plugin("NonFiniteLoss")], sizes=(32, 64), dim=8, repeats=1)
    assert [t.name for t in timings] == ["triplet", plugin("NonFiniteLoss")]
    assert all(isinstance(ms, float) and ms > 0 for ms in timings[0].ms.values())
    assert set(timings[1].ms) == {32, 64}  # an inf loss still runs: time is measured, the checks judge it


@pytest.mark.slow
def test_the_ten_built_in_losses_pass_the_contract() -> None:
    names = LOSSES.builtin_names()
    assert len(names) == 10
    failures = {r.name: r.failed for r in check_loss(names) if not r.passed}
    assert not failures


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dmlbench", "check-loss", *args], cwd=REPO, capture_output=True, text=True, timeout=600
    )


def test_cli_prints_the_table_and_exits_1_on_a_failure() -> None:
    failing = _cli(plugin("OrderDependentLoss"), "--no-ddp", "--no-timing", "-q")
    assert failing.returncode == 1, failing.stderr
    assert "row order" in failing.stdout and "FAIL" in failing.stdout
    passing = _cli(plugin("GoodLoss"), "--no-ddp", "--no-timing", "-q")
    assert passing.returncode == 0, passing.stderr
    assert "FAIL" not in passing.stdout and "class ids" in passing.stdout


def test_cli_unknown_name_is_one_error_line() -> None:
    result = _cli("tripet", "--no-timing")
    assert result.returncode == 2
    assert result.stderr.startswith("error: unknown loss 'tripet'") and "hint: did you mean 'triplet'" in result.stderr
    assert "Traceback" not in result.stderr
