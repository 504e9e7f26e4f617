"""The report in a real browser (headless Chromium): every figure loads from the one file, and
nothing is wider than the window. Skips only when Chromium is absent (CI installs it)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
from attnverify.figures.catalog import draw_for_report
from attnverify.verification import workers
from attnverify.verification.report import build as report
from test_report import _fake_run_claim, tiny_model_path  # noqa: F401  (fixture)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (CI: .ci/run installs it)")
WIDTH, HEIGHT = 1000, 1400

#: Injected into a copy of the page: writes what the browser saw into the DOM (--dump-dom).
PROBE = """<script>
window.addEventListener('load', function () {
  var images = Array.from(document.images);
  var out = {images: images.length,
             loaded: images.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length,
             scroll_width: document.documentElement.scrollWidth, window_width: window.innerWidth};
  var pre = document.createElement('pre'); pre.id = 'probe'; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def _chromium(tmp_path, *args: str) -> str:
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run",
               f"--user-data-dir={tmp_path / 'profile'}", f"--window-size={WIDTH},{HEIGHT}",
               "--run-all-compositor-stages-before-draw", "--virtual-time-budget=5000", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def probe(page_html: str, tmp_path) -> dict:
    copy = tmp_path / "probe.html"
    copy.write_text(page_html.replace("</body>", PROBE + "</body>"))
    dom = _chromium(tmp_path, "--dump-dom", copy.as_uri())
    found = re.search(r"<pre id=\"probe\">(.*?)</pre>", dom)
    assert found, "the probe did not run"
    return json.loads(found.group(1).replace("&quot;", '"'))


@pytest.fixture(scope="module")
def page(tmp_path_factory, tiny_model_path):  # noqa: F811
    out = tmp_path_factory.mktemp("browser")
    patch = pytest.MonkeyPatch()
    patch.setattr(workers, "run_claim", _fake_run_claim)
    options = report.ReportOptions(out_dir=out, model=tiny_model_path, claims=("theorem1",),
                                   figures=("fig3", "architecture"), trials=2)
    try:
        written, _ = report.run_report(options, draw_figures=draw_for_report)
    finally:
        patch.undo()
    return written["report.html"]


def test_every_figure_loads_and_nothing_overflows(page, tmp_path):
    html = page.read_text()
    assert "<script" not in html and not re.search(r"(src|href)=['\"]https?:", html)  # one offline file
    seen = probe(html, tmp_path)
    assert seen["images"] == 2 and seen["loaded"] == 2, seen
    assert seen["scroll_width"] <= seen["window_width"], seen


def test_the_probe_catches_a_broken_image_and_an_overflow(page, tmp_path):
    """The checks can fail: a truncated image does not load, and a wide block overflows."""
    html = page.read_text()
    broken = re.sub(r"base64,[A-Za-z0-9+/=]{200}", "base64,AAAA", html, count=1)
    wide = html.replace("</body>", "<div style='width:3000px'>wide</div></body>")
    assert probe(broken, tmp_path)["loaded"] == 1
    seen = probe(wide, tmp_path)
    assert seen["scroll_width"] > seen["window_width"]


def test_screenshot(page, tmp_path):
    shot = tmp_path / "report.png"
    _chromium(tmp_path, f"--screenshot={shot}", page.as_uri())
    assert shot.stat().st_size > 10_000
    keep = page.parent / "screenshot.png"  # kept next to the report for a person to look at
    shutil.copy(shot, keep)
