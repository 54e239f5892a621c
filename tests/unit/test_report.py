"""results/report.html from a small fake results tree: order, embedded figures, escaping, no external reference."""

import base64
import csv
import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from unikio import report  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
EVIL = '<script>alert("x")</script><img src="http://evil.example/x.png">'


class Page(HTMLParser):
    """What a test needs of the page: section ids in order, images, every src/href, text per section."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.images: list[dict[str, str | None]] = []
        self.refs: list[str] = []
        self.tags: list[str] = []
        self.verdict_cells: list[tuple[str, str]] = []
        self._verdict_class: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if tag == "section":
            self.sections.append(a["id"] or "")
        if tag == "img":
            self.images.append(a)
        self.refs += [v or "" for k, v in attrs if k in ("src", "href", "srcset", "poster", "data", "action")]
        if tag == "td" and "verdict" in (a.get("class") or "").split():
            self._verdict_class = a["class"]

    def handle_data(self, data):
        if self._verdict_class is not None:
            self.verdict_cells.append((self._verdict_class, data))
            self._verdict_class = None


def parse(text: str) -> Page:
    page = Page()
    page.feed(text)
    return page


def png(path: Path, label: str) -> Path:
    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.bar([label], [1.0])
    fig.savefig(path, dpi=50)
    plt.close(fig)
    return path


def fake_results(root: Path, claims_rows: list[dict[str, str]] | None = None, evil: str = EVIL) -> report.Inputs:
    tables, figures = root / "tables", root / "figures"
    tables.mkdir(parents=True)
    figures.mkdir()
    claims_rows = claims_rows if claims_rows is not None else [
        {"claim_id": "net-unikernel-more-pps", "sentence": "solo5-hvt answers more pings.", "arch": "x86_64",
         "testbed": "native", "accel": "kvm", "verdict": "reproduced", "reason": "", "our_effect": "1.41234567",
         "ci_low": "1.3", "ci_high": "1.5", "study_effect": "1.302-1.403"},
        {"claim_id": "blk-pread-same", "sentence": "x", "arch": "x86_64", "testbed": "native", "accel": "tcg",
         "verdict": "not comparable", "reason": evil, "our_effect": "", "ci_low": "", "ci_high": "",
         "study_effect": "0.9-1.1"},
        {"claim_id": "blk-x", "sentence": "x", "arch": "aarch64", "testbed": "emulated", "accel": "kvm",
         "verdict": "not reproduced", "reason": "CI outside", "our_effect": "0.5", "ci_low": "0.4", "ci_high": "0.6",
         "study_effect": "2"},
        {"claim_id": "blk-y", "sentence": "y", "arch": "aarch64", "testbed": "emulated", "accel": "kvm",
         "verdict": "inconclusive", "reason": "CI crosses 1", "our_effect": "1", "ci_low": "0.5", "ci_high": "1.5",
         "study_effect": "2"},
    ]
    with open(tables / "claims.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(claims_rows[0]) if claims_rows else ["claim_id", "verdict"])
        writer.writeheader()
        writer.writerows(claims_rows)
    (tables / "blk_x86_64.csv").write_text(
        "platform,accel,testbed,runs,total_ms,cv_total,note\n"
        "host,none,native,3,38.82701433333333,0.19168101190322637,\n"
        "qemu-linux-smp,tcg,native,3,23633.972458666667,0.0000123,emulated: not a performance result\n")
    (tables / "net_x86_64.csv").write_text("platform,data_bytes,pps\nqemu-linux,1,4906.969999999999\n")
    (tables / "overhead_x86_64.csv").write_text("platform,exit_floor_ns\nsolo5-hvt (builtin),10155.1282\n")
    (tables / "compare.csv").write_text("platform,this,baseline,diff\nhost,1.0,1.1,-0.1\n")
    figs = [png(figures / "blk_x86_64.png", "blk"), png(figures / "net_x86_64.png", "net")]
    png(figures / "compare.png", "ab")
    provenance = root / "provenance.json"
    provenance.write_text(json.dumps({
        "pipeline": {"commit": "a" * 40, "dirty": False, "diff_sha256": "", "untracked": []},
        "host": {"arch": "x86_64", "cores": 2, "kvm_impl": "kvm_pvm", "cpu_model": "Fake <CPU> & co"},
        "plan": [{"combination": "blk/x86_64/host", "runnable": True, "testbed": "native", "reason": ""}],
        "tools": {"python": "3.11"},
        "config": {"archs": ["x86_64"]},
    }))
    return report.Inputs(
        claims=tables / "claims.csv", figures=figs,
        tables=[tables / "blk_x86_64.csv", tables / "net_x86_64.csv", tables / "overhead_x86_64.csv"],
        provenance=provenance,
        captions=report.read_captions(sorted((REPO / "workflow/report").glob("*.rst"))),
        compare_table=tables / "compare.csv", compare_figure=figures / "compare.png",
    )


def test_sections_come_in_order_claims_first_and_compare_only_with_a_baseline(tmp_path):
    inputs = fake_results(tmp_path)
    page = parse(report.render(inputs))
    assert page.sections == ["claims", "figures", "tables", "provenance"]
    inputs.baseline = "run-2026-11-01"
    text = report.render(inputs)
    assert parse(text).sections == ["claims", "figures", "tables", "compare", "provenance"]
    assert "run-2026-11-01" in text


def test_a_baseline_without_its_comparison_is_an_error(tmp_path):
    inputs = fake_results(tmp_path)
    inputs.baseline, inputs.compare_table = "old", None
    with pytest.raises(ValueError, match="compare.baseline is 'old'"):
        report.render(inputs)


def test_every_figure_is_embedded_as_a_png_with_alt_text(tmp_path):
    from PIL import Image

    inputs = fake_results(tmp_path)
    inputs.baseline = "old"
    page = parse(report.render(inputs))
    assert len(page.images) == len(inputs.figures) + 1  # + the A/B figure
    for img, path in zip(page.images, [*inputs.figures, inputs.compare_figure], strict=True):
        src = img["src"] or ""
        assert src.startswith("data:image/png;base64,")
        data = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert data == path.read_bytes() and data.startswith(b"\x89PNG\r\n\x1a\n")
        with Image.open(io.BytesIO(data)) as im:
            assert im.size[0] > 0 and im.size[1] > 0
        assert path.name in (img["alt"] or "")


def test_cell_values_are_escaped(tmp_path):
    text = report.render(fake_results(tmp_path))
    page = parse(text)
    assert "<script" not in text and "script" not in page.tags
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in text
    assert "Fake &lt;CPU&gt; &amp; co" in text  # provenance values too
    assert not any("evil" in ref for ref in page.refs)


def test_no_external_reference(tmp_path):
    inputs = fake_results(tmp_path, evil="harmless")
    inputs.baseline = "old"
    text = report.render(inputs)
    for bad in ("http://", "https://", 'src="/', "src='/", "<link", "<script", "@import", "url("):
        assert bad not in text, bad
    assert all(ref.startswith(("data:image/png;base64,", "#")) for ref in parse(text).refs)


def test_verdicts_are_marked_per_verdict_and_counted(tmp_path):
    text = report.render(fake_results(tmp_path))
    cells = dict((data, cls) for cls, data in parse(text).verdict_cells)
    assert cells == {"reproduced": "verdict v-reproduced", "not comparable": "verdict v-not-comparable",
                     "not reproduced": "verdict v-not-reproduced", "inconclusive": "verdict v-inconclusive"}
    for v in ("reproduced", "not-reproduced", "inconclusive", "not-comparable"):
        assert re.search(rf"\.v-{v}\b[^{{]*\{{[^}}]*background", report.CSS), v  # each verdict has its colour
    summary = text.split('<p class="summary">', 1)[1].split("</p>", 1)[0]
    assert "reproduced: 1" in summary and "not comparable: 1" in summary
    assert text.index('class="summary"') < text.index('id="figures"')


def test_tables_show_every_column_with_readable_numbers(tmp_path):
    text = report.render(fake_results(tmp_path))
    for column in ("platform", "accel", "testbed", "runs", "total_ms", "cv_total", "note", "exit_floor_ns", "pps"):
        assert f"<th>{column}</th>" in text
    for shown in (">38.83<", ">23,634<", ">0.1917<", ">1.230e-05<", ">4,907<", ">10,155<", ">1.412<"):
        assert shown in text, shown
    assert "Block experiment on x86_64" in text  # the caption from workflow/report, wildcard filled in
    assert "snakemake.wildcards" not in text


@pytest.mark.parametrize("cell,shown", [("3", "3"), ("0.0", "0"), ("-0.1", "-0.1"), ("1e-9", "1.000e-09"),
                                        ("nan", "nan"), ("", ""), ("kvm", "kvm"), ("123456.7", "123,457")])
def test_number_formatting(cell, shown):
    assert report.fmt(cell)[0] == shown


def test_a_figure_that_is_not_a_png_is_refused(tmp_path):
    inputs = fake_results(tmp_path)
    inputs.figures[0].write_bytes(b"not a png")
    with pytest.raises(ValueError, match="blk_x86_64.png is not a PNG image"):
        report.render(inputs)


def test_write_is_atomic(tmp_path):
    inputs = fake_results(tmp_path)
    out = tmp_path / "report.html"
    report.write(inputs, out)
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert not (tmp_path / "report.html.part").exists()


def test_a_claims_table_without_rows_still_makes_a_page(tmp_path):
    text = report.render(fake_results(tmp_path, claims_rows=[]))
    assert "no claim was evaluated" in text and "(no rows)" in text
    assert parse(text).sections[0] == "claims"
