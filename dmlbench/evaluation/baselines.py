"""Baselines: what a dataset's test split scores with no training at all, written like a run.

- `untrained`: the dataset's default backbone and head straight from initialisation (seeded as a
  training run with that seed starts), or with ImageNet weights for pretrained backbones: the
  "pretrained" row of Musgrave et al., "A Metric Learning Reality Check" (2020).
- `raw`: the input pixels, flattened exactly as the model would see them (the test transform),
  L2-normalised, cosine.

Both go through the same embedding, split and metric code as trained runs (`runner.evaluate`) and write
`RUNS_ROOT/baselines/<dataset>-<kind>-<backbone>-seed<seed>/` (manifest kind "baseline", config.toml,
eval/test/metrics.json) that `report` reads like any run.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any

from dmlbench.errors import ConfigError, DmlbenchError, UsageError
from dmlbench.evaluation.core import EvalOptions
from dmlbench.evaluation.runner import EvalResult, _frames, check_raw_fits, evaluate, writing
from dmlbench.evaluation.trained import BASELINES, baseline_embedder
from dmlbench.events import Event, EventHandler, emit
from dmlbench.paths import Places, check_name, child_path
from dmlbench.rundir import DatasetRecord, Manifest, RunDir, Status, now_iso
from dmlbench.runsroot import BASELINES_DIR

logger = logging.getLogger(__name__)


def baseline_run_id(dataset: str, kind: str, backbone: str, seed: int) -> str:
    """`<dataset>-<kind>-<backbone>-seed<seed>`, a checked folder name (timm:vit_small -> timm-vit_small)."""
    from dmlbench.resolve import backbone_slug

    backbone_name = backbone_slug(backbone)
    return check_name(f"{dataset}-{kind}-{backbone_name}-seed{seed}", "baseline run id")


def baseline_dir(runs_root: str | os.PathLike[str], run_id: str) -> Path:
    """Where a baseline lives: `RUNS_ROOT/baselines/<run_id>`, never outside the runs root."""
    return child_path(child_path(Path(runs_root), BASELINES_DIR, "folder"), run_id, "baseline run id")


def baseline_config(
    kind: str,
    dataset: str,
    *,
    seed: int = 0,
    backbone: str | None = None,
    weights: str | os.PathLike[str] | None = None,
    places: Places | None = None,
) -> Any:
    """The resolved TrainConfig a baseline is computed from (and stored with); every input is checked here."""
    from dmlbench.config import ModelConfig, TrainConfig
    from dmlbench.datasets import get_spec
    from dmlbench.resolve import resolve_config

    BASELINES.target(kind)  # an unknown kind fails with did-you-mean
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UsageError(f"--seed must be a non-negative integer, got {seed!r}", hint="e.g. --seed 0")
    if weights is not None and kind != "untrained":
        raise UsageError(
            f"--weights applies to the untrained baseline, not {kind!r}",
            hint="drop --weights, or score the untrained baseline",
        )
    check_name(dataset, "dataset")
    # without places: the built-in catalog only (no data root searched for datasets prepared from user files)
    spec = get_spec(dataset, places)
    model = ModelConfig(backbone=backbone, weights=str(weights) if weights is not None else None)
    resolved = resolve_config(TrainConfig(dataset=dataset, seed=seed, model=model), spec)
    assert resolved.model.backbone is not None
    resolved.run_id = baseline_run_id(dataset, kind, resolved.model.backbone, seed)
    return resolved


def run_baseline(
    kind: str,
    dataset: str,
    *,
    places: Places,
    seed: int = 0,
    backbone: str | None = None,
    device: str = "auto",
    on_event: EventHandler | None = None,
    force: bool = False,
    weights: str | os.PathLike[str] | None = None,
) -> EvalResult:
    """Compute baseline `kind` ("untrained" | "raw") on `dataset`'s test split and write its run-like folder.

    A complete folder with the same resolved config and dataset fingerprint is reused (`reused=True`,
    nothing recomputed); `force` recomputes it. A folder holding a different baseline config is refused
    without `force`. Every input (kind, seed, dataset, backbone, weights, the prepared data, the model
    itself) is checked before the folder is claimed, so a rejected call writes nothing.
    """
    from dmlbench.config import diff_keys, dump_toml
    from dmlbench.datasets import open_or_prepare
    from dmlbench.provenance import git_commit, versions
    from dmlbench.utils.cpu import intra_op_threads
    from dmlbench.utils.device import resolve_device

    cfg = baseline_config(kind, dataset, seed=seed, backbone=backbone, weights=weights, places=places)
    target = resolve_device(device)
    prepared = open_or_prepare(dataset, places, on_event=on_event)
    placeholder = Manifest(run_id=cfg.run_id, kind="baseline", baseline=kind, status="complete")
    query_rows, gallery_rows = _frames(prepared.index, "test", placeholder, cfg)
    if kind == "raw":
        check_raw_fits(cfg, len(query_rows) + (len(gallery_rows) if gallery_rows is not None else 0))
    run = RunDir(baseline_dir(places.runs_root, cfg.run_id))
    _check_foreign(run, force=force)  # before the claim, so a refused folder does not even get a lock file
    if run.exists() and not force:
        with run.claim(holder="baseline"):
            stored = _stored_result(run, cfg, kind, prepared.fingerprint, diff_keys)
        if stored is not None:  # reused without building the model (ImageNet weights take a while to load)
            emit(on_event, Event("log", "baseline", message=f"reusing {run.root} (same config; --force recomputes)"))
            return stored
    # Built before anything is written: a pretrained backbone offline fails here with its own error.
    model = baseline_embedder(kind, cfg).to(target)
    # The recorded thread count, like a trained run's: the numbers do not depend on the worker pool.
    with intra_op_threads(cfg.schedule.threads), run.claim(holder="baseline"):
        _check_foreign(run, force=force)  # again under the lock: another process may have written meanwhile
        if force:
            run.clear()
        elif run.exists():
            stored = _stored_result(run, cfg, kind, prepared.fingerprint, diff_keys)
            if stored is not None:  # another process finished it while the model was being built
                return stored
        manifest = Manifest(
            run_id=cfg.run_id,
            kind="baseline",
            baseline=kind,
            status="running",
            created=now_iso(),
            versions=versions(),
            git_commit=git_commit(),
            device=str(target),
            threads=cfg.schedule.threads,
            dataset=DatasetRecord.from_prepared(prepared),
        )
        with writing(run.root):
            run.write_manifest(manifest)
            run.write_config(dump_toml(cfg))
        try:
            # the test split, every metric, default knobs: a baseline row compares with trained runs' defaults
            result = evaluate(
                run.root,
                EvalOptions(device=device),
                places=places,
                on_event=on_event,
                locked=True,
                model=model,
                manifest=manifest,
            )
            # complete only once metrics.json exists: a kill in between leaves "running", recomputed next time
            with writing(run.manifest_path):
                run.set_status("complete")
        except BaseException as err:
            message = err.message if isinstance(err, DmlbenchError) else f"{type(err).__name__}: {err}"
            status: Status = "interrupted" if isinstance(err, KeyboardInterrupt) else "failed"
            with contextlib.suppress(OSError, DmlbenchError):  # the original error is the one to report
                run.set_status(status, error=message)
            raise
        logger.debug("baseline %s: %s", cfg.run_id, result.metrics)
        return result


def _check_foreign(run: RunDir, *, force: bool) -> None:
    """Refuse a folder that is not a run (or, with --force, holds files a run does not write)."""
    if force:
        if run.foreign_entries():
            run.clear()  # raises, naming the foreign files, and removes nothing
        return
    if run.root.is_dir() and not run.exists() and not run.is_empty():
        raise ConfigError(
            f"{run.root} exists and is not a dmlbench run directory",
            hint="move its files away, or pick another --runs-root",
        )


def _shapes_baseline(key: str) -> bool:
    """Whether a config key can change a baseline's result: the data, the seed and the network."""
    return key in ("dataset", "seed") or key.startswith("model.")


def _stored_result(run: RunDir, cfg: Any, kind: str, fingerprint: str, diff_keys: Any) -> EvalResult | None:
    """The stored result when the folder holds this very baseline, complete; None to recompute it.

    Recomputed (None): an unfinished or failed attempt, or a dataset re-prepared since (the old numbers
    describe other images). Refused: a folder holding a different run or a different baseline config.
    """
    manifest = run.read_manifest()
    if manifest.kind != "baseline" or manifest.baseline != kind:
        raise ConfigError(
            f"{run.root} holds a {manifest.kind} run, not the {kind} baseline",
            hint="move it away, or pass --force to replace it",
        )
    try:
        stored = run.read_config()
    except DmlbenchError:
        stored = None
    # A baseline never trains: the loss, sampler, optimizer and schedule it records are defaults that do
    # not touch its numbers, so a changed loss default must not make every stored baseline "different".
    changed = ["config.toml"] if stored is None else [k for k in diff_keys(stored, cfg) if _shapes_baseline(k)]
    if changed:
        raise ConfigError(
            f"{run.root} holds this baseline with a different config ({', '.join(changed[:3])})",
            hint=f"recompute it with `dmlbench evaluate-baseline {kind} ... --force`, or delete that folder",
        )
    same_data = manifest.dataset is not None and manifest.dataset.fingerprint == fingerprint
    try:
        metrics = run.read_metrics("test")
    except DmlbenchError:
        metrics = None
    if manifest.status != "complete" or not same_data or metrics is None:
        return None
    return EvalResult(metrics=metrics.metrics, path=run.metrics_path("test"), reused=True)
