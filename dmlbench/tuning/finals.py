"""After the search: the best parameters retrained on all training classes per seed, and the fold ensemble.

Only these runs touch the test split. A final run already complete with the same config is reused; one
left unfinished is resumed; one trained with parameters the study no longer ranks best is replaced.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from dmlbench.config import diff_keys, dump_toml
from dmlbench.errors import ConfigError, DmlbenchError, MissingInputError
from dmlbench.events import Event, EventHandler, emit
from dmlbench.rundir import DatasetRecord, Manifest, RunDir, now_iso
from dmlbench.tuning.options import FinalRun
from dmlbench.tuning.plan import Plan
from dmlbench.tuning.worker import counts

logger = logging.getLogger(__name__)


def best_trial(study: Any) -> Any:
    """The best COMPLETE trial, or MissingInputError when none has completed."""
    try:
        return study.best_trial
    except ValueError:
        raise MissingInputError(
            f"study {study.study_name!r} has no complete trial yet", hint="run more trials (or fewer get pruned)"
        ) from None


def final_run(plan: Plan, study: Any, seed: int, *, on_event: EventHandler | None = None) -> FinalRun:
    """Train (or reuse, or resume) `final-seed<seed>` with the study's best parameters; test metrics."""
    from dmlbench.datasets import get_spec
    from dmlbench.resolve import resolve_config
    from dmlbench.training import RunMeta, train

    best = best_trial(study)
    finished = counts(study).finished
    cfg = plan.config(dict(best.params), run_id=f"{plan.study}-final-seed{seed}", seed=seed, final=True)
    run = RunDir(plan.final_dir(seed))
    resume = force = False
    if run.exists():
        resolved = resolve_config(cfg, get_spec(cfg.dataset, plan.options.places))
        try:
            same = not diff_keys(run.read_config(), resolved)
        except DmlbenchError:
            same = False
        status = run.status()
        metrics = run.read_metrics("test") if same and status == "complete" else None
        if metrics is not None:
            tag_run(run, study=plan.study, tuned_params=dict(best.params), tuning_trials=finished)
            return FinalRun(f"final-seed{seed}", str(run.root), seed, dict(metrics.metrics), reused=True)
        if same and status != "complete" and run.last_checkpoint.is_file():
            resume = True
        else:
            force = True  # another config (the best changed since), or a broken folder of ours
    emit(on_event, Event("log", "tune", message=f"final run seed {seed} with trial {best.number}'s parameters"))
    summary = train(
        cfg,
        run.root,
        places=plan.options.places,
        resume=resume,
        force=force,
        device=plan.options.device,
        on_event=on_event,
        evaluate_at_end=True,
        meta=RunMeta("final", study=plan.study, tuned_params=dict(best.params), tuning_trials=finished),
    )
    return FinalRun(f"final-seed{seed}", str(run.root), seed, dict(summary.test_metrics or {}))


def tag_run(run: RunDir, **fields: Any) -> None:
    """Update study fields in the manifest of a final run trained earlier and reused (its trial count grew)."""
    if not run.exists():
        return
    try:
        with run.claim(holder="tune"):
            manifest = run.read_manifest()
            run.write_manifest(manifest.model_copy(update=fields))
    except ConfigError as err:  # held by another live writer: that one owns the folder now
        logger.warning("could not record %s in %s: %s", sorted(fields), run.root, err.message)


def ensemble_run(plan: Plan, study: Any, *, on_event: EventHandler | None = None) -> FinalRun | None:
    """The Reality Check's ensemble: the best trial's K fold models, test embeddings concatenated."""
    if len(plan.folds) < 2:
        return None
    import torch

    from dmlbench.datasets import open_prepared
    from dmlbench.evaluation import EvalOptions, evaluate_embeddings
    from dmlbench.evaluation.trained import load_trained_embedder
    from dmlbench.utils.device import resolve_device

    best = best_trial(study)
    finished = counts(study).finished
    run = RunDir(plan.ensemble_dir)
    if run.exists() and run.status() == "complete":
        manifest = run.read_manifest()
        metrics = run.read_metrics("test")
        if manifest.trial == best.number and metrics is not None:
            return FinalRun("ensemble", str(run.root), None, dict(metrics.metrics), reused=True)
    folds = [RunDir(plan.trial_dir(best.number, k)) for k in range(len(plan.folds))]
    for fold in folds:
        fold.require_complete()
    device = resolve_device(plan.options.device)
    started = time.perf_counter()
    with run.claim(holder="tune"):
        if run.exists() or not run.is_empty():
            run.clear()
        cfg = plan.config(dict(best.params), run_id=f"{plan.study}-ensemble", final=True)
        prepared = open_prepared(cfg.dataset, data_root=plan.options.places.data_root)
        info = dict(prepared.info or {})
        run.write_manifest(
            Manifest(
                run_id=f"{plan.study}-ensemble",
                kind="ensemble",
                status="running",
                created=now_iso(),
                device=str(device),
                dataset=DatasetRecord.from_prepared(prepared),
                study=plan.study,
                trial=best.number,
                tuned_params=dict(best.params),
                tuning_trials=finished,
            )
        )
        run.write_config(dump_toml(cfg))
        queries, gallery = _test_frames(prepared.index)
        parts_q: list[np.ndarray] = []
        parts_g: list[np.ndarray] = []
        labels_q = labels_g = None
        for k, fold in enumerate(folds):
            model, fold_cfg = load_trained_embedder(fold.root, device)
            emb, labels_q = _embed(model, fold_cfg, prepared, queries, device, f"ensemble fold {k}", on_event)
            parts_q.append(emb)
            if gallery is not None:
                emb_g, labels_g = _embed(model, fold_cfg, prepared, gallery, device, f"ensemble {k} gallery", on_event)
                parts_g.append(emb_g)
            del model
            if device.type == "cuda":
                torch.cuda.empty_cache()
        recall_k = [int(k) for k in info.get("recall_k") or (1, 2, 4, 8)]
        outcome = evaluate_embeddings(
            _concat(parts_q),
            labels_q,
            EvalOptions(recall_k=recall_k, device=str(device), seed=int(cfg.seed)),
            gallery_embeddings=_concat(parts_g) if parts_g else None,
            gallery_labels=labels_g,
            on_event=on_event,
        )
        from dmlbench.evaluation.runner import metrics_record

        record = metrics_record(
            outcome, run_id=f"{plan.study}-ensemble", split="test", seconds=time.perf_counter() - started
        )
        written = run.write_metrics(record, merge=False)
        run.set_status("complete")
    return FinalRun("ensemble", str(run.root), None, dict(written.metrics))


def _embed(
    model: Any, cfg: Any, prepared: Any, rows: Any, device: Any, task: str, on_event: EventHandler | None
) -> tuple[np.ndarray, np.ndarray]:
    from dmlbench.datasets.torch_data import dataset_for_model
    from dmlbench.evaluation.embed import embed_dataset

    # Each fold's model sees the test images as its own evaluation does (its mean, std, resize and crop).
    dataset = dataset_for_model(prepared, rows, cfg.model)
    return embed_dataset(model, dataset, device=device, task=task, on_event=on_event)


def _concat(parts: list[np.ndarray]) -> np.ndarray:
    # Each model's embeddings are unit-normalised first, so every fold weighs the same in the cosine.
    normed = [p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-12) for p in parts]
    return np.concatenate(normed, axis=1).astype(np.float32)


def _test_frames(index: Any) -> tuple[Any, Any]:
    """(query rows, gallery rows or None) of the test protocol: the test split, or In-Shop's query/gallery."""
    present = set(index["split"].astype(str).unique())
    if "test" in present:
        return index[index["split"] == "test"], None
    if {"query", "gallery"} <= present:
        return index[index["split"] == "query"], index[index["split"] == "gallery"]
    raise MissingInputError("the prepared dataset has no test split (nor query/gallery)", hint="re-run prepare")
