"""The HTML reports (`report.write_report`) rendered in headless Chromium: every image loads, no table
is empty, the page has its title and some text.

The browser is Debian's `chromium` + `chromium-driver`, which `make report-deps` installs (`make test`,
`test-slow` and `test-all` depend on it). Selenium is given both paths, so Selenium Manager never runs
and nothing is downloaded. Without them the tests skip, except where `CI` is set: there they fail.
(`.ci/run` only calls `make test`, which installs the browser first; most CI services set `CI`.)
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from manifpt.cli import app

runner = CliRunner()

_RENDER_JS = """
return {
  title: document.title,
  text: document.body ? document.body.innerText : "",
  images: Array.from(document.images).map(i => [i.getAttribute("src"), i.naturalWidth, i.naturalHeight]),
  tables: Array.from(document.querySelectorAll("table")).map(t => t.rows.length),
};
"""


def _browser_paths() -> tuple[str, str] | str:
    """(chromium, chromedriver), or why they cannot be used."""
    browser = shutil.which("chromium") or "/usr/bin/chromium"
    driver = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    missing = [p for p in (browser, driver) if not os.access(p, os.X_OK)]
    if missing:
        return f"no {' or '.join(missing)}: run `make report-deps` (Debian chromium + chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed: `pip install -e '.[dev]'`"
    return browser, driver


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    paths = _browser_paths()
    if isinstance(paths, str):
        if os.environ.get("CI"):
            pytest.fail(f"CI must render the reports: {paths}")
        pytest.skip(paths)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = paths
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1200,900"):
        opts.add_argument(arg)
    # an explicit driver path: Selenium Manager (which would go to the network) is skipped
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=opts)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def render(driver: Any, report: Path) -> dict[str, Any]:
    """Load report.html from disk; when it and all its images are done, what the page shows."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(report.resolve().as_uri())
    WebDriverWait(driver, 30).until(lambda d: d.execute_script(
        "return document.readyState === 'complete' && Array.from(document.images).every(i => i.complete)"))
    return driver.execute_script(_RENDER_JS)


def report_problems(driver: Any, report: Path, title: str, figures: bool = True, min_text: int = 200) -> list[str]:
    """Everything wrong with the rendered report (empty when it is fine); ``min_text``: characters of
    text below which a page counts as nearly empty."""
    page = render(driver, report)
    problems = []
    if page["title"] != title:
        problems.append(f"page title {page['title']!r}, expected {title!r}")
    if title not in page["text"]:
        problems.append(f"title {title!r} not shown on the page")
    if len(page["text"].strip()) <= min_text:
        problems.append(f"page nearly empty ({len(page['text'].strip())} characters)")
    if figures and not page["images"]:
        problems.append("no images")
    problems += [f"image {src} broken ({w}×{h})" for src, w, h in page["images"] if not (w > 0 and h > 0)]
    problems += [f"table {k} has {n} row(s)" for k, n in enumerate(page["tables"]) if n <= 1]
    # the Markdown twin links the same figures
    md = report.with_name("report.md")
    if md.exists():
        problems += [f"report.md links missing {f}" for f in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md.read_text())
                     if not (report.parent / f).is_file()]
    return problems


@pytest.fixture(scope="module")
def compare_run(folders, tmp_path_factory) -> Path:
    real, gen = folders
    out = tmp_path_factory.mktemp("render") / "compare"
    r = runner.invoke(app, ["compare", "--real", str(real), "--generated", str(gen), "--out", str(out),
                            "--spaces", "rgb", "--methods", "dzanic20", "--seeds", "2", "--max-per-class", "40",
                            "--arch", "linear", "--epochs", "3", "--quiet", "--perturb", "jpeg:50"])
    assert r.exit_code == 0, r.output
    return out


@pytest.fixture(scope="module")
def fit_run(folders, tmp_path_factory) -> Path:
    real, gen = folders
    out = tmp_path_factory.mktemp("render") / "fit"
    r = runner.invoke(app, ["fit", "--real", str(real), "--generated", str(gen), "--out", str(out), "--space", "rgb",
                            "--seeds", "1", "--max-per-class", "40", "--arch", "linear", "--epochs", "3", "--quiet",
                            "--perturb", "jpeg:50"])
    assert r.exit_code == 0, r.output
    return out


def test_compare_report_renders(browser, compare_run: Path) -> None:
    assert report_problems(browser, compare_run / "report.html", "manifpt compare: model") == []
    srcs = [src for src, _, _ in render(browser, compare_run / "report.html")["images"]]
    assert "figures/robustness.png" in srcs and any(s.startswith("figures/confusion-") for s in srcs)
    # two methods over two seeds: the accuracy bars + paired differences, under a file-name-safe task name
    # (report_problems above has checked that it loads)
    assert [s for s in srcs if s.startswith("figures/accuracy-")] == ["figures/accuracy-model-attribution.png"]


def test_fit_report_renders(browser, fit_run: Path) -> None:
    assert report_problems(browser, fit_run / "report.html", "manifpt fit: model from RGB artifacts") == []
    srcs = {src for src, _, _ in render(browser, fit_run / "report.html")["images"]}
    assert {"figures/confusion.png", "figures/tsne.png", "figures/triplets.png", "figures/robustness.png"} <= srcs


def test_openset_report_renders(browser, folders, tmp_path: Path) -> None:
    real, gen = folders
    # mlp, not linear: a linear attributor's features are the 3,072 raw artifact values, and the scorer's
    # Ledoit-Wolf precision of those takes ~15 s (one eigh); the MLP's are small
    r = runner.invoke(app, ["openset", "--real", str(real), "--generated", str(gen), "--out", str(tmp_path / "o"),
                            "--seeds", "1", "--max-per-class", "20", "--arch", "mlp", "--epochs", "2", "--quiet",
                            "--unknown", "m_grid"])
    assert r.exit_code == 0, r.output
    assert report_problems(browser, tmp_path / "o" / "report.html", "manifpt openset") == []


@pytest.mark.slow
def test_every_study_report_renders(browser, exp: Path) -> None:
    """The tiny preset's run: every study's own report and the combined one (each figure loads, none is empty);
    every study with per-seed accuracy rows for two or more methods shows its accuracy / paired-difference plot."""
    from manifpt.experiments import ORDER

    assert report_problems(browser, exp / "report.html", "manifpt experiment all (tiny)") == []
    # on the tiny zoo: layer-type is tables only (NMI per factor), cross-dataset has nothing to run (one
    # line says why) and the figures study is two figures with their titles
    small = {"layer-type": (False, 200), "cross-dataset": (False, 100), "figures": (True, 100)}
    for name in ORDER:
        figures, min_text = small.get(name, (True, 200))
        assert report_problems(browser, exp / name / "report.html", f"manifpt experiment {name} (tiny)",
                               figures=figures, min_text=min_text) == [], name
    srcs = {name: [s for s, _, _ in render(browser, exp / name / "report.html")["images"]] for name in ORDER}
    for name in ("model-type", "projection", "learner-input", "robustness", "train-data"):
        assert any(s.startswith("accuracy-") for s in srcs[name]), (name, srcs[name])
    assert any(s.startswith("density-") for s in srcs["density"])
    assert any(s.startswith("theory-") for s in srcs["theory"])


def test_a_damaged_report_is_caught(browser, fit_run: Path, tmp_path: Path) -> None:
    """Negative control: the checker does fail on a missing and on a corrupt figure."""
    bad = tmp_path / "bad"
    shutil.copytree(fit_run, bad)
    (bad / "figures" / "tsne.png").unlink()
    (bad / "figures" / "triplets.png").write_bytes(b"\x89PNG\r\n\x1a\nnot a png")
    problems = report_problems(browser, bad / "report.html", "manifpt fit: model from RGB artifacts")
    assert any("figures/tsne.png broken (0×0)" in p for p in problems), problems
    assert any("figures/triplets.png broken (0×0)" in p for p in problems), problems
    assert "report.md links missing figures/tsne.png" in problems
    # and on a page with nothing in it
    (bad / "report.html").write_text("<!doctype html><html><head><title>x</title></head><body><table><tr><th>a</th>"
                                     "</tr></table></body></html>")
    problems = report_problems(browser, bad / "report.html", "manifpt fit: model from RGB artifacts")
    assert {"no images", "table 0 has 1 row(s)"} <= set(problems) and any("nearly empty" in p for p in problems)
