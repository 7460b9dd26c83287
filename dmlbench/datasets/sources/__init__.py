"""Raw-format readers: one file per format, one line each here. `source = "..."` in datasets.toml picks one."""

from __future__ import annotations

from dmlbench.datasets.sources.base import Source
from dmlbench.registry import Registry

SOURCES: Registry[Source] = Registry("source", base=Source)
SOURCES.add("digits", "dmlbench.datasets.sources.digits:DigitsSource")
SOURCES.add("synthetic", "dmlbench.datasets.sources.synthetic:SyntheticSource")
SOURCES.add("glyphs", "dmlbench.datasets.sources.glyphs:GlyphsSource")
SOURCES.add("idx", "dmlbench.datasets.sources.idx:IdxSource")
SOURCES.add("cub200", "dmlbench.datasets.sources.cub200:Cub200Source")
SOURCES.add("cars196", "dmlbench.datasets.sources.cars196:Cars196Source")
SOURCES.add("sop", "dmlbench.datasets.sources.sop:SopSource")
SOURCES.add("inshop", "dmlbench.datasets.sources.inshop:InShopSource")
# the user's own files (`dmlbench prepare PATH`): the path and split rule are in the spec's params
SOURCES.add("imagefolder", "dmlbench.datasets.sources.imagefolder:ImageFolderSource")
SOURCES.add("omlcsv", "dmlbench.datasets.sources.omlcsv:OmlCsvSource")

__all__ = ["SOURCES", "Source"]
