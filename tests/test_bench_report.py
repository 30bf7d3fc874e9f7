"""The ``--report`` page in a real headless browser: every image loads, every link has its target.

Skipped where no Chromium is installed."""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

CHECK = """<script>
window.addEventListener('load', function () {
  var broken = [];
  for (var i = 0; i < document.images.length; i++) {
    var img = document.images[i];
    if (!(img.complete && img.naturalWidth > 0)) broken.push(img.getAttribute('src'));
  }
  var links = document.querySelectorAll('a[href^="#"]');
  for (var j = 0; j < links.length; j++) {
    if (!document.getElementById(links[j].getAttribute('href').slice(1))) broken.push(links[j].getAttribute('href'));
  }
  document.body.setAttribute('data-links', String(links.length));
  document.body.setAttribute('data-images', String(document.images.length));
  document.body.setAttribute('data-broken', JSON.stringify(broken));
});
</script></body>"""


def _have_matplotlib():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _browser():
    return next((path for path in map(shutil.which, BROWSERS) if path), None)


@pytest.mark.skipif(_browser() is None, reason="no headless Chromium installed (Debian: apt-get install chromium)")
def test_report_renders_in_headless_chromium_with_every_image(tmp_path):
    report = tmp_path / "report"
    proc = subprocess.run([sys.executable, "-m", "lowlat", "bench", "--quick", "--only", "layout", "msgqueues",
                           "--report", str(report)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    page = (report / "index.html").read_text()
    # The same page with a probe that records, once loaded, which images failed; beside the original
    # so relative links resolve the same way.
    (report / "probe.html").write_text(page.replace("</body>", CHECK))
    dom = subprocess.run([_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files",
                          "--virtual-time-budget=10000", "--dump-dom", (report / "probe.html").as_uri()],
                         capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": str(tmp_path)})
    assert dom.returncode == 0, dom.stderr[-2000:]
    count = re.search(r'data-images="(\d+)"', dom.stdout)
    broken = re.search(r'data-broken="([^"]*)"', dom.stdout)
    assert count and broken, dom.stdout[-2000:]
    assert int(count.group(1)) == len(re.findall(r"<img ", page))
    if _have_matplotlib():
        assert int(count.group(1)) > 0
    links = re.search(r'data-links="(\d+)"', dom.stdout)
    assert links and int(links.group(1)) == 2  # the table of contents: one link per section
    assert json.loads(broken.group(1).replace("&quot;", '"')) == []
