"""results/report.html from the smoke run, opened in a real headless browser (Debian's chromium).

The `report` target renders the page from the session's smoke run; chromium
(headless, --no-sandbox as root) then loads it from disk, as a reader would:

- the DOM chromium built (--dump-dom): the sections in their order, the
  claims table with one verdict in every row, one <img> per figure of
  results/figures holding exactly that file;
- the same page with a probe script appended (the report itself has no
  script), which on the load event records for every <img> whether the
  browser decoded it (complete, naturalWidth/Height > 0) and where it was laid
  out, and where each section and the verdict summary are: sections in order
  and visible, the verdicts on the first screen;
- a screenshot of the page copied alone to an empty directory (as mailed):
  each figure's box holds that figure's pixels (the PNG, decoded by Python,
  scaled to the box), not a broken-image icon or a blank box.

Then the same with compare.baseline set (on a copy of the run, against the
run itself): the A/B section between the tables and the provenance, its
figure among the others; and the report inside `archive`.
"""

import base64
import html
import io
import json
import re
import shutil
import subprocess
import tarfile
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageStat
from testkit import planned_jobs, snakemake

CHROMIUM = shutil.which("chromium")
pytestmark = [pytest.mark.e2e, pytest.mark.skipif(CHROMIUM is None, reason=(
    "chromium is missing: `make setup` installs it (envs/debian/test.txt)"))]
WIDTH, FIRST_SCREEN = 1280, 900
SECTIONS = ["claims", "figures", "tables", "provenance"]
SECTIONS_AB = ["claims", "figures", "tables", "compare", "provenance"]  # with compare.baseline
VERDICTS = {"reproduced", "not reproduced", "inconclusive", "not comparable"}
MAX_SCREENSHOT = 16000  # px; the figures come second, well above this

PROBE = """<script>
window.addEventListener("load", () => {
  const box = (el) => {
    const r = el.getBoundingClientRect();
    return {x: r.left + scrollX, y: r.top + scrollY, width: r.width, height: r.height};
  };
  const result = {
    scrollHeight: document.documentElement.scrollHeight,
    images: [...document.images].map((img) => {
      const b = box(img);  // the border box; content: inside the border (the image has no padding)
      const content = {x: b.x + img.clientLeft, y: b.y + img.clientTop, width: img.clientWidth,
                       height: img.clientHeight};
      return {alt: img.alt, complete: img.complete, naturalWidth: img.naturalWidth,
              naturalHeight: img.naturalHeight, box: b, content: content};
    }),
    sections: [...document.querySelectorAll("section")].map((s) => ({id: s.id, box: box(s)})),
    summary: [...document.querySelectorAll("#claims .summary .badge")].map((b) => box(b)),
  };
  const out = document.createElement("pre");
  out.id = "probe-result";
  out.textContent = JSON.stringify(result);
  document.body.appendChild(out);
});
</script>"""


def browser(profile: Path, *args: str) -> tuple[subprocess.CompletedProcess, float]:
    """chromium headless as root (no sandbox), a throwaway profile; (process, seconds)."""
    start = time.monotonic()
    proc = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--force-device-scale-factor=1", f"--user-data-dir={profile}", "--no-first-run",
                           *args], capture_output=True, text=True, timeout=180)
    return proc, time.monotonic() - start


class Dom(HTMLParser):
    """Sections in order, images, and the claims table's rows as chromium serialised them."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.images: list[dict[str, str | None]] = []
        self.claims_rows: list[list[tuple[str, str]]] = []  # (class, text) per cell
        self._in_claims_body = False
        self._cell: list[str] | None = None
        self._cell_class = ""

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section":
            self.sections.append(a.get("id") or "")
            self._in_claims_body = False
        elif tag == "img":
            self.images.append(a)
        elif tag == "tbody" and self.sections[-1:] == ["claims"]:
            self._in_claims_body = True
        elif tag == "tr" and self._in_claims_body:
            self.claims_rows.append([])
        elif tag == "td" and self._in_claims_body:
            self._cell, self._cell_class = [], a.get("class") or ""

    def handle_endtag(self, tag):
        if tag == "tbody":
            self._in_claims_body = False
        elif tag == "td" and self._cell is not None:
            self.claims_rows[-1].append((self._cell_class, "".join(self._cell)))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


@pytest.fixture(scope="module")
def project(smoke_project):
    return smoke_project


@pytest.fixture(scope="module")
def page(project):
    start = time.monotonic()
    proc = snakemake(project, "report")
    print(f"\nreport target (./snakemake report after the smoke run): {time.monotonic() - start:.1f} s")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert planned_jobs(proc.stdout + proc.stderr) == {"report": 1}, proc.stdout[-2000:]
    out = project / "results/report.html"
    print(f"results/report.html: {out.stat().st_size / 1024:.0f} KiB")
    return out


def expected_figures(project: Path) -> list[str]:
    return sorted(p.name for p in (project / "results/figures").glob("*.png"))


def test_a_second_report_run_has_nothing_to_do(project, page):
    proc = snakemake(project, "-n", "report")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert planned_jobs(proc.stdout + proc.stderr) == {}


def test_the_page_needs_nothing_but_itself(page):
    text = page.read_text(encoding="utf-8")
    refs = re.findall(r"""\b(?:src|href|srcset|poster|action)\s*=\s*["']([^"']*)""", text)
    assert refs and all(r.startswith(("data:image/png;base64,", "#")) for r in refs), \
        [r[:60] for r in refs if not r.startswith(("data:", "#"))]
    assert not re.search(r"<(?:script|link|iframe|object|embed)\b|@import|url\(", text)


def dump_dom(page: Path, profile: Path) -> Dom:
    proc, seconds = browser(profile, f"--window-size={WIDTH},{FIRST_SCREEN}", "--dump-dom", page.as_uri())
    print(f"\nchromium --dump-dom {page.name}: {seconds:.1f} s")
    assert proc.returncode == 0 and "</html>" in proc.stdout, proc.stderr[-2000:]
    dom = Dom()
    dom.feed(proc.stdout)
    return dom


def check_dom(dom: Dom, project: Path, sections: list[str]) -> None:
    """Sections in order, a verdict in every claims row, one <img> holding each PNG of results/figures."""
    assert dom.sections == sections
    assert dom.claims_rows, "the claims table has no rows"
    for row in dom.claims_rows:
        verdicts = [(cls, text) for cls, text in row if "verdict" in cls.split()]
        assert len(verdicts) == 1, row
        cls, text = verdicts[0]
        assert text in VERDICTS and f"v-{text.replace(' ', '-')}" in cls.split(), row
    figures = expected_figures(project)
    assert figures  # blk_<arch>.png for every arch, net_<arch>.png (and compare.png with a baseline)
    assert len(dom.images) == len(figures)
    for name in figures:
        shown = [img for img in dom.images if name in (img.get("alt") or "")]
        assert len(shown) == 1, (name, [img.get("alt") for img in dom.images])
        src = shown[0].get("src") or ""
        assert src.startswith("data:image/png;base64,"), name
        assert base64.b64decode(src.split(",", 1)[1]) == (project / "results/figures" / name).read_bytes(), name


def lay_out(page: Path, tmp: Path) -> dict:
    """What chromium decoded and laid out: the page with the probe script appended, its result read back."""
    probe = tmp / "probe.html"
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
    proc, seconds = browser(tmp / "profile", f"--window-size={WIDTH},{FIRST_SCREEN}", "--dump-dom", probe.as_uri())
    print(f"chromium --dump-dom with the probe: {seconds:.1f} s")
    assert proc.returncode == 0, proc.stderr[-2000:]
    m = re.search(r'<pre id="probe-result">(.*?)</pre>', proc.stdout, re.S)
    assert m, "the probe did not run: " + proc.stdout[-1000:]
    return json.loads(html.unescape(m.group(1)))


def check_layout(laid_out: dict, project: Path, sections: list[str]) -> None:
    """Sections in order and visible, the verdicts on the first screen, every figure decoded and sized."""
    boxes = laid_out["sections"]
    assert [s["id"] for s in boxes] == sections
    tops = [s["box"]["y"] for s in boxes]
    assert tops == sorted(tops) and all(s["box"]["height"] > 0 for s in boxes), boxes
    # What a reader sees first: the verdicts, not a workflow graph.
    assert boxes[0]["box"]["y"] < FIRST_SCREEN / 2
    assert laid_out["summary"] and all(b["y"] + b["height"] <= FIRST_SCREEN for b in laid_out["summary"])
    images = laid_out["images"]
    assert len(images) == len(expected_figures(project))
    for img in images:
        assert img["complete"] and img["naturalWidth"] > 0 and img["naturalHeight"] > 0, img  # decoded
        assert img["box"]["width"] > 100 and img["box"]["height"] > 50, img  # laid out at a readable size


def check_painted(page: Path, laid_out: dict, tmp: Path) -> None:
    """A screenshot of the page copied alone (as mailed): each figure's box shows that figure."""
    alone = tmp / "mailed" / "report.html"
    alone.parent.mkdir()
    shutil.copyfile(page, alone)
    images = laid_out["images"]
    height = min(laid_out["scrollHeight"], MAX_SCREENSHOT)
    assert all(img["box"]["y"] + img["box"]["height"] <= height for img in images), "figures below the screenshot"
    shot = tmp / "page.png"
    proc, seconds = browser(tmp / "profile", f"--window-size={WIDTH},{height}", f"--screenshot={shot}",
                            alone.as_uri())
    print(f"chromium --screenshot ({WIDTH}x{height}): {seconds:.1f} s")
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    sources = dict(embedded_pngs(page))
    with Image.open(shot) as screen:
        screen = screen.convert("RGB")
        assert len(screen.getcolors(maxcolors=1 << 16) or range(1 << 16)) > 16, "the screenshot is blank"
        for img in images:
            name = img["alt"]
            painted, expected = same_pixels(screen, img["content"], sources[name])
            difference = ImageStat.Stat(ImageChops.difference(painted, expected)).mean
            colours = len(painted.getcolors(maxcolors=1 << 16) or range(1 << 16))
            print(f"  {name}: painted {painted.size[0]}x{painted.size[1]}, {colours} colours, "
                  f"mean difference from the PNG {max(difference):.1f}/255")
            assert colours > 8, f"{name}: its box is blank"
            assert max(difference) < 8, f"{name}: its box does not show the figure"


def test_rendered_dom_has_the_sections_in_order_the_claims_and_every_figure(project, page, tmp_path):
    check_dom(dump_dom(page, tmp_path / "profile"), project, SECTIONS)


def test_every_figure_is_decoded_and_painted_and_the_verdicts_come_first(project, page, tmp_path):
    laid_out = lay_out(page, tmp_path)
    check_layout(laid_out, project, SECTIONS)
    check_painted(page, laid_out, tmp_path)


def test_with_a_baseline_the_comparison_comes_before_the_provenance(project, page, tmp_path_factory):
    """On a copy of the smoke run (the shared one stays as it is), with that run itself as the baseline."""
    copy = tmp_path_factory.mktemp("report-ab") / "project"
    start = time.monotonic()
    subprocess.run(["cp", "-a", str(project), str(copy)], check=True)
    print(f"\ncopy of the smoke run: {time.monotonic() - start:.1f} s")
    start = time.monotonic()
    proc = snakemake(copy, "report", overrides=f"compare: {{baseline: {json.dumps(str(project))}}}\n")
    print(f"report target with compare.baseline: {time.monotonic() - start:.1f} s")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # provenance too: it records the config, which now names the baseline.
    assert planned_jobs(proc.stdout + proc.stderr) == {"compare_table": 1, "compare_figure": 1, "provenance": 1,
                                                       "report": 1}
    with_ab = copy / "results/report.html"
    assert "compare.png" in expected_figures(copy)
    tmp = tmp_path_factory.mktemp("browser-ab")
    check_dom(dump_dom(with_ab, tmp / "profile"), copy, SECTIONS_AB)
    laid_out = lay_out(with_ab, tmp)
    check_layout(laid_out, copy, SECTIONS_AB)
    check_painted(with_ab, laid_out, tmp)


def same_pixels(screen: Image.Image, box: dict[str, float], source: Image.Image, margin: int = 2):
    """(what the screen shows in the box, the source scaled to the box), both a margin off the edges."""
    left, top = round(box["x"]), round(box["y"])
    right, bottom = round(box["x"] + box["width"]), round(box["y"] + box["height"])
    painted = screen.crop((left, top, right, bottom))
    expected = source.resize(painted.size, Image.Resampling.LANCZOS)
    inside = (margin, margin, painted.size[0] - margin, painted.size[1] - margin)
    return painted.crop(inside), expected.crop(inside)


def embedded_pngs(page: Path):
    """(alt text, image) of each <img> data: URI in the page's source, decoded by Python."""
    text = page.read_text(encoding="utf-8")
    for src, alt in re.findall(r'<img src="data:image/png;base64,([^"]+)" alt="([^"]*)"', text):
        data = base64.b64decode(src, validate=True)
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
        with Image.open(io.BytesIO(data)) as im:
            try:
                im.load()
            except OSError as e:
                pytest.fail(f"{html.unescape(alt)}: not a whole PNG: {e}")
            # On white, as the browser shows a transparent PNG.
            flat = Image.new("RGB", im.size, "white")
            flat.paste(im.convert("RGBA"), mask=im.convert("RGBA"))
            yield html.unescape(alt), flat


def test_the_archive_carries_the_report(project, page):
    proc = snakemake(project, "archive")
    assert proc.returncode == 0, proc.stderr[-3000:]
    with tarfile.open(project / "results/artifact.tar.gz") as tar:
        member = tar.extractfile("unikio-artifact/results/report.html")
        assert member is not None and member.read() == page.read_bytes()
