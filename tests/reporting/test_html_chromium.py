"""The HTML report opened in headless Chromium: the table and the plots are there and actually drawn."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dmlbench.paths import Places
from dmlbench.reporting import report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium not installed (Debian: apt-get install -y chromium)"
)
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MATPLOTLIB_BLUE = np.array([0x1F, 0x77, 0xB4])  # first line colour of every plot; the page's CSS never uses it


def chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    command = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)


def test_html_report_renders_table_and_images(fixture_runs: Path, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(report([fixture_runs], fmt="html"), encoding="utf-8")

    dom = chromium(["--dump-dom", page.resolve().as_uri()], tmp_path / "profile-dom").stdout
    assert dom.count('<table class="results">') == 3
    assert "<th>R@1</th>" in dom and "<th>NMI</th>" in dom
    assert dom.count("<img ") == 7 and 'src="data:image/png;base64,' in dom
    assert "digits-triplet-small_cnn-seed2" in dom  # the failed run, in the notes

    shot = tmp_path / "shot.png"
    chromium([f"--screenshot={shot}", "--window-size=1200,2000", page.resolve().as_uri()], tmp_path / "profile-shot")
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=np.int16)
    assert pixels.shape[:2] == (2000, 1200)
    assert pixels.std() > 20, "the screenshot is blank"
    dark = (pixels.sum(axis=2) < 200).mean()
    assert dark > 0.002, "no text was drawn"
    blue = (np.abs(pixels - MATPLOTLIB_BLUE).sum(axis=2) < 30).sum()
    assert blue > 200, "no plot lines visible: the embedded images did not render"


MEASURE = """<script>
window.addEventListener("load", () => {
  const root = document.documentElement;
  const wraps = [...document.querySelectorAll("div.table-wrap")];
  document.body.dataset.pageWidth = String(root.scrollWidth);
  document.body.dataset.viewWidth = String(root.clientWidth);
  document.body.dataset.scrolling = String(wraps.filter(w => w.scrollWidth > w.clientWidth).length);
  const tables = [...document.querySelectorAll("table.results")];
  document.body.dataset.wrapped = String(tables.filter(t => t.parentElement.classList.contains("table-wrap")).length);
});
</script>"""


def test_wide_tables_scroll_in_their_own_box(tmp_path: Path) -> None:
    """A table wider than the window scrolls inside its box; the page itself never gets wider than the window."""
    from report_runs import seeds

    metrics = {f"recall@{k}": 0.5 + k / 1000 for k in range(1, 31)} | {"nmi": 0.6}
    for lr in ("0.001", "0.0001"):
        seeds(tmp_path / "runs", f"lr{lr}", [metrics, metrics], overrides=[f"optim.lr={lr}"], run_id=None)
    page = tmp_path / "report.html"
    text = report([tmp_path / "runs"], fmt="html").replace("</body>", MEASURE + "</body>")
    page.write_text(text, encoding="utf-8")
    dom = chromium(
        ["--window-size=800,600", "--virtual-time-budget=5000", "--dump-dom", page.resolve().as_uri()],
        tmp_path / "profile",
    )
    found = dict(re.findall(r'data-(page-width|view-width|scrolling|wrapped)="(\d+)"', dom.stdout))
    assert found.keys() == {"page-width", "view-width", "scrolling", "wrapped"}, dom.stdout[-2000:]
    assert int(found["view-width"]) <= 800
    assert int(found["page-width"]) <= int(found["view-width"]), "a wide table widened the page"
    assert found["scrolling"] == "1", "the wide table does not scroll in its box"
    assert found["wrapped"] == "1"


def test_html_report_shows_retrieval_grids(tmp_path: Path) -> None:
    """The grids are drawn in the page: red and green borders visible in a screenshot."""
    from test_grid import retrieval_run

    from dmlbench.datasets import prepare
    from dmlbench.reporting.grid import CORRECT_COLOUR, WRONG_COLOUR

    data = tmp_path / "data"
    prepare("digits", Places.of(data))
    retrieval_run(tmp_path / "runs", data, "clustering")
    page = tmp_path / "report.html"
    page.write_text(report([tmp_path / "runs"], fmt="html", data_root=data), encoding="utf-8")
    shot = tmp_path / "shot.png"
    chromium([f"--screenshot={shot}", "--window-size=1200,1600", page.resolve().as_uri()], tmp_path / "profile")
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=np.int16)
    for colour in (CORRECT_COLOUR, WRONG_COLOUR):
        assert (np.abs(pixels - np.array(colour)).sum(axis=2) < 30).sum() > 500, colour
