"""`snakemake --report` over the finished tiny run, opened in headless Chromium: the tables and figures show.

The report is a single-page app; a copy of it gets one extra script that opens one result (as a click would),
Chromium renders it with background networking off (the machine has no internet) and dumps the DOM, and the
test looks for the result's content in the rendered page, outside the page's own scripts (which embed every
file's data whether it is shown or not).
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image, ImageStat

from tests.conftest import run_snakemake

pytestmark = pytest.mark.integration

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--virtual-time-budget=10000",
)
BROWSER_TIMEOUT = 120


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium; installed with apt-get when missing, else the tests skip saying why."""
    found = shutil.which("chromium")
    if found:
        return found
    if shutil.which("apt-get") is None:
        pytest.skip("chromium is not installed and apt-get is not available to install it")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)
        except subprocess.TimeoutExpired:
            pytest.skip(f"`{' '.join(command)}` took more than 900 s; cannot install chromium")
        if done.returncode != 0:
            pytest.skip(
                f"`{' '.join(command)}` failed, cannot install chromium: {done.stderr.strip()[-500:]}"
            )
    found = shutil.which("chromium")
    if found is None:
        pytest.skip("apt-get installed chromium but it is not on PATH")
    return found


@dataclass(frozen=True)
class Report:
    workdir: Path
    path: Path
    results: dict[str, dict]
    categories: dict[str, dict[str, list[str]]]


def embedded(page: str, name: str) -> dict:
    """A JSON object the report embeds as ``var <name> = {...}``."""
    match = re.search(rf"\bvar {name} = (?=\{{)", page)
    assert match, f"the report embeds no `var {name}`"
    value, _ = json.JSONDecoder().raw_decode(page, match.end())
    return value


@pytest.fixture(scope="module")
def report(tiny_run: Path) -> Report:
    workdir = tiny_run.parents[1]
    result = run_snakemake(workdir, "--report", "report.html", timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    path = workdir / "report.html"
    page = path.read_text()
    return Report(workdir, path, embedded(page, "results"), embedded(page, "categories"))


def open_result(chromium: str, report: Report, out: Path, action: str, screenshot: Path | None = None) -> str:
    """The visible DOM (no scripts or styles, entities decoded) after running ``action`` on the loaded page."""
    page = report.path.read_text()
    hook = f"<script>window.addEventListener('load', () => setTimeout(() => {{ {action} }}, 100));</script>"
    at = page.rfind("</body>")
    view = out / "view.html"
    view.write_text(page[:at] + hook + page[at:])
    flags = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={out / 'profile'}"]
    dom = subprocess.run(
        [*flags, "--dump-dom", view.as_uri()], capture_output=True, text=True, timeout=BROWSER_TIMEOUT
    )
    assert dom.returncode == 0 and "<body" in dom.stdout, dom.stderr[-2000:]
    if screenshot is not None:
        shot = subprocess.run(
            [*flags, "--window-size=1400,1000", f"--screenshot={screenshot}", view.as_uri()],
            capture_output=True,
            text=True,
            timeout=BROWSER_TIMEOUT,
        )
        assert shot.returncode == 0 and screenshot.is_file(), shot.stderr[-2000:]
    visible = re.sub(r"<(script|style)\b[^>]*>.*?</\1>", "", dom.stdout, flags=re.S | re.I)
    return html.unescape(visible)


def show_info(path: str) -> str:
    return f"app.showResultInfo({json.dumps(path)});"


def show_view(path: str) -> str:
    return f"{show_info(path)} new ToggleViewManager(app).handleSelectedResult({json.dumps(path)});"


def test_report_holds_tables_figures_contact_sheets_data_summary_and_benchmarks(report):
    names = {Path(path).name for path in report.results}
    assert "data.md" in names, sorted(names)  # the data-stage summary
    assert {"online_lift.md", "online_separation.png"} <= names, sorted(names)
    assert any(name.startswith("contact_sheet") for name in names), sorted(names)
    assert sum(name.endswith(".png") for name in names) >= 3, sorted(names)
    assert sum(name.endswith(".md") for name in names) >= 3, sorted(names)
    assert any("benchmark" in name for name in names), f"no per-rule benchmark record in {sorted(names)}"
    listed = {path for sub in report.categories.values() for paths in sub.values() for path in paths}
    assert listed == set(report.results)
    assert all(report.results[path]["caption"].strip() for path in report.results), "a result without caption"


def test_every_table_shows_its_rows(report, chromium, tmp_path):
    """Each Markdown table's rows appear in its report entry (its caption includes the file, see online_lift.rst)."""
    tables = sorted(path for path in report.results if path.endswith(".md"))
    assert tables
    not_shown = {}
    for i, path in enumerate(tables):
        out = tmp_path / f"table{i}"
        out.mkdir()
        visible = open_result(chromium, report, out, show_info(path))
        rows = [line for line in (report.workdir / path).read_text().splitlines() if line.startswith("|")]
        assert rows, f"{path} holds no table"
        missing = [row for row in rows if row not in visible]
        if missing:
            not_shown[path] = missing[:2]
    assert not not_shown, f"table rows not shown in the report: {not_shown}"


def test_every_figure_shows_as_an_image(report, chromium, tmp_path):
    figures = sorted(path for path in report.results if path.endswith(".png"))
    assert figures
    for i, path in enumerate(figures):
        out = tmp_path / f"figure{i}"
        out.mkdir()
        visible = open_result(chromium, report, out, show_view(path))
        encoded = base64.b64encode((report.workdir / path).read_bytes()).decode()
        shown = re.search(rf'<img src="data:image/png;[^"]*base64,{re.escape(encoded[:200])}', visible)
        assert shown, f"{path} is not shown"


def test_online_table_shows_the_measured_lift(report, chromium, tmp_path):
    metrics = json.loads((report.workdir / "results" / "tiny" / "online" / "metrics.json").read_text())
    screenshot = tmp_path / "online_lift.png"
    visible = open_result(
        chromium, report, tmp_path, show_info("results/tiny/tables/online_lift.md"), screenshot
    )
    assert "Online CTR lift by category" in visible and "(paper 7.4)" in visible
    for data in metrics["methods"].values():
        overall = data["lift"]["all"]
        assert (
            f"{overall['lift_pct']:+.1f} [{overall['low_pct']:+.1f}, {overall['high_pct']:+.1f}]" in visible
        )
    image = Image.open(screenshot).convert("L")
    assert image.size == (1400, 1000) and ImageStat.Stat(image).stddev[0] > 10  # drawn, not a blank page
