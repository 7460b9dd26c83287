"""The scheme table: built-ins, `<scheme>:`, file and module plugins, and entry-point plugins resolve in one
parser; listing names imports nothing; a broken plugin package fails by name, only when used."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dmlbench.errors import ConfigError, EnvironmentFailure, MissingInputError, UnknownNameError
from dmlbench.registry import (
    PLUGIN_MODULE_PREFIX,
    Registry,
    Scheme,
    file_sha256,
    name_slug,
    parse_plugin_name,
    plugin_module_name,
)

GROUP = "dmlbench_test.widgets"


class Widget:
    def __init__(self, size: int = 3) -> None:
        self.size = size


def double(rest: str) -> type[Widget]:
    """A scheme resolver: `x2:<n>` -> a Widget class whose default size is 2n."""
    if not rest.isdigit():
        raise UnknownNameError(f"x2:{rest} is not a number", hint="e.g. x2:4")
    size = 2 * int(rest)

    class Doubled(Widget):
        def __init__(self, size: int = size) -> None:
            super().__init__(size)

    return Doubled


def registry() -> Registry[Widget]:
    table: Registry[Widget] = Registry(
        "widget",
        base=Widget,
        schemes=[Scheme("x2", f"{__name__}:double", "x2:<n> (doubled)")],
        entry_point_group=GROUP,
        plugins=True,
    )
    table.add("plain", f"{__name__}:Widget")
    return table


def test_each_name_form_resolves_through_one_table(tmp_path: Path) -> None:
    plugin = tmp_path / "my_widgets.py"
    plugin.write_text("class Big:\n    def __init__(self, size=99):\n        self.size = size\n")
    table = registry()
    assert table.build("plain").size == 3
    assert table.build("x2:5").size == 10
    assert table.build(f"{plugin}:Big").size == 99
    assert table.build(f"{__name__}:Widget", {"size": 7}).size == 7
    assert [table.name_kind(n) for n in ("plain", "x2:5", f"{plugin}:Big", "json:loads")] == [
        "builtin",
        "scheme",
        "file",
        "module",
    ]
    with pytest.raises(UnknownNameError) as info:
        table.get("plian")
    assert "'plain'" in (info.value.hint or "") and "x2:<n>" in (info.value.hint or "")
    with pytest.raises(UnknownNameError):
        table.get("x2:many")


def test_a_file_plugin_runs_once_under_a_content_name_registered_before_it_executes(tmp_path: Path) -> None:
    plugin = tmp_path / "json.py"  # a file named like a package must not shadow it
    plugin.write_text(
        "import sys\nSEEN_ITSELF = __name__ in sys.modules\nRUNS = []\nRUNS.append(1)\nclass W:\n    pass\n"
    )
    table = registry()
    first = table.get(f"{plugin}:W")
    module = sys.modules[first.__module__]
    assert first.__module__ == plugin_module_name(file_sha256(plugin))
    assert first.__module__.startswith(PLUGIN_MODULE_PREFIX) and module.SEEN_ITSELF
    assert table.get(f"{plugin}:W") is first and module.RUNS == [1]
    import json

    assert json.dumps is sys.modules["json"].dumps and sys.modules["json"] is not module
    plugin.write_text("class W:\n    pass\n")  # a new version is a new module
    assert table.get(f"{plugin}:W") is not first


def test_plugin_errors_are_one_line_each(tmp_path: Path) -> None:
    table = registry()
    with pytest.raises(MissingInputError):
        table.get(f"{tmp_path / 'absent.py'}:W")
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(ConfigError) as config:
        table.get(f"{broken}:W")
    assert "boom" in config.value.message
    assert not any(m.startswith(PLUGIN_MODULE_PREFIX) and "boom" in str(v) for m, v in sys.modules.items())
    fine = tmp_path / "fine.py"
    fine.write_text("class Widget:\n    pass\n")
    with pytest.raises(UnknownNameError) as unknown:
        table.get(f"{fine}:Widgte")
    assert "'Widget'" in (unknown.value.hint or "")
    with pytest.raises(MissingInputError):
        table.get("no_such_package_dmlbench.sub:Thing")


def _install_distribution(site: Path, name: str, entry_points: str) -> None:
    """A real installed distribution: a .dist-info folder with entry_points.txt on sys.path."""
    info = site / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{GROUP}]\n{entry_points}")


def test_entry_point_plugins_are_listed_without_import_and_a_broken_one_fails_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "good_widgets.py").write_text("class Fancy:\n    def __init__(self, size=42):\n        self.size = size\n")
    _install_distribution(site, "good_widgets", "fancy = good_widgets:Fancy\n")
    _install_distribution(site, "bad_widgets", "ruined = bad_widgets_missing_module:Thing\n")
    monkeypatch.syspath_prepend(str(site))
    table = registry()
    assert table.names() == ["plain", "fancy", "ruined"]  # metadata only: nothing imported
    assert "good_widgets" not in sys.modules
    assert table.build("fancy").size == 42 and table.name_kind("fancy") == "entry_point"
    assert table.build("plain").size == 3  # the broken package does not touch built-ins
    with pytest.raises(EnvironmentFailure) as info:
        table.get("ruined")
    assert "'ruined'" in info.value.message and "bad_widgets" in info.value.message


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("triplet", "triplet"),
        ("pml:CircleLoss", "pml-CircleLoss"),
        ("timm:vit_small_patch16_224.dino", "timm-vit_small_patch16_224.dino"),
        ("./losses/my_loss.py:MyLoss", "my_loss-MyLoss"),
        ("/abs/path/x.py:Y", "x-Y"),
        ("mypkg.losses:Arc", "mypkg.losses-Arc"),
    ],
)
def test_run_id_slugs_are_plain_names(name: str, slug: str) -> None:
    from dmlbench.paths import check_name

    assert name_slug(name) == slug == check_name(slug, "slug")


def test_plugin_name_parsing() -> None:
    # Shaped like `module:Attr`: the registry tries its schemes first, so `pml:` never reaches importlib.
    module_form = parse_plugin_name("pml:CircleLoss")
    assert module_form is not None and module_form.kind == "module"
    file_form = parse_plugin_name("a/b.py:C")
    assert file_form is not None and (file_form.kind, file_form.source, file_form.attr) == ("file", "a/b.py", "C")
    assert parse_plugin_name("triplet") is None and parse_plugin_name("x.py:not-an-attr") is None


def test_listing_loss_and_backbone_names_imports_no_torch() -> None:
    code = (
        "import sys; from dmlbench.losses import LOSSES; from dmlbench.models import BACKBONES; "
        "from dmlbench.losses.registry import loss_help; loss_help(); LOSSES.names(); BACKBONES.names(); "
        "print('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_help_lists_the_registry_not_a_typed_list() -> None:
    from dmlbench.losses import LOSSES

    result = subprocess.run(
        [sys.executable, "-m", "dmlbench", "train", "--help"],
        capture_output=True,
        text=True,
        check=True,
        env={"COLUMNS": "400", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    for name in LOSSES.builtin_names():
        assert name in result.stdout
    assert "pml:<ClassName>" in result.stdout and "path/to/file.py:Attr" in result.stdout


def test_plugin_forms_are_opt_in_per_registry() -> None:
    """Formats, sources and baselines take no code from a name: `json:dumps` is just an unknown format."""
    from dmlbench.reporting import RENDERERS

    with pytest.raises(UnknownNameError) as info:
        RENDERERS.get("json:dumps")
    assert "file.py" not in (info.value.hint or "")
    assert "markdown" in RENDERERS and "json:dumps" not in RENDERERS
