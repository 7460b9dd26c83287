"""The base class of every metric-learning loss: input validation and the empty-batch rule."""

from __future__ import annotations

import math
from typing import ClassVar, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from dmlbench.errors import ConfigError, UsageError


class LossInputError(UsageError, ValueError):
    """Embeddings or labels a loss cannot use (wrong shape or dtype, NaN/inf). Also a `ValueError`."""


class LossConfigError(ConfigError, ValueError):
    """An invalid loss hyperparameter. Also a `ValueError`, so `Registry.build` reports it as a ConfigError."""


_HALF_DTYPES = (torch.float16, torch.bfloat16)


def validate_inputs(embeddings: object, labels: object) -> tuple[Tensor, Tensor]:
    """Check `(embeddings [N, D] float, labels [N] int)` and return them ready for a loss.

    Returns the embeddings (float16/bfloat16 upcast to float32, still attached to the graph) and the
    labels re-indexed to 0..K-1 in increasing label-value order, as int64 on the embeddings' device.
    Raises LossInputError (a ValueError) with a one-line message otherwise.
    """
    if not isinstance(embeddings, Tensor) or not isinstance(labels, Tensor):
        raise LossInputError(
            "embeddings and labels must be torch tensors",
            hint="call loss(embeddings[N, D], labels[N]) with tensors",
        )
    if embeddings.ndim != 2:
        raise LossInputError(
            f"embeddings must have shape [N, D], got {tuple(embeddings.shape)}",
            hint="flatten each sample's embedding to one row",
        )
    if labels.ndim != 1:
        raise LossInputError(
            f"labels must have shape [N], got {tuple(labels.shape)}",
            hint="pass one integer class id per embedding, e.g. labels.view(-1)",
        )
    if labels.shape[0] != embeddings.shape[0]:
        raise LossInputError(
            f"{embeddings.shape[0]} embeddings but {labels.shape[0]} labels",
            hint="embeddings and labels must have the same length",
        )
    if not embeddings.is_floating_point():
        raise LossInputError(
            f"embeddings must be a floating-point tensor, got {embeddings.dtype}",
            hint="convert with embeddings.float()",
        )
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise LossInputError(
            f"labels must be an integer tensor, got {labels.dtype}",
            hint="convert class ids with labels.long()",
        )
    if embeddings.shape[0] > 0 and embeddings.shape[1] == 0:
        raise LossInputError("embeddings have dimension 0", hint="the embedding size must be at least 1")
    if not bool(torch.isfinite(embeddings).all()):
        raise LossInputError(
            "embeddings contain NaN or inf",
            hint="training diverged or the input is corrupt; lower the learning rate or check the data",
        )
    if embeddings.dtype in _HALF_DTYPES:
        embeddings = embeddings.float()
    labels = labels.to(embeddings.device)
    _, contiguous = torch.unique(labels, sorted=True, return_inverse=True)
    return embeddings, contiguous.to(torch.int64)


class TrainingPosition(Protocol):
    """Where training stands when a loss's `on_step` is called (the trainer passes its checkpointed Position)."""

    @property
    def step(self) -> int:
        """Optimizer steps done before the one about to run."""
        ...

    @property
    def epoch(self) -> int:
        """Epochs finished."""
        ...


@runtime_checkable
class StepScheduled(Protocol):
    """A loss whose settings follow the training position (the clustering loss's γ decay).

    The trainer calls `on_step(position)` before every step, resumed runs included; the settings must follow
    from the position alone (never from how many calls came before), so a resumed run continues exactly.
    """

    def on_step(self, position: TrainingPosition) -> None: ...


class MetricLoss(nn.Module):
    """A loss over a batch: `loss(embeddings[N, D], labels[N]) -> scalar tensor`.

    Subclasses implement `compute` on validated inputs (labels already 0..K-1, N >= 1). An empty batch
    gives a zero that stays attached to the graph, so `backward()` works on it.
    """

    expects_normalized: ClassVar[bool] = True
    """Whether the reference convention feeds this loss L2-normalised embeddings (the trainer reads it)."""

    min_samples_per_class: ClassVar[int] = 2
    """Images of one class a batch needs for this loss to have positives (proxy losses need only 1)."""

    row_order: ClassVar[str] = "any"
    """"any": the loss is invariant to the order of the batch rows. "within_class": it depends on the order
    of each class's rows (n-pairs forms its pairs in batch order) and only on that; `check-loss` tests which."""

    param_lr_multiplier: float = 1.0
    """The loss's own parameters (proxies, class weights) train at optim.lr x this; unused without parameters."""

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """Validate the batch and return the scalar loss."""
        embeddings, labels = validate_inputs(embeddings, labels)
        if embeddings.shape[0] == 0:
            return attached_zero(embeddings)
        return self.compute(embeddings, labels)

    def compute(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """The loss of a validated, non-empty batch (labels are int64 class indices 0..K-1)."""
        raise NotImplementedError


def attached_zero(embeddings: Tensor) -> Tensor:
    """A scalar 0 that depends on `embeddings`, so backward() yields an all-zero gradient."""
    return embeddings.sum() * 0.0


def finite_margin(margin: object) -> float:
    """`margin` as a float, or LossConfigError unless it is a finite int/float (bool excluded)."""
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not math.isfinite(margin):
        raise LossConfigError(f"margin must be a finite number, got {margin!r}", hint="e.g. margin = 1.0")
    return float(margin)


def class_masks(labels: Tensor) -> tuple[Tensor, Tensor]:
    """(same, positive) [N, N] bool masks: same class, and same class off the diagonal (i != j)."""
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    n = labels.shape[0]
    return same, same & ~torch.eye(n, dtype=torch.bool, device=labels.device)
