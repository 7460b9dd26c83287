"""One lazy registry mechanism for losses, backbones, sources, metrics and renderers, and one name parser.

Targets are `"module:attr"` strings, imported on first use, so listing names never imports torch.
A name resolves through one scheme table (as timm resolves `timm:` and `hf-hub:` in one parser):

| name                        | resolves to                                                        |
|-----------------------------|--------------------------------------------------------------------|
| `triplet`                   | a built-in entry (`add`), or an installed package's entry point     |
| `pml:<Class>`, `timm:<m>`   | the registry's schemes (a resolver function per prefix)            |
| `path/to/file.py:Attr`      | `Attr` of that file, executed once under a sha256-derived name     |
| `package.module:Attr`       | `Attr` of an importable module                                     |

Installed packages add names through the entry-point group a registry declares (`dmlbench.losses`,
`dmlbench.backbones`); listing them reads package metadata only, so a broken plugin package cannot break
`--help` or the built-in names, and fails, by its name, only when it is used.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import inspect
import logging
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Generic, Literal, TypeVar

from dmlbench.errors import ConfigError, EnvironmentFailure, MissingInputError, UnknownNameError

T = TypeVar("T")
logger = logging.getLogger(__name__)

NameKind = Literal["builtin", "entry_point", "scheme", "file", "module"]
PLUGIN_MODULE_PREFIX = "dmlbench_plugin_"


def did_you_mean(name: str, known: list[str]) -> str:
    """Return 'did you mean 'x'? ' for close matches of `name`, or an empty string."""
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    return f"did you mean {' or '.join(map(repr, close))}? " if close else ""


@dataclass(frozen=True)
class Scheme:
    """`<prefix>:<rest>` names: `resolver` ("module:function") maps `rest` to the object, raising
    UnknownNameError (with did-you-mean) for a name the scheme does not know."""

    prefix: str
    resolver: str
    help: str  # how `--help` and hints describe the scheme, e.g. "pml:<Class> (any pytorch-metric-learning loss)"
    target: str | None = None  # what `Registry.target` reports for the scheme's names, if one factory serves all


@dataclass(frozen=True)
class PluginName:
    """A `source:Attr` name split into its parts (`kind` "file" or "module")."""

    kind: Literal["file", "module"]
    source: str  # the path as written, or the dotted module name
    attr: str

    @property
    def path(self) -> Path:
        """The file's absolute path (for `kind == "file"`), relative names taken from the working directory."""
        return Path(self.source).expanduser().resolve()


def parse_plugin_name(name: str) -> PluginName | None:
    """`path/to/file.py:Attr` or `package.module:Attr` -> PluginName; anything else (a scheme too) -> None."""
    source, colon, attr = name.rpartition(":")
    if not colon or not source or not attr.isidentifier():
        return None
    if source.endswith(".py") or "/" in source or "\\" in source:
        return PluginName("file", source, attr)
    if all(part.isidentifier() for part in source.split(".")):
        return PluginName("module", source, attr)
    return None


def name_slug(name: str) -> str:
    """A registry name as part of a folder name (run ids): `./losses/my_loss.py:MyLoss` -> `my_loss-MyLoss`,
    `pml:CircleLoss` -> `pml-CircleLoss`, `timm:vit_small.dino` -> `timm-vit_small.dino`.

    A colon in a folder name breaks scp, rsync and Windows; a slash would make two folders.
    """
    plugin = parse_plugin_name(name)
    if plugin is not None and plugin.kind == "file":
        return f"{Path(plugin.source).stem}-{plugin.attr}"
    return name.replace(":", "-").replace("/", "-").replace("\\", "-")


def file_sha256(path: Path) -> str:
    """The sha256 of a plugin file (what a run records and `--resume` compares)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def plugin_module_name(sha256: str) -> str:
    """The `sys.modules` name of a file plugin: derived from its content, so it never shadows a package and
    two versions of one file never share a module."""
    return f"{PLUGIN_MODULE_PREFIX}{sha256[:16]}"


def load_plugin_file(path: Path) -> ModuleType:
    """Execute a plugin file once per content (put in `sys.modules` first, so dataclasses, pickling and
    spawned workers that re-load it by path all find the module) and return it."""
    try:
        code = path.read_bytes()
    except FileNotFoundError:
        raise MissingInputError(f"plugin file {path} does not exist", hint="check the path before ':'") from None
    except IsADirectoryError:
        raise MissingInputError(f"plugin file {path} is a folder", hint="name a file: path/to/file.py:Attr") from None
    module_name = plugin_module_name(hashlib.sha256(code).hexdigest())
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"cannot load {path} as Python", hint="a plugin file must be a .py file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        del sys.modules[module_name]
        raise ConfigError(
            f"plugin file {path} failed to load: {type(err).__name__}: {err}", hint="run `python FILE` to debug it"
        ) from err
    return module


def module_plugin_versions(named: Sequence[tuple[Registry[Any], str]]) -> dict[str, dict[str, str]]:
    """Which version of each `package.module:Attr` plugin among the (registry, name) pairs is used, keyed by
    the name, for the manifest: the installed distribution and its version when the top package belongs to
    one, else the module file and its sha256 (a module on PYTHONPATH has no version of its own). Other forms
    are skipped: built-ins and schemes (`timm:x` looks like a module name; its registry knows better) are
    versioned by `provenance.versions()`, file plugins are copied into the run."""
    records: dict[str, dict[str, str]] = {}
    for registry, name in named:
        plugin = parse_plugin_name(name)
        if plugin is None or plugin.kind != "module" or name in records or registry.name_kind(name) != "module":
            continue
        records[name] = _module_version(plugin.source)
    return records


def _module_version(source: str) -> dict[str, str]:
    import importlib.metadata

    top = source.partition(".")[0]
    for distribution in importlib.metadata.packages_distributions().get(top, []):
        try:
            return {"module": source, "distribution": distribution, "version": importlib.metadata.version(distribution)}
        except importlib.metadata.PackageNotFoundError:
            continue
    try:
        module = importlib.import_module(source)  # already imported: the run built its loss or backbone from it
    except ImportError:
        return {"module": source}
    file = getattr(module, "__file__", None)
    if not file or not Path(file).is_file():
        return {"module": source}  # a namespace package or a built-in module: nothing to hash
    return {"module": source, "file": str(Path(file).resolve()), "sha256": file_sha256(Path(file))}


def _attribute(module: ModuleType, attr: str, where: str) -> Any:
    if not hasattr(module, attr):
        public = sorted(n for n in vars(module) if not n.startswith("_") and callable(getattr(module, n)))
        raise UnknownNameError(
            f"{where} has no {attr!r}", hint=f"{did_you_mean(attr, public)}defined there: {', '.join(public) or 'none'}"
        )
    return getattr(module, attr)


def _entry_points(group: str) -> dict[str, Any]:
    """Installed entry points of `group` by name, from metadata only (nothing is imported)."""
    from importlib.metadata import entry_points

    try:
        found = entry_points(group=group)
    except Exception as err:  # a broken distribution's metadata must not break --help
        logger.warning("cannot read the %s entry points: %s", group, err)
        return {}
    return {ep.name: ep for ep in found}


class Registry(Generic[T]):
    """A table `name -> "module:attr"` with did-you-mean lookups and signature-checked builds, plus the
    scheme table: `schemes` (prefix -> resolver), file and module plugins, and `entry_point_group`."""

    def __init__(
        self,
        kind: str,
        base: type | str | None = None,
        *,
        schemes: Sequence[Scheme] = (),
        entry_point_group: str | None = None,
        builds: str | None = None,
        plugins: bool = False,
    ) -> None:
        """`base` ("module:Class" imports lazily) checks built-in entries; `builds` ("module:Class") is what
        every build, a plugin's included, must return; `plugins` admits `file.py:Attr` and `module:Attr`
        names (losses, miners, backbones: code a user brings; not formats or sources)."""
        self.kind = kind
        self.plugins = plugins
        self.base = base
        self.builds = builds
        self.entry_point_group = entry_point_group
        self._schemes = {scheme.prefix: scheme for scheme in schemes}
        self._targets: dict[str, str] = {}

    def add(self, name: str, target: str) -> None:
        """Register `target` ("package.module:Attr") under `name`; names are unique."""
        if name in self._targets:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        if ":" not in target:
            raise ValueError(f"target {target!r} must look like 'package.module:Attr'")
        self._targets[name] = target

    # -- listing (never imports a target) ----------------------------------------------------------------

    def builtin_names(self) -> list[str]:
        """Names registered with `add`, in registration order."""
        return list(self._targets)

    def plugin_names(self) -> list[str]:
        """Names installed packages add through the entry-point group (a built-in name wins a clash)."""
        if self.entry_point_group is None:
            return []
        return sorted(n for n in _entry_points(self.entry_point_group) if n not in self._targets)

    def names(self) -> list[str]:
        """Every plain name: built-ins in registration order, then installed plugins."""
        return [*self.builtin_names(), *self.plugin_names()]

    def schemes(self) -> list[Scheme]:
        """The `<prefix>:` schemes this registry resolves."""
        return list(self._schemes.values())

    def describe_names(self) -> str:
        """One line for `--help` and hints: the plain names, the schemes and the plugin forms."""
        forms = [scheme.help for scheme in self._schemes.values()]
        if self.plugins:
            forms.append("path/to/file.py:Attr or package.module:Attr (your own)")
        return f"{', '.join(self.names())}; {'; '.join(forms)}"

    def name_kind(self, name: str) -> NameKind:
        """Which row of the scheme table `name` falls under (UnknownNameError for an unknown plain name)."""
        if name in self._targets:
            return "builtin"
        prefix, colon, _ = name.partition(":")
        if colon and prefix in self._schemes:
            return "scheme"
        plugin = parse_plugin_name(name) if self.plugins else None
        if plugin is not None:
            return plugin.kind
        if self.entry_point_group is not None and name in _entry_points(self.entry_point_group):
            return "entry_point"
        known = self.names()
        extra = ["or path/to/file.py:Attr, package.module:Attr"] if self.plugins else []
        forms = "; ".join([s.help for s in self._schemes.values()] + extra)
        raise UnknownNameError(
            f"unknown {self.kind} {name!r}",
            hint=f"{did_you_mean(name, known)}known: {', '.join(known)}" + (f"; {forms}" if forms else ""),
        )

    # -- resolving ---------------------------------------------------------------------------------------

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        if name in self._targets:
            return True  # a built-in: known without importing it
        try:
            self.get(name)
        except (UnknownNameError, ConfigError, MissingInputError, EnvironmentFailure):
            return False
        return True

    def target(self, name: str) -> str:
        """The "module:attr" string of `name`, checked (raises UnknownNameError)."""
        kind = self.name_kind(name)
        if kind == "builtin":
            return self._targets[name]
        if kind == "scheme":
            scheme = self._schemes[name.partition(":")[0]]
            obj = self.get(name)  # an unknown name of the scheme fails here, with its did-you-mean
            return scheme.target or f"{getattr(obj, '__module__', '?')}:{getattr(obj, '__qualname__', name)}"
        if kind == "entry_point":
            assert self.entry_point_group is not None
            return str(_entry_points(self.entry_point_group)[name].value)
        return name

    def _resolve(self, name: str) -> Any:
        kind = self.name_kind(name)
        if kind == "builtin":
            module_name, _, attr = self._targets[name].partition(":")
            return getattr(importlib.import_module(module_name), attr)
        if kind == "scheme":
            prefix, _, rest = name.partition(":")
            module_name, _, function = self._schemes[prefix].resolver.partition(":")
            return getattr(importlib.import_module(module_name), function)(rest)
        if kind == "entry_point":
            assert self.entry_point_group is not None
            ep = _entry_points(self.entry_point_group)[name]
            try:
                return ep.load()
            except Exception as err:
                package = getattr(getattr(ep, "dist", None), "name", None) or "its package"
                failure = f"{type(err).__name__}: {err}"
                raise EnvironmentFailure(
                    f"{self.kind} plugin {name!r} ({ep.value}, from {package}) failed to load: {failure}",
                    hint=f"reinstall or uninstall {package}; built-in {self.kind}s still work",
                ) from err
        plugin = parse_plugin_name(name)
        assert plugin is not None
        if plugin.kind == "file":
            return _attribute(load_plugin_file(plugin.path), plugin.attr, str(plugin.path))
        try:
            module = importlib.import_module(plugin.source)
        except ModuleNotFoundError as err:
            raise MissingInputError(
                f"cannot import {plugin.source!r} for {self.kind} {name!r} ({err})",
                hint="install the package, put it on PYTHONPATH, or name a file: path/to/file.py:Attr",
            ) from None
        return _attribute(module, plugin.attr, f"module {plugin.source}")

    def get(self, name: str) -> Any:
        """Import and return the object `name` resolves to; built-ins are checked against the base class."""
        obj = self._resolve(name)
        if not callable(obj):
            raise ConfigError(f"{self.kind} {name!r} is not a class or a factory function", hint="name a class")
        if self.base is not None and name in self._targets:
            base = _load(self.base) if isinstance(self.base, str) else self.base
            if not (isinstance(obj, type) and issubclass(obj, base)):
                raise TypeError(f"{self._targets[name]} is registered as a {self.kind} but is not a {base.__name__}")
        return obj

    def build(self, name: str, params: Mapping[str, Any] | None = None, **context: Any) -> Any:
        """Instantiate `name` with user `params` (checked against the signature) plus declared `context`.

        Context values (e.g. num_classes, embedding_dim) are passed only to constructors whose
        signature names them, so one call site can build every entry.
        """
        factory = self.get(name)
        params = dict(params or {})
        signature = inspect.signature(factory)
        accepted = {
            p.name
            for p in signature.parameters.values()
            if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        }
        unknown = sorted(set(params) - accepted)
        if unknown:
            first = unknown[0]
            raise ConfigError(
                f"{self.kind} {name!r} has no parameter {first!r}",
                hint=f"{did_you_mean(first, sorted(accepted))}parameters: {', '.join(sorted(accepted)) or 'none'}",
            )
        kwargs = {key: value for key, value in context.items() if key in accepted and key not in params}
        kwargs.update(params)
        try:
            built = factory(**kwargs)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"cannot build {self.kind} {name!r}: {err}", hint="check the parameter values") from err
        if self.builds is not None and not isinstance(built, _load(self.builds)):
            raise ConfigError(
                f"{self.kind} {name!r} built a {type(built).__name__}, not a {self.builds.partition(':')[2]}",
                hint=f"a {self.kind} must be (or return) a {self.builds.replace(':', '.')}",
            )
        return built

    def parameters(self, name: str) -> dict[str, Any]:
        """Default keyword parameters of `name` (what a resolved config writes out)."""
        factory = self.get(name)
        return {
            p.name: p.default
            for p in inspect.signature(factory).parameters.values()
            if p.default is not inspect.Parameter.empty
        }


def _load(target: str) -> Any:
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)
