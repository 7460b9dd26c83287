"""Contracts a user's code must meet before it trains: `check_loss` (what `dmlbench check-loss` runs)."""

from __future__ import annotations

from dmlbench.checks.loss_contract import CheckResult, ContractReport, check_loss, time_losses

__all__ = ["CheckResult", "ContractReport", "check_loss", "time_losses"]
