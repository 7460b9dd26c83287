"""Losses backed by pytorch-metric-learning (PML): six named baselines and `pml:<ClassName>` for any other.

PML's implementations are used as they are; what is dmlbench's here is the glue: input validation (the
shared `MetricLoss` rules), documented defaults, search spaces for `dmlbench tune`, the mapping from
dataset labels to the rows of a loss's per-class parameters, and `pml_loss_class`, the resolver of the
loss registry's `pml:` scheme (losses/registry.py).

Per-class parameters (proxies, class weights) are indexed by class. Dataset labels are arbitrary
integers (CUB's train classes are 1..100, held-out validation classes leave gaps), so every
class-indexed loss keeps a `class_table` buffer: row r holds the dataset label of parameter row r. A
label gets the next free row when it first appears (in increasing label order within a batch); rows
are initialised i.i.d., so which row a class gets does not matter, only that it keeps it. The table is in
`state_dict()`, so a checkpoint restores the mapping with the proxies, and it is the same on every
DDP rank because every rank computes the loss on the same all-gathered global batch.
"""

from __future__ import annotations

import contextlib
import inspect
import math
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from dmlbench.errors import ConfigError, UnknownNameError
from dmlbench.losses.base import (
    LossConfigError,
    LossInputError,
    MetricLoss,
    attached_zero,
    validate_inputs,
)
from dmlbench.registry import did_you_mean, parse_plugin_name

PREFIX = "pml:"
PROXY_LR_MULTIPLIER = 100.0  # Kim et al. 2020 (proxy anchor): proxies train at 100x the network's lr

_EMPTY_ROW = torch.iinfo(torch.int64).min  # class_table marker of a row no label owns yet


def _number(name: str, value: object, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise LossConfigError(f"{name} must be a finite number, got {value!r}", hint=f"set loss.{name} to a number")
    if positive and value <= 0:
        raise LossConfigError(f"{name} must be > 0, got {value}", hint=f"set loss.{name} to a positive number")
    return float(value)


def _count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise LossConfigError(f"{name} must be a positive integer, got {value!r}", hint="the trainer passes it")
    return value


class PMLLoss(MetricLoss):
    """A `MetricLoss` around one PML loss module (`self.loss`) and an optional PML miner (`self.miner`).

    The PML modules are registered submodules, so `parameters()` / `state_dict()` hold their learnable
    tensors (proxies, class weights) next to `class_table`. Embeddings pass through PML's distance, which
    L2-normalises them for every loss wrapped here; the embedder normalises too (`expects_normalized`),
    so evaluation sees the space the loss trained.
    """

    expects_normalized = True

    def __init__(self) -> None:
        super().__init__()
        self.loss: nn.Module = nn.Identity()
        self.miner: nn.Module | None = None
        self.class_indexed = False
        self.param_lr_multiplier = 1.0

    def _attach(
        self,
        loss: nn.Module,
        miner: nn.Module | None = None,
        *,
        num_classes: int | None = None,
        lr_multiplier: float = 1.0,
    ) -> None:
        self.loss, self.miner = loss, miner
        self.param_lr_multiplier = _number("lr_multiplier", lr_multiplier, positive=True)
        self.class_indexed = num_classes is not None
        if num_classes is None:
            return
        self.register_buffer("class_table", torch.full((num_classes,), _EMPTY_ROW, dtype=torch.int64))

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """Validate the batch, map labels (class rows or 0..K-1), mine if a miner is set, return PML's loss."""
        embeddings, contiguous = validate_inputs(embeddings, labels)
        if embeddings.shape[0] == 0:
            return attached_zero(embeddings)
        targets = self._class_rows(labels.to(embeddings.device).long()) if self.class_indexed else contiguous
        indices = self.miner(embeddings, targets) if self.miner is not None else None
        value: Tensor = self.loss(embeddings, targets, indices)
        if not isinstance(value, Tensor):  # a reducer with nothing to reduce can return a plain 0
            return attached_zero(embeddings)
        # PML returns an unattached zero when no pair/triplet survives; backward() must still work.
        return value if value.requires_grad or not embeddings.requires_grad else value + attached_zero(embeddings)

    @torch.no_grad()
    def _class_rows(self, labels: Tensor) -> Tensor:
        table = self.get_buffer("class_table")
        present = torch.unique(labels)  # sorted: new labels take free rows in increasing label order
        known = table.unsqueeze(0) == present.unsqueeze(1)  # [classes in batch, rows]
        new = present[~known.any(dim=1)]
        if new.numel():
            free = torch.nonzero(table == _EMPTY_ROW).squeeze(1)
            if new.numel() > free.numel():
                raise LossInputError(
                    f"the batch has {int(new.numel())} new classes but only {int(free.numel())} of the loss's "
                    f"{table.numel()} class rows are free",
                    hint="build the loss with num_classes = the number of training classes",
                )
            table[free[: new.numel()]] = new
        rows = (labels.unsqueeze(1) == table.unsqueeze(0)).int().argmax(dim=1)
        return rows

    def extra_repr(self) -> str:
        return f"lr_multiplier={self.param_lr_multiplier}" if any(True for _ in self.parameters()) else ""


def _pml() -> Any:
    try:
        import pytorch_metric_learning
        import pytorch_metric_learning.distances
        import pytorch_metric_learning.losses
        import pytorch_metric_learning.miners
        import pytorch_metric_learning.reducers
        import pytorch_metric_learning.regularizers
    except ImportError as err:  # pragma: no cover - it is a declared dependency
        from dmlbench.errors import EnvironmentFailure

        raise EnvironmentFailure(
            "pytorch-metric-learning is not installed", hint="pip install pytorch-metric-learning"
        ) from err
    return pytorch_metric_learning


# -- the six named baselines ---------------------------------------------------------------------------


class ContrastiveLoss(PMLLoss):
    """Contrastive loss (Hadsell et al., CVPR 2006) via PML's `ContrastiveLoss`, Euclidean on the unit sphere.

    Positive pairs are pulled inside `pos_margin`, negative pairs pushed beyond `neg_margin`, each hinge
    averaged over its non-zero pairs. Defaults: Hadsell et al.'s positive term (pos_margin 0: positives
    pulled together) and neg_margin 1, PML's defaults; chosen on glyphs validation classes over the
    Reality Check's CUB200 values (-0.20, 0.3841): R@1 0.959 vs 0.777 (docs/losses/contrastive.md).
    """

    def __init__(self, pos_margin: float = 0.0, neg_margin: float = 1.0) -> None:
        super().__init__()
        self.pos_margin = _number("pos_margin", pos_margin)
        self.neg_margin = _number("neg_margin", neg_margin)
        self._attach(_pml().losses.ContrastiveLoss(pos_margin=self.pos_margin, neg_margin=self.neg_margin))

    def extra_repr(self) -> str:
        return f"pos_margin={self.pos_margin}, neg_margin={self.neg_margin}"


class MultiSimilarityLoss(PMLLoss):
    """Multi-similarity loss with its miner (Wang et al., CVPR 2019) via PML, on cosine similarity.

    PML's `MultiSimilarityMiner(epsilon)` keeps the informative pairs; `MultiSimilarityLoss(alpha, beta,
    base)` weighs them. Defaults: the Reality Check's best CUB200 values for "Multi Similarity + Miner":
    alpha 17.97, beta 75.66, base 0.77, epsilon 0.39.
    """

    def __init__(self, alpha: float = 17.97, beta: float = 75.66, base: float = 0.77, epsilon: float = 0.39) -> None:
        super().__init__()
        self.alpha = _number("alpha", alpha, positive=True)
        self.beta = _number("beta", beta, positive=True)
        self.base = _number("base", base)
        self.epsilon = _number("epsilon", epsilon)
        pml = _pml()
        self._attach(
            pml.losses.MultiSimilarityLoss(alpha=self.alpha, beta=self.beta, base=self.base),
            pml.miners.MultiSimilarityMiner(epsilon=self.epsilon),
        )

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta}, base={self.base}, epsilon={self.epsilon}"


class _ProxyLoss(PMLLoss):
    """A loss with one learnable vector per training class (proxies, class weights), trained at
    `lr_multiplier` x optim.lr: needs `num_classes` and `embedding_dim`."""

    min_samples_per_class = 1

    def _attach_proxies(
        self, factory: Any, num_classes: object, embedding_dim: object, lr_multiplier: float, **params: float
    ) -> None:
        """Build PML's `factory` with one vector per class and attach it, its class table sized to match."""
        classes = _count("num_classes", num_classes)
        dim = _count("embedding_dim", embedding_dim)
        module: nn.Module = factory(num_classes=classes, embedding_size=dim, **params)
        self._attach(module, num_classes=classes, lr_multiplier=lr_multiplier)


class ProxyAnchorLoss(_ProxyLoss):
    """Proxy-anchor loss (Kim et al., CVPR 2020) via PML's `ProxyAnchorLoss`, on cosine similarity.

    Defaults from the paper: margin δ = 0.1, α = 32, proxies at 100x the learning rate
    (`lr_multiplier`), initialised by PML (Kaiming normal, as the authors' code).
    """

    def __init__(
        self,
        margin: float = 0.1,
        alpha: float = 32.0,
        lr_multiplier: float = PROXY_LR_MULTIPLIER,
        *,
        num_classes: int,
        embedding_dim: int,
    ) -> None:
        super().__init__()
        self.margin = _number("margin", margin)
        self.alpha = _number("alpha", alpha, positive=True)
        proxy_anchor = _pml().losses.ProxyAnchorLoss
        self._attach_proxies(
            proxy_anchor, num_classes, embedding_dim, lr_multiplier, margin=self.margin, alpha=self.alpha
        )


class NormSoftmaxLoss(_ProxyLoss):
    """Normalised softmax (Zhai & Wu, BMVC 2019) via PML's `NormalizedSoftmaxLoss`: cosine logits / temperature.

    Default temperature: the Reality Check's best CUB200 value, 0.1087. The class weights train at
    `lr_multiplier` x optim.lr (100, as for proxy anchor: our choice, not a published value).
    """

    def __init__(
        self,
        temperature: float = 0.1087,
        lr_multiplier: float = PROXY_LR_MULTIPLIER,
        *,
        num_classes: int,
        embedding_dim: int,
    ) -> None:
        super().__init__()
        self.temperature = _number("temperature", temperature, positive=True)
        self._attach_proxies(
            _pml().losses.NormalizedSoftmaxLoss, num_classes, embedding_dim, lr_multiplier, temperature=self.temperature
        )


class ArcFaceLoss(_ProxyLoss):
    """ArcFace (Deng et al., CVPR 2019) via PML's `ArcFaceLoss`: additive angular margin on cosine logits.

    Defaults: the Reality Check's best CUB200 values, margin 23.22 degrees and scale 100. Class weights
    train at `lr_multiplier` x optim.lr (100: our choice, as for proxy anchor).
    """

    def __init__(
        self,
        margin: float = 23.22,
        scale: float = 100.0,
        lr_multiplier: float = PROXY_LR_MULTIPLIER,
        *,
        num_classes: int,
        embedding_dim: int,
    ) -> None:
        super().__init__()
        self.margin = _number("margin", margin)
        self.scale = _number("scale", scale, positive=True)
        self._attach_proxies(
            _pml().losses.ArcFaceLoss, num_classes, embedding_dim, lr_multiplier, margin=self.margin, scale=self.scale
        )


class SupConLoss(PMLLoss):
    """Supervised contrastive loss (Khosla et al., NeurIPS 2020) via PML's `SupConLoss`, on cosine similarity.

    Default temperature 0.1, the paper's value.
    """

    def __init__(self, temperature: float = 0.1) -> None:
        super().__init__()
        self.temperature = _number("temperature", temperature, positive=True)
        self._attach(_pml().losses.SupConLoss(temperature=self.temperature))

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"


# -- pml:<ClassName> -------------------------------------------------------------------------------------

# What dmlbench passes to a PML constructor's required arguments of these names.
_CONTEXT_ARGS = {"num_classes": "num_classes", "embedding_size": "embedding_dim"}
# Keyword arguments that take a PML object; a config names it: "LpDistance" or {name = "LpDistance", p = 1}.
_OBJECT_ARGS = {
    "distance": "distances",
    "reducer": "reducers",
    "embedding_regularizer": "regularizers",
    "weight_regularizer": "regularizers",
}
_NOT_FROM_CONFIG = {"weight_init_func", "mat_based_loss", "loss", "losses", "miner", "miners"}
_BASE_CLASSES = {"BaseMetricLossFunction", "GenericPairLoss", "BaseLossWrapper", "WeightRegularizerMixin"}
_UNSUPPORTED = {
    "SelfSupervisedLoss": "compares two augmented views (ref_emb), not labelled batches",
    "VICRegLoss": "compares two augmented views (ref_emb) and takes no labels",
    "CrossBatchMemory": "wraps another loss object, which a config cannot give",
    "MultipleLosses": "combines other loss objects, which a config cannot give",
}


def pml_class_names(kind: str = "losses") -> list[str]:
    """Public class names in `pytorch_metric_learning.<kind>` (losses, miners, distances, ...).

    For losses: only those `pml:<ClassName>` can use (labelled-batch losses, no base classes or wrappers).
    """
    module = getattr(_pml(), kind)
    names = [n for n in dir(module) if n[:1].isupper() and isinstance(getattr(module, n), type)]
    if kind == "losses":
        base = module.BaseMetricLossFunction
        names = [
            n for n in names if issubclass(getattr(module, n), base) and n not in _BASE_CLASSES | set(_UNSUPPORTED)
        ]
    elif kind == "miners":
        names = [n for n in names if n != "BaseMiner"]
    return sorted(names)


def _pml_class(kind: str, name: object, what: str) -> Any:
    if not isinstance(name, str):
        raise ConfigError(f"{what} must be a class name, got {name!r}", hint=f"e.g. {pml_class_names(kind)[0]!r}")
    known = pml_class_names(kind)
    module = getattr(_pml(), kind)
    if name not in known and not (kind == "losses" and isinstance(getattr(module, name, None), type)):
        raise UnknownNameError(
            f"pytorch-metric-learning has no {what} {name!r}",
            hint=f"{did_you_mean(name, known)}known: {', '.join(known)}",
        )
    return getattr(getattr(_pml(), kind), name)


def _init_parameters(cls: type) -> dict[str, inspect.Parameter]:
    """Named constructor parameters over the MRO (PML passes **kwargs up), the most derived one first."""
    found: dict[str, inspect.Parameter] = {}
    for klass in cls.__mro__:
        if klass in (nn.Module, object) or "__init__" not in vars(klass):
            continue
        for param in inspect.signature(klass.__init__).parameters.values():  # type: ignore[misc]
            if param.name != "self" and param.kind not in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                found.setdefault(param.name, param)
    return found


def _required_parameters(cls: type) -> list[str]:
    """Arguments a caller must give: the most derived constructor's, and its parents' while it forwards *args.

    A parent's other required arguments (GenericPairLoss's `mat_based_loss`) are filled in by the subclass.
    """
    required: list[str] = []
    for klass in cls.__mro__:
        if klass in (nn.Module, object) or "__init__" not in vars(klass):
            continue
        params = list(inspect.signature(klass.__init__).parameters.values())[1:]  # type: ignore[misc]
        required += [
            p.name
            for p in params
            if p.default is inspect.Parameter.empty
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
            and p.name not in required
        ]
        if not any(p.kind is p.VAR_POSITIONAL for p in params):
            break
    return required


def _pml_object(arg: str, spec: object) -> Any:
    kind = _OBJECT_ARGS[arg]
    if isinstance(spec, str):
        return _pml_class(kind, spec, arg)()
    if isinstance(spec, Mapping) and "name" in spec:
        params = {k: v for k, v in spec.items() if k != "name"}
        cls = _pml_class(kind, spec["name"], arg)
        try:
            return cls(**params)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"cannot build {arg} {spec['name']!r}: {err}", hint="check its arguments") from err
    raise ConfigError(
        f"{arg} must be a class name or a table with 'name', got {spec!r}",
        hint=f'e.g. {arg} = "{pml_class_names(kind)[0]}" or {{ name = "...", ... }}',
    )


def _pml_kwargs(cls: type, given: Mapping[str, Any], what: str) -> dict[str, Any]:
    accepted = _init_parameters(cls)
    kwargs: dict[str, Any] = {}
    for key, value in given.items():
        if key not in accepted:
            raise ConfigError(
                f"{what} has no argument {key!r}",
                hint=f"{did_you_mean(key, sorted(accepted))}arguments: {', '.join(sorted(accepted)) or 'none'}",
            )
        if key in _NOT_FROM_CONFIG:
            raise ConfigError(f"{what}: {key!r} takes a Python object and cannot be set from a config", hint="")
        kwargs[key] = _pml_object(key, value) if key in _OBJECT_ARGS else value
    return kwargs


class PMLGenericLoss(PMLLoss):
    """Any PML loss by class name (`pml:<ClassName>`); `kwargs` are its arguments, `miner` an optional miner.

    The constructor's required `num_classes` / `embedding_size` come from the dataset and the model; any
    other required argument must be in `kwargs`. PML's own defaults apply to everything not given.
    """

    pml_class_name: ClassVar[str] = ""
    min_samples_per_class = 2

    def __init__(
        self,
        kwargs: Mapping[str, Any] | None = None,
        miner: str | None = None,
        miner_kwargs: Mapping[str, Any] | None = None,
        lr_multiplier: float = PROXY_LR_MULTIPLIER,
        num_classes: int | None = None,
        embedding_dim: int | None = None,
    ) -> None:
        super().__init__()
        name = self.pml_class_name
        loss_cls = _pml_class("losses", name, "loss")
        what = f"{PREFIX}{name}"
        if not isinstance(kwargs or {}, Mapping) or not isinstance(miner_kwargs or {}, Mapping):
            raise ConfigError(f"{what}: kwargs and miner_kwargs must be tables", hint="e.g. kwargs = { margin = 0.1 }")
        params = _pml_kwargs(loss_cls, kwargs or {}, what)
        context = {"num_classes": num_classes, "embedding_dim": embedding_dim}
        for arg in _required_parameters(loss_cls):
            if arg in params:
                continue
            source = _CONTEXT_ARGS.get(arg)
            if source is None:
                raise ConfigError(
                    f"{what} needs the argument {arg!r}, which dmlbench cannot supply",
                    hint=f"give it: --set loss.kwargs.{arg}=VALUE",
                )
            params[arg] = _count(source, context[source])
        mined = None
        if miner is not None and not isinstance(miner, str):
            raise ConfigError(f"{what}: miner must be a name, got {miner!r}", hint='e.g. miner = "PairMarginMiner"')
        if miner is not None and (miner.startswith(PREFIX) or parse_plugin_name(miner) is not None):
            from dmlbench.losses.registry import MINERS  # pml:<Miner>, a file or module plugin, an entry point

            mined = MINERS.build(miner, miner_kwargs or {})
        elif miner is not None:
            miner_cls = _pml_class("miners", miner, "miner")
            miner_params = _pml_kwargs(miner_cls, miner_kwargs or {}, f"miner {miner}")
            with _as_config_error(f"cannot build miner {miner!r}", "check loss.miner_kwargs"):
                mined = miner_cls(**miner_params)
        elif miner_kwargs:
            raise ConfigError(f"{what}: miner_kwargs given without a miner", hint='add miner = "<MinerClass>"')
        with _as_config_error(f"cannot build {what}", "check loss.kwargs"):
            loss = loss_cls(**params)
        indexed = params.get("num_classes")
        self._attach(
            loss,
            mined,
            num_classes=int(indexed) if isinstance(indexed, int) else None,
            lr_multiplier=lr_multiplier,
        )
        with _as_config_error(f"{what} fails on a batch", "check loss.kwargs and loss.miner_kwargs"):
            self._probe(embedding_dim if isinstance(embedding_dim, int) else None)

    def _probe(self, embedding_dim: int | None) -> None:
        """One forward and backward pass of a copy on a tiny batch: PML checks many arguments only when it runs.

        A value it accepts at construction (a string margin, a distance it cannot pair with) would otherwise
        raise mid-training, after the run folder was claimed. The global RNG is left as it was.
        """
        import copy

        table = self._buffers.get("class_table")
        classes = min(4, int(table.numel())) if table is not None else 4
        generator = torch.Generator().manual_seed(0)
        embeddings = torch.randn(2 * classes, embedding_dim or 8, generator=generator)
        embeddings = nn.functional.normalize(embeddings, dim=1).requires_grad_()
        labels = torch.arange(classes).repeat(2)
        with torch.random.fork_rng(devices=[]):
            value = copy.deepcopy(self)(embeddings, labels)
            value.backward()


@contextlib.contextmanager
def _as_config_error(what: str, hint: str) -> Iterator[None]:
    """Whatever PML raises for a value it cannot use (TypeError, AttributeError, RuntimeError...) as one ConfigError.

    PML validates few arguments itself; a wrong one surfaces as any exception, from wherever it is used.
    """
    from dmlbench.errors import DmlbenchError, first_line

    try:
        yield
    except DmlbenchError:
        raise
    except Exception as err:  # noqa: BLE001 - see the docstring: any failure here is the user's value
        raise ConfigError(f"{what}: {type(err).__name__}: {first_line(err)}", hint=hint) from err


def pml_miner_class(class_name: str) -> Any:
    """The `pml:` scheme of the miner registry: pytorch-metric-learning's miner `class_name` (did-you-mean)."""
    return _pml_class("miners", class_name, "miner")


_GENERIC: dict[str, type[PMLGenericLoss]] = {}


def pml_loss_class(class_name: str) -> type[PMLGenericLoss]:
    """The `MetricLoss` class of `pml:<class_name>` (one class per name, so `get` is stable)."""
    if class_name in _GENERIC:
        return _GENERIC[class_name]
    cls = _pml_class("losses", class_name, "loss")
    if class_name in _UNSUPPORTED:
        raise ConfigError(f"{PREFIX}{class_name} {_UNSUPPORTED[class_name]}", hint="pick another PML loss")
    base = _pml().losses.BaseMetricLossFunction
    if class_name in _BASE_CLASSES or not issubclass(cls, base):
        raise ConfigError(f"{PREFIX}{class_name} is not a loss over (embeddings, labels)", hint="pick a PML loss")
    needs_classes = "num_classes" in _required_parameters(cls)
    generic = type(
        f"PML_{class_name}",
        (PMLGenericLoss,),
        {
            "pml_class_name": class_name,
            "min_samples_per_class": 1 if needs_classes else 2,
            "__module__": __name__,
            "__doc__": f"pytorch-metric-learning's `{class_name}` as a dmlbench loss ({PREFIX}{class_name}).",
        },
    )
    _GENERIC[class_name] = generic
    return generic
