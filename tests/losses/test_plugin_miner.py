"""Miners resolve through the same scheme table: a `pml:` loss takes a PML miner or one of your own."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dmlbench.errors import ConfigError, UnknownNameError
from dmlbench.losses import LOSSES

MINER = '''import torch
from torch import nn


class HardestNegativeOnly(nn.Module):
    """Each anchor's positives, and only its single hardest negative (PML's pair-indices tuple)."""

    def forward(self, embeddings, labels):
        same = labels[:, None] == labels[None, :]
        eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
        a1, p = torch.nonzero(same & ~eye, as_tuple=True)
        distances = torch.cdist(embeddings, embeddings).masked_fill(same, float("inf"))
        a2 = torch.arange(len(labels), device=labels.device)
        return a1, p, a2, distances.argmin(dim=1)
'''


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(12, 8, generator=generator), torch.arange(4).repeat(3)


def test_a_file_miner_changes_which_pairs_the_loss_sees(tmp_path: Path) -> None:
    (tmp_path / "miners.py").write_text(MINER)
    embeddings, labels = _batch()
    plain = LOSSES.build("pml:ContrastiveLoss", {})(embeddings, labels)
    mined_loss = LOSSES.build("pml:ContrastiveLoss", {"miner": f"{tmp_path / 'miners.py'}:HardestNegativeOnly"})
    mined = mined_loss(embeddings, labels)
    assert type(mined_loss.miner).__name__ == "HardestNegativeOnly"
    assert torch.isfinite(mined) and not torch.isclose(mined, plain)


def test_pml_scheme_miners_and_bare_names_agree() -> None:
    embeddings, labels = _batch()
    values = [
        LOSSES.build("pml:ContrastiveLoss", {"miner": name, "miner_kwargs": {"pos_margin": 0.2, "neg_margin": 0.8}})(
            embeddings, labels
        )
        for name in ("PairMarginMiner", "pml:PairMarginMiner")
    ]
    assert torch.equal(values[0], values[1])


def test_miner_typos_and_non_modules_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(UnknownNameError) as info:
        LOSSES.build("pml:ContrastiveLoss", {"miner": "pml:PairMarginMinr"})
    assert "'PairMarginMiner'" in (info.value.hint or "")
    (tmp_path / "bad.py").write_text("def miner():\n    return 3\n")
    with pytest.raises(ConfigError) as config:
        LOSSES.build("pml:ContrastiveLoss", {"miner": f"{tmp_path / 'bad.py'}:miner"})
    assert "not a Module" in config.value.message
