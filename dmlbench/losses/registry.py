"""The LOSSES registry, torch-free: listing loss names (for `--help`, docs tables, tests) imports no torch.

Adding a built-in loss is its module plus one line here. Every other name form goes through the scheme
table of `dmlbench.registry`: `pml:<Class>` (any pytorch-metric-learning loss), `path/to/file.py:Attr`,
`package.module:Attr`, and names installed packages add under the `dmlbench.losses` entry-point group.
"""

from __future__ import annotations

import functools

from dmlbench.registry import Registry, Scheme

LOSSES: Registry[object] = Registry(
    "loss",
    base="dmlbench.losses.base:MetricLoss",
    schemes=[Scheme("pml", "dmlbench.losses.pml:pml_loss_class", "pml:<ClassName> (any pytorch-metric-learning loss)")],
    entry_point_group="dmlbench.losses",
    builds="torch.nn:Module",
    plugins=True,
)
LOSSES.add("clustering", "dmlbench.losses.clustering:ClusteringLoss")
LOSSES.add("triplet", "dmlbench.losses.triplet:TripletLoss")
LOSSES.add("lifted", "dmlbench.losses.lifted:LiftedStructLoss")
LOSSES.add("npairs", "dmlbench.losses.npairs:NPairsLoss")
# pytorch-metric-learning baselines (dmlbench/losses/pml.py).
LOSSES.add("contrastive", "dmlbench.losses.pml:ContrastiveLoss")
LOSSES.add("multisimilarity", "dmlbench.losses.pml:MultiSimilarityLoss")
LOSSES.add("proxyanchor", "dmlbench.losses.pml:ProxyAnchorLoss")
LOSSES.add("normsoftmax", "dmlbench.losses.pml:NormSoftmaxLoss")
LOSSES.add("arcface", "dmlbench.losses.pml:ArcFaceLoss")
LOSSES.add("supcon", "dmlbench.losses.pml:SupConLoss")


# Miners pick the pairs or triplets a `pml:` loss sees (`miner = "..."` in its [loss] table): a bare name is a
# pytorch-metric-learning miner class; `pml:<Miner>`, a file or module plugin and the `dmlbench.miners`
# entry points resolve here. A miner is a module called as miner(embeddings, labels) -> PML indices tuple.
MINERS: Registry[object] = Registry(
    "miner",
    schemes=[Scheme("pml", "dmlbench.losses.pml:pml_miner_class", "pml:<ClassName> (a pytorch-metric-learning miner)")],
    entry_point_group="dmlbench.miners",
    builds="torch.nn:Module",
    plugins=True,
)


@functools.cache  # every command's --help asks; installed plugins are read from metadata once
def loss_help() -> str:
    """The `--loss` help text of every command, generated from the registry."""
    return f"{LOSSES.describe_names()}."
