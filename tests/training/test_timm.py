"""timm backbones: names and facts, weights files, freezing, and train/resume/evaluate through the CLI.

Everything runs on CPU with timm's own tiny test models (`test_resnet`, `test_vit`, ...) at random
init and 32 px, so no download is needed; the offline test points the hub at a closed local port.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import timm
import torch
from typer.testing import CliRunner

from dmlbench.cli import app
from dmlbench.config import ModelConfig, OptimConfig, load_config
from dmlbench.errors import ConfigError, MissingInputError, UnknownNameError
from dmlbench.models import (
    BACKBONES,
    BackboneInfo,
    backbone_info,
    build_embedder,
    preprocessing,
    resolve_model_defaults,
)
from dmlbench.training.optim import build_optimizer

runner = CliRunner()
SIZE = 32


def _cfg(backbone: str, **fields: Any) -> ModelConfig:
    base = ModelConfig(backbone=backbone, pretrained=False, image_size=SIZE, embedding_dim=16, normalize=True)
    return resolve_model_defaults(base.model_copy(update=fields), 8, 1)


def _cli(*args: str, data_root: Path, run_dir: Path) -> tuple[int, str, str]:
    common = ["--dataset", "digits", "--data-root", str(data_root), "--run-dir", str(run_dir), "--quiet"]
    result = runner.invoke(app, ["train", *common, *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def _timm_args(backbone: str, *extra: str) -> list[str]:
    return ["--dataset", "digits", "--set", f'model.backbone="{backbone}"', "--set", f"model.image_size={SIZE}", *extra]


# -- names and facts ---------------------------------------------------------------------------------


def test_timm_names_are_backbones_and_unknown_ones_get_did_you_mean() -> None:
    assert BACKBONES.target("timm:test_vit").endswith(":timm_backbone")
    assert "timm:resnet10t.c3_in1k" in BACKBONES and "timm:resnet10t.nope" not in BACKBONES
    with pytest.raises(UnknownNameError) as info:
        BACKBONES.target("timm:resnet10")
    assert "did you mean 'timm:resnet10t'" in (info.value.hint or "")
    with pytest.raises(UnknownNameError, match="no pretrained tag 'c3_in1'") as info:
        BACKBONES.target("timm:resnet10t.c3_in1")
    assert "c3_in1k" in (info.value.hint or "")
    with pytest.raises(UnknownNameError) as info:
        BACKBONES.target("resnet5")
    assert "timm:<model>" in (info.value.hint or "")


def test_every_registered_backbone_has_its_facts() -> None:
    for name in BACKBONES.names():
        assert isinstance(backbone_info(name), BackboneInfo)
    small = backbone_info("small_cnn")
    assert not small.pretrained_by_default and not small.channels_last and small.in_channels is None
    assert backbone_info("resnet50").pretrained_by_default and backbone_info("resnet50").in_channels == 3


def test_facts_of_registered_backbones_need_no_torch() -> None:
    code = "import sys; from dmlbench.models import backbone_info as f; f('googlenet'); print('torch' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize("name", ["resnet10t", "test_vit", "vit_small_patch16_224.dino"])
def test_timm_facts_are_timms_data_config(name: str) -> None:
    info = backbone_info(f"timm:{name}")
    # The model-based helper (what timm's own scripts call) must agree with the config-only facts.
    expected = timm.data.resolve_model_data_config(timm.create_model(name, pretrained=False, num_classes=0))
    assert info.default_image_size == expected["input_size"][-1]
    assert info.mean == tuple(expected["mean"]) and info.std == tuple(expected["std"])
    assert (info.interpolation, info.crop_pct) == (expected["interpolation"], expected["crop_pct"])
    assert info.pretrained_by_default and info.channels_last


def test_resolve_model_defaults_records_preprocessing_and_keeps_overrides() -> None:
    vit = resolve_model_defaults(ModelConfig(backbone="timm:test_vit"), 8, 1)
    assert (vit.image_size, vit.in_channels, vit.pretrained, vit.freeze_bn) == (160, 3, True, True)
    assert (vit.mean, vit.std, vit.interpolation, vit.crop_pct) == ([0.5] * 3, [0.5] * 3, "bicubic", 0.95)
    mine = resolve_model_defaults(
        ModelConfig(backbone="timm:test_vit", image_size=SIZE, pretrained=False, mean=[0.1], std=[0.2]), 8, 1
    )
    assert (mine.image_size, mine.mean, mine.std, mine.freeze_bn) == (SIZE, [0.1], [0.2], False)
    small = resolve_model_defaults(ModelConfig(backbone="small_cnn"), 8, 1)
    assert (small.image_size, small.in_channels, small.pretrained, small.freeze_bn) == (8, 1, False, False)
    assert small.mean is None and preprocessing(small) == dict.fromkeys(["mean", "std", "interpolation", "crop_pct"])
    googlenet = resolve_model_defaults(ModelConfig(backbone="googlenet"), 224, 3)
    assert (googlenet.pretrained, googlenet.freeze_bn, googlenet.mean) == (True, True, None)
    with pytest.raises(ConfigError, match="go together"):
        resolve_model_defaults(ModelConfig(backbone="small_cnn", mean=[0.5]), 8, 1)


# -- building ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["test_resnet", "test_vit", "test_convnext", "test_efficientnet"])
def test_feature_width_is_read_from_the_model(name: str) -> None:
    model = build_embedder(_cfg(f"timm:{name}")).eval()
    reference = timm.create_model(name, pretrained=False, num_classes=0, img_size=SIZE) if name == "test_vit" else None
    with torch.no_grad():
        features = model.backbone(torch.rand(2, 3, SIZE, SIZE))
        out = model(torch.rand(2, 3, SIZE, SIZE))
    assert features.shape == (2, model.head.in_features) and out.shape == (2, 16)
    if reference is not None:
        assert model.head.in_features == reference.num_features


def _reference(name: str, in_chans: int = 3) -> torch.nn.Module:
    torch.manual_seed(1)
    kwargs = {"img_size": SIZE} if name == "test_vit" else {}
    return timm.create_model(name, pretrained=False, in_chans=in_chans, **kwargs).eval()  # with its classifier


def _save(state: dict[str, torch.Tensor], path: Path) -> Path:
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    return path


@pytest.mark.parametrize(("name", "suffix"), [("test_resnet", ".safetensors"), ("test_vit", ".pth")])
def test_weights_file_gives_the_reference_models_features(name: str, suffix: str, tmp_path: Path) -> None:
    reference = _reference(name)
    path = _save(reference.state_dict(), tmp_path / f"{name}{suffix}")
    model = build_embedder(_cfg(f"timm:{name}", weights=str(path))).eval()
    images = torch.rand(4, 3, SIZE, SIZE)
    with torch.no_grad():
        expected = reference.forward_head(reference.forward_features(images), pre_logits=True)
        torch.testing.assert_close(model.backbone(images), expected, rtol=0, atol=0)
        embeddings = model(images)
    torch.testing.assert_close(embeddings, torch.nn.functional.normalize(model.head(expected), dim=1))


def test_weights_for_one_channel_adapt_the_first_conv(tmp_path: Path) -> None:
    reference = _reference("test_resnet")
    path = _save(reference.state_dict(), tmp_path / "w.safetensors")
    model = build_embedder(_cfg("timm:test_resnet", weights=str(path), in_channels=1))
    stem: Any = model.backbone
    first = reference.pretrained_cfg["first_conv"]
    got = stem.net.get_submodule(first).weight
    torch.testing.assert_close(got, reference.get_submodule(first).weight.sum(dim=1, keepdim=True))


def test_weights_of_another_input_size_are_resampled_by_timms_filter(tmp_path: Path) -> None:
    torch.manual_seed(2)
    bigger = timm.create_model("test_vit", pretrained=False, img_size=2 * SIZE).eval()
    path = _save(bigger.state_dict(), tmp_path / "vit64.safetensors")
    model = build_embedder(_cfg("timm:test_vit", weights=str(path)))
    trunk: Any = model.backbone
    assert trunk.net.pos_embed.shape[1] < bigger.pos_embed.shape[1]  # a 2x2 grid (+ class token) from 4x4
    torch.testing.assert_close(trunk.net.blocks[0].attn.qkv.weight, bigger.blocks[0].attn.qkv.weight)


class _Payload:
    """Pickled code a weights-only load must refuse."""


def test_bad_weights_files_are_clear_errors(tmp_path: Path) -> None:
    build = lambda path: build_embedder(_cfg("timm:test_resnet", weights=str(path)))  # noqa: E731
    other = _save(_reference("test_vit").state_dict(), tmp_path / "vit.safetensors")
    with pytest.raises(ConfigError, match=r"does not fit timm:test_resnet: \d+ missing keys") as info:
        build(other)
    assert "unexpected keys" in info.value.message and "state_dict of timm model test_resnet" in (info.value.hint or "")
    state = _reference("test_resnet").state_dict()
    name = next(k for k, v in state.items() if v.ndim == 4 and k != "conv1.0.weight")
    state[name] = torch.zeros(1, 1, 1, 1)
    with pytest.raises(ConfigError, match=f"does not fit timm:test_resnet: .*{name}"):
        build(_save(state, tmp_path / "shapes.pth"))
    torch.save({"weights": _Payload()}, tmp_path / "code.pth")
    with pytest.raises(ConfigError, match="not a torch state_dict"):
        build(tmp_path / "code.pth")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(ConfigError, match="not a safetensors file"):
        build(tmp_path / "junk.safetensors")
    (tmp_path / "w.npz").write_bytes(b"x")
    with pytest.raises(ConfigError, match=r"\.safetensors or"):
        build(tmp_path / "w.npz")
    with pytest.raises(MissingInputError):
        build(tmp_path / "absent.pth")


def test_freeze_backbone_trains_only_the_head() -> None:
    model = build_embedder(_cfg("timm:test_resnet", freeze_backbone=True)).train()
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert not any(m.training for m in model.backbone.modules()), "a frozen trunk stays in eval mode"
    optimizer = build_optimizer(model, OptimConfig(name="adamw", lr=1e-2, weight_decay=0.0, head_lr_multiplier=1.0))
    trained = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert trained == {id(p) for p in model.head.parameters()}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loss = model(torch.rand(8, 3, SIZE, SIZE)).sum()
    loss.backward()
    optimizer.step()
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("backbone."))
    assert not torch.equal(before["head.weight"], after["head.weight"])


# -- recorded preprocessing in the datasets ---------------------------------------------------------


def test_array_batches_use_the_recorded_statistics(digits_root: Path) -> None:
    from dmlbench.datasets import open_prepared
    from dmlbench.datasets.torch_data import build_dataset

    prepared = open_prepared("digits", digits_root)
    frame = prepared.split("train").iloc[:5]
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.5)
    plain = build_dataset(prepared, frame, train=True, image_size=None, channels=3)
    timm_like = build_dataset(prepared, frame, train=True, image_size=None, channels=3, mean=mean, std=std)
    images, _ = plain.get_batch(range(5))  # type: ignore[union-attr]
    normalised, _ = timm_like.get_batch(range(5))  # type: ignore[union-attr]
    raw = (images + 1.0) * 127.5  # today's scaling is x / 127.5 - 1
    expected = (raw / 255.0 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    torch.testing.assert_close(normalised, expected, rtol=1e-5, atol=1e-5)
    assert float(images.min()) >= -1.0 and float(images.max()) <= 1.0
    resized = build_dataset(
        prepared, frame, train=True, image_size=SIZE, channels=3, mean=mean, std=std, interpolation="bicubic"
    )
    bicubic, _ = resized.get_batch(range(5))  # type: ignore[union-attr]
    bilinear, _ = build_dataset(prepared, frame, train=True, image_size=SIZE, channels=3, mean=mean, std=std).get_batch(  # type: ignore[union-attr]
        range(5)
    )
    assert bicubic.shape == (5, 3, SIZE, SIZE) and not torch.allclose(bicubic, bilinear)


def test_image_file_transforms_follow_the_recorded_preprocessing(tmp_path: Path) -> None:
    import pandas as pd
    from torchvision import transforms

    from dmlbench.datasets.prepared import PreparedDataset
    from dmlbench.datasets.torch_data import ImageFileDataset

    frame = pd.DataFrame({"path": [], "label": [], "split": []})
    prepared = PreparedDataset(name="files", root=tmp_path, info={})
    timm_like = ImageFileDataset(
        prepared, frame, train=False, image_size=SIZE, bbox_crop=False, channels=3,
        mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), interpolation="bicubic", crop_pct=0.9,
    )  # fmt: skip
    resize = timm_like.resize
    assert resize.size == 35 and resize.interpolation == transforms.InterpolationMode.BICUBIC  # floor(32 / 0.9)
    assert timm_like.image_size == SIZE and timm_like.mean.flatten().tolist() == [0.5, 0.5, 0.5]
    default = ImageFileDataset(prepared, frame, train=True, image_size=224, bbox_crop=False, channels=1)
    assert default.resize.size == 256 and default.interpolation == transforms.InterpolationMode.BILINEAR
    assert default.mean.numel() == 1


# -- DDP ---------------------------------------------------------------------------------------------

P, K = 4, 3


def _ddp_gradients(state: dict[str, torch.Tensor], rank: int, world: int) -> dict[str, torch.Tensor]:
    from dmlbench.losses import LOSSES
    from dmlbench.training.distributed import DistContext, gather_batch

    ctx = DistContext(rank=rank, world_size=world, local_rank=rank)
    images = torch.rand(P * K, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(P).repeat_interleave(K)
    model = build_embedder(_cfg("timm:test_vit"))
    model.load_state_dict(state)
    net: torch.nn.Module = torch.nn.parallel.DistributedDataParallel(model) if ctx.enabled else model
    mine = slice(rank * len(images) // world, (rank + 1) * len(images) // world)
    embeddings, all_labels = gather_batch(net(images[mine]), labels[mine], ctx)
    LOSSES.build("lifted", {})(embeddings, all_labels).backward()
    return {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.grad is not None}


def _ddp_worker(rank: int, world: int, init: str, state_path: str, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        grads = _ddp_gradients(torch.load(state_path, weights_only=True), rank, world)
        if rank == 0:
            torch.save(grads, out)
    finally:
        dist.destroy_process_group()


def test_two_process_step_of_a_timm_vit_equals_one_process_step(tmp_path: Path) -> None:
    import torch.multiprocessing as mp

    torch.manual_seed(0)
    state = build_embedder(_cfg("timm:test_vit")).state_dict()
    torch.save(state, tmp_path / "state.pt")
    out = tmp_path / "grads.pt"
    # fork: the children reuse the imported torch and timm (a fresh interpreter costs seconds).
    mp.start_processes(  # type: ignore[attr-defined, no-untyped-call]
        _ddp_worker,
        args=(2, f"file://{tmp_path / 'rendezvous'}", str(tmp_path / "state.pt"), str(out)),
        nprocs=2,
        join=True,
        start_method="fork",
    )
    double: dict[str, torch.Tensor] = torch.load(out, weights_only=True)
    single = _ddp_gradients(state, 0, 1)
    assert single.keys() == double.keys() and any(g.abs().sum() > 0 for g in single.values())
    assert any(name.startswith("backbone.net.blocks") for name in single)
    # The trunk's final norm applies one affine map per feature, which the batch-standardised head input
    # undoes: its weight and bias have (nearly) zero exact gradients and both runs hold float noise
    # (~1e-5 of the largest gradient), so the tolerance has a floor relative to the largest gradient.
    floor = 1e-3 * max(float(g.abs().max()) for g in single.values())
    for name in single:
        scale = max(float(single[name].abs().max()), floor)
        torch.testing.assert_close(double[name], single[name], rtol=1e-4, atol=1e-4 * scale, msg=name)


# -- the offline pretrained path ---------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_pretrained_without_the_hub_is_one_error_line_naming_weights(digits_root: Path, tmp_path: Path) -> None:
    # huggingface_hub reads its endpoint and cache from the environment: a closed port and an empty
    # cache make "no hub" deterministic on any machine, connected or not.
    env = {
        **os.environ,
        "HF_ENDPOINT": f"http://127.0.0.1:{_closed_port()}",
        "HF_HOME": str(tmp_path / "hf"),
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    args = ["--data-root", str(digits_root), "--run-dir", str(tmp_path / "r"), "--quiet", "--no-eval"]
    result = subprocess.run(
        [sys.executable, "-m", "dmlbench", "train", *args, *_timm_args("timm:test_resnet", "--steps", "1")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 4, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in lines if line.startswith("error:")]
    flat = " ".join(result.stderr.split())
    # The probe, not huggingface_hub's retry loop, gave up (its message names the hub).
    assert len(errors) == 1 and "cannot reach the Hugging Face hub" in flat and "timm:test_resnet" in flat
    assert "--weights" in flat and "--no-pretrained" in flat
    assert not (tmp_path / "r" / "train" / "model.pt").exists()


# -- end to end through the CLI ----------------------------------------------------------------------


def test_train_resume_evaluate_with_a_timm_resnet(digits_root: Path, tmp_path: Path) -> None:
    args = _timm_args("timm:test_resnet", "--no-pretrained", "--set", "schedule.checkpoint_every=2", "--seed", "3")
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    code, stdout, stderr = _cli(*args, "--steps", "4", data_root=digits_root, run_dir=straight)
    assert code == 0, stderr
    assert "4 steps" in stdout and "recall@1" in stdout
    assert _cli(*args, "--steps", "2", "--no-eval", data_root=digits_root, run_dir=resumed)[0] == 0
    code, _, stderr = _cli(*args, "--steps", "4", "--resume", data_root=digits_root, run_dir=resumed)
    assert code == 0, stderr
    a = torch.load(straight / "train" / "model.pt", weights_only=True)
    b = torch.load(resumed / "train" / "model.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), "resume must continue bit-exactly"
    metrics = json.loads((resumed / "eval" / "test" / "metrics.json").read_text())["metrics"]
    assert metrics == json.loads((straight / "eval" / "test" / "metrics.json").read_text())["metrics"]
    model = load_config(straight / "config.toml").model
    assert model.backbone == "timm:test_resnet" and model.image_size == SIZE
    result = runner.invoke(app, ["evaluate", str(straight), "--data-root", str(digits_root), "--json"])
    assert result.exit_code == 0, result.stderr
    assert (
        json.loads(result.stdout)["metrics"]
        == json.loads((straight / "eval" / "test" / "metrics.json").read_text())["metrics"]
    )


def test_resolved_config_records_timm_preprocessing_and_a_portable_run_id(tmp_path: Path) -> None:
    from dmlbench.config import dump_toml
    from dmlbench.datasets import get_spec
    from dmlbench.resolve import resolve_config

    cfg = load_config(None, ['model.backbone="timm:test_resnet"'], {"dataset": "digits", "model.pretrained": False})
    resolved = resolve_config(cfg, get_spec("digits"))
    model = resolved.model
    assert (model.image_size, model.in_channels, model.freeze_bn) == (160, 3, False)
    assert (model.mean, model.std, model.interpolation, model.crop_pct) == ([0.5] * 3, [0.5] * 3, "bilinear", 0.95)
    assert resolved.run_id == "digits-clustering-timm-test_resnet-seed0"  # no ':' in a folder name
    # What config.toml stores is what evaluation reads back.
    (tmp_path / "config.toml").write_text(dump_toml(resolved))
    assert load_config(tmp_path / "config.toml") == resolved


def test_frozen_vit_from_a_weights_file_trains_only_its_head(digits_root: Path, tmp_path: Path) -> None:
    reference = _reference("test_vit")
    path = _save(reference.state_dict(), tmp_path / "vit.safetensors")
    run_dir = tmp_path / "r"
    args = _timm_args("timm:test_vit", "--weights", str(path), "--set", "model.freeze_backbone=true", "--steps", "3")
    code, stdout, stderr = _cli(*args, data_root=digits_root, run_dir=run_dir)
    assert code == 0, stderr
    assert "recall@1" in stdout
    trained = torch.load(run_dir / "train" / "model.pt", weights_only=True)
    trunk = {k.removeprefix("backbone.net."): v for k, v in trained.items() if k.startswith("backbone.net.")}
    expected = {k: v for k, v in reference.state_dict().items() if not k.startswith("head.")}
    assert trunk.keys() == expected.keys() and all(torch.equal(trunk[k], expected[k]) for k in expected)
    history = [json.loads(line) for line in (run_dir / "train" / "history.jsonl").read_text().splitlines()]
    assert len(history) == 3 and all(np.isfinite(row["loss"]) for row in history)


def test_bf16_autocast_and_channels_last_train_a_timm_model(digits_root: Path, tmp_path: Path) -> None:
    args = _timm_args("timm:test_convnext", "--no-pretrained", "--steps", "2", "--no-eval")
    extra = ["--set", 'schedule.amp="bf16"', "--set", "schedule.channels_last=true"]
    code, stdout, stderr = _cli(*args, *extra, data_root=digits_root, run_dir=tmp_path / "r")
    assert code == 0, stderr
    assert "2 steps" in stdout and "loss nan" not in stdout


def test_unknown_timm_name_on_the_command_line(digits_root: Path, tmp_path: Path) -> None:
    code, _, stderr = _cli(*_timm_args("timm:vit_tiny_patch16_22"), data_root=digits_root, run_dir=tmp_path / "r")
    flat = " ".join(stderr.split())
    assert code == 2 and "unknown timm model 'vit_tiny_patch16_22'" in flat
    assert "did you mean 'timm:vit_tiny_patch16_224'" in flat
    assert not (tmp_path / "r").exists()
