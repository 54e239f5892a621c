"""results/report.html: the whole study on one self-contained page, verdicts first.

Sections, in this order, each with a stable id: the claims table (`claims`),
the figures (`figures`), the tables with their statistics (`tables`), the A/B
comparison when a baseline was given (`compare`), the runs of several
machines when results/merged/ is shown (`merged`), the run conditions and
provenance (`provenance`). The page needs nothing else: CSS inline, figures
embedded as data: URIs, no script, no external reference, so it can be mailed
or archived alone. Every text value from the results is escaped.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import claims

# What a reader needs to judge a claim; claims.csv in the archive holds every column.
CLAIMS_SHOWN = ["claim_id", "arch", "testbed", "provider", "verdict", "our_effect", "ci_low", "ci_high",
                "as_measured", "holds_within", "study_effect", "reason", "accel"]
SECTIONS = (
    ("claims", "Claims: verdicts"),
    ("figures", "Figures"),
    ("tables", "Tables"),
    ("compare", "A/B comparison"),
    ("merged", "Several machines: merged runs"),
    ("provenance", "Run conditions and provenance"),
)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EXPERIMENTS = {"blk": "Block reads", "net": "Network round trips", "overhead": "Overhead against the KVM exit floor",
               "compare": "A/B comparison"}
# Captions of what has no workflow/report/*.rst.
FALLBACK_CAPTIONS = {
    "claims_table": claims.CAPTION,
    "overhead_table": ("Per-read cost on {arch} against the floor: the smallest KVM exit round trip measured on "
                       "this machine (ns); overhead = total - pread per read."),
    "compare_table": "This run against the baseline run, per row: both values, their difference and its CI.",
    "compare_figure": "This run against the baseline run.",
}

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5em auto; max-width: 78em;
       padding: 0 1em; color: #1a1a1a; line-height: 1.4; }
h1 { font-size: 1.6em; margin-bottom: .2em; }
h2 { border-bottom: 2px solid #ccc; padding-bottom: .2em; margin-top: 1.8em; }
h3 { margin-top: 1.4em; }
nav a { margin-right: 1em; }
.meta { color: #555; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: .86em; margin: .4em 0 1em; }
caption { caption-side: bottom; text-align: left; color: #444; padding-top: .4em; max-width: 70em; }
th, td { border: 1px solid #ccc; padding: .25em .5em; vertical-align: top; }
th { background: #f2f2f2; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.word { white-space: nowrap; }
td.wide { min-width: 14em; }
td.long { min-width: 24em; }
tbody tr:nth-child(even) td { background: #fafafa; }
.verdict { font-weight: bold; white-space: nowrap; }
tbody tr td.v-reproduced, .badge.v-reproduced { background: #d4edda; color: #155724; }
tbody tr td.v-not-reproduced, .badge.v-not-reproduced { background: #f8d7da; color: #721c24; }
tbody tr td.v-inconclusive, .badge.v-inconclusive { background: #fff3cd; color: #6b4f00; }
tbody tr td.v-not-comparable, .badge.v-not-comparable { background: #e2e3e5; color: #383d41; }
.badge { display: inline-block; padding: .2em .6em; margin: 0 .4em .4em 0; border-radius: .3em; font-weight: bold; }
figure { margin: 1em 0 2em; }
figure img { max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { color: #444; max-width: 70em; }
table.kv th { width: 14em; }
pre { background: #f6f6f6; padding: .8em; overflow-x: auto; font-size: .8em; }
code { background: #f2f2f2; padding: 0 .2em; }
"""


@dataclass
class Inputs:
    """What the page shows; each figure and table is named <experiment>_<arch>.<ext> (compare.<ext> for A/B)."""

    claims: Path
    figures: list[Path]
    tables: list[Path]
    provenance: Path
    captions: dict[str, str] = field(default_factory=dict)  # file name (blk_figure.rst) -> text
    baseline: str = ""  # the compare.baseline config key; the A/B section only when set
    compare_table: Path | None = None
    compare_figure: Path | None = None
    merged: Path | None = None  # results/merged/ (the `merge` target's); the merged section only when set


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def read_captions(paths: list[Path]) -> dict[str, str]:
    return {Path(p).name: Path(p).read_text(encoding="utf-8") for p in paths}


def fmt(cell: str) -> tuple[str, bool]:
    """(text, numeric) for a CSV cell: numbers rounded to be read, everything else as written."""
    text = cell.strip()
    if re.fullmatch(r"[+-]?\d+", text):
        return text, True
    try:
        value = float(text)
    except ValueError:
        return cell, False
    if not math.isfinite(value):
        return cell, False
    if value == 0:
        return "0", True
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}", True
    if magnitude >= 1e-3:
        return f"{value:.4g}", True
    return f"{value:.3e}", True


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise ValueError(f"{path} is empty (no header)")
    return rows[0], rows[1:]


def _text_class(text: str) -> str:
    """Width of a text cell: long text gets room, so rows stay short; a single word is not broken."""
    if len(text) > 100:
        return "text long"
    if len(text) > 30:
        return "text wide"
    return "text" if " " in text else "text word"


def csv_table(path: Path, caption: str, verdict_column: str | None = None, columns: list[str] | None = None) -> str:
    """A CSV file as an HTML table, every column or those named (in that order, where present);
    the verdict column's cells classed by verdict."""
    header, rows = _read_csv(path)
    if columns:
        keep = [header.index(c) for c in columns if c in header]
        header, rows = [header[i] for i in keep], [[(r + [""] * len(header))[i] for i in keep] for r in rows]
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for name, cell in zip(header, row + [""] * (len(header) - len(row)), strict=False):
            if verdict_column and name == verdict_column:
                cells.append(f'<td class="verdict v-{slug(cell)}">{esc(cell)}</td>')
                continue
            text, numeric = fmt(cell)
            cells.append(f'<td class="{"num" if numeric else _text_class(text)}">{esc(text)}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    if not rows:
        body.append(f'<tr><td colspan="{len(header)}">(no rows)</td></tr>')
    return (f'<div class="scroll"><table data-source="{esc(path.name)}"><caption>{caption}</caption>'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>")


def rst_caption(text: str, wildcards: dict[str, str]) -> str:
    """A workflow/report caption as HTML: its Jinja wildcards filled in, ``literals`` as <code>."""
    def wildcard(m: re.Match[str]) -> str:
        return wildcards.get(m.group(1), m.group(0))

    filled = re.sub(r"\{\{\s*snakemake\.wildcards\.(\w+)\s*\}\}", wildcard, text)
    escaped = esc(" ".join(filled.split()))
    return re.sub(r"``(.+?)``", r"<code>\1</code>", escaped)


def _stem_parts(path: Path) -> tuple[str, str]:
    """(experiment, arch) of blk_x86_64.png; (compare, "") of compare.png."""
    experiment, _, arch = path.stem.partition("_")
    return experiment, arch


def caption_for(path: Path, kind: str, captions: dict[str, str]) -> str:
    experiment, arch = _stem_parts(path)
    name = f"{experiment}_{kind}"
    if f"{name}.rst" in captions:
        return rst_caption(captions[f"{name}.rst"], {"arch": arch})
    if name in FALLBACK_CAPTIONS:
        return esc(FALLBACK_CAPTIONS[name].format(arch=arch))
    return esc(f"{EXPERIMENTS.get(experiment, experiment)} on {arch}." if arch else path.name)


def png_data_uri(path: Path) -> str:
    data = path.read_bytes()
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError(f"{path} is not a PNG image")
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def figure(path: Path, captions: dict[str, str]) -> str:
    experiment, arch = _stem_parts(path)
    title = EXPERIMENTS.get(experiment, experiment) + (f" on {arch}" if arch else "")
    return (f'<figure id="fig-{slug(path.stem)}"><img src="{png_data_uri(path)}" '
            f'alt="{esc(f"Figure: {title} ({path.name})")}">'
            f"<figcaption><strong>{esc(path.name)}.</strong> {caption_for(path, 'figure', captions)}"
            "</figcaption></figure>")


def table(path: Path, captions: dict[str, str]) -> str:
    experiment, arch = _stem_parts(path)
    title = EXPERIMENTS.get(experiment, experiment) + (f" on {arch}" if arch else "")
    return (f'<h3 id="table-{slug(path.stem)}">{esc(title)} <small>({esc(path.name)})</small></h3>'
            + csv_table(path, caption_for(path, "table", captions)))


def verdict_summary(path: Path) -> str:
    header, rows = _read_csv(path)
    if "verdict" not in header:
        return ""
    at = header.index("verdict")
    counts = Counter(row[at] for row in rows if len(row) > at)
    order = [v for v in claims.VERDICTS if v in counts] + sorted(set(counts) - set(claims.VERDICTS))
    badges = "".join(f'<span class="badge v-{slug(v)}">{esc(v)}: {counts[v]}</span>' for v in order)
    return f'<p class="summary">{badges or "no claim was evaluated"}</p>'


def _scalar(value: object) -> str:
    return esc(value if isinstance(value, str) else json.dumps(value))


def value_html(value: Any) -> str:
    """A provenance value: mappings as key/value tables, lists of mappings as tables, the rest as text."""
    if isinstance(value, dict):
        if not value:
            return "(none)"
        rows = "".join(f"<tr><th>{esc(k)}</th><td>{value_html(v)}</td></tr>" for k, v in value.items())
        return f'<table class="kv"><tbody>{rows}</tbody></table>'
    if isinstance(value, list):
        if value and all(isinstance(v, dict) for v in value):
            columns = list(dict.fromkeys(k for v in value for k in v))
            head = "".join(f"<th>{esc(c)}</th>" for c in columns)
            body = "".join("<tr>" + "".join(f"<td>{value_html(v.get(c, ''))}</td>" for c in columns) + "</tr>"
                           for v in value)
            return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'
        return ", ".join(value_html(v) for v in value) or "(none)"
    return _scalar(value)


def _md_caption(md: Path, fallback: str) -> str:
    """The caption a merged table's .md starts with (its first paragraph), as HTML."""
    if md.is_file():
        first = md.read_text(encoding="utf-8").split("\n\n", 1)[0].strip()
        if first and not first.startswith("|"):
            return esc(" ".join(first.split()))
    return esc(fallback)


MERGED_FIGURE_CAPTION = ("{title}: a panel per merged run (its native rows; its emulated-testbed rows apart, and "
                         "hatched rows, are not performance results), 95% CI on ours, beside the original study.")


def merged_section(directory: Path) -> str:
    """results/merged/: who measured (hosts), the claims per run, the figures and tables of every run."""
    parts = ["<p>The runs of several machines, side by side: <code>results/merged/</code> (target "
             "<code>merge</code>, from <code>merge.artifacts</code>).</p>"]
    hosts = directory / "hosts.csv"
    if hosts.is_file():
        parts.append('<h3 id="merged-hosts">Merged runs <small>(hosts.csv)</small></h3>'
                     + csv_table(hosts, _md_caption(hosts.with_suffix(".md"), "The merged runs.")))
    claims_csv = directory / "tables" / "claims.csv"
    if claims_csv.is_file():
        parts.append('<h3 id="merged-claims">Claims per run <small>(claims.csv)</small></h3>'
                     + verdict_summary(claims_csv)
                     + csv_table(claims_csv, _md_caption(claims_csv.with_suffix(".md"), "The claims per run."),
                                 "verdict", ["host", "mismatch", *CLAIMS_SHOWN]))
    for png in sorted((directory / "figures").glob("*.png")):
        experiment, arch = _stem_parts(png)
        title = EXPERIMENTS.get(experiment, experiment) + (f" on {arch}" if arch else "")
        parts.append(f'<figure id="fig-merged-{slug(png.stem)}"><img src="{png_data_uri(png)}" '
                     f'alt="{esc(f"Figure: {title}, merged runs (merged/{png.name})")}">'
                     f"<figcaption><strong>merged/{esc(png.name)}.</strong> "
                     f"{esc(MERGED_FIGURE_CAPTION.format(title=title))}</figcaption></figure>")
    for csv_path in sorted((directory / "tables").glob("*_*.csv")):
        experiment, arch = _stem_parts(csv_path)
        title = EXPERIMENTS.get(experiment, experiment) + (f" on {arch}" if arch else "")
        parts.append(f'<h3 id="table-merged-{slug(csv_path.stem)}">{esc(title)}, merged runs '
                     f"<small>(merged/{esc(csv_path.name)})</small></h3>"
                     + csv_table(csv_path, _md_caption(csv_path.with_suffix(".md"), f"{title}, merged runs.")))
    return "".join(parts)


# Provenance keys by subsection; keys not named here follow under "Other".
RUN_CONDITIONS = ("pipeline", "host", "guest_accel", "plan")
PROVENANCE_KEYS = ("tools", "sources", "config")


def provenance_section(record: dict[str, Any]) -> str:
    parts = []
    for title, keys in (("Run conditions", RUN_CONDITIONS), ("Provenance", PROVENANCE_KEYS),
                        ("Other", tuple(k for k in record if k not in RUN_CONDITIONS + PROVENANCE_KEYS))):
        present = [k for k in keys if k in record]
        if not present:
            continue
        parts.append(f"<h3>{esc(title)}</h3>")
        parts += [f'<h4 id="prov-{slug(k)}">{esc(k)}</h4>{value_html(record[k])}' for k in present]
    full = json.dumps(record, indent=2, sort_keys=True, default=str)
    parts.append(f"<details><summary>provenance.json (the full record)</summary><pre>{esc(full)}</pre></details>")
    return "".join(parts)


def _pipeline_label(record: dict[str, Any]) -> str:
    pipeline = record.get("pipeline")
    if not isinstance(pipeline, dict) or "commit" not in pipeline:
        return "unknown"
    text = str(pipeline["commit"])[:12]
    if pipeline.get("dirty"):
        text += f"+dirty.{(pipeline.get('diff_sha256') or 'untracked')[:8]}"
    return text


def render(inputs: Inputs) -> str:
    """The page as one string."""
    record = json.loads(inputs.provenance.read_text(encoding="utf-8"))
    if inputs.baseline and not (inputs.compare_table and inputs.compare_figure):
        raise ValueError(f"compare.baseline is {inputs.baseline!r} but the comparison table or figure is missing")
    if inputs.merged is not None and not inputs.merged.is_dir():
        raise ValueError(f"the merged runs {inputs.merged} are missing (run the `merge` target)")
    shown = {"compare": bool(inputs.baseline), "merged": inputs.merged is not None}
    show = [(sid, title) for sid, title in SECTIONS if shown.get(sid, True)]
    bodies = {
        "claims": verdict_summary(inputs.claims)
        + csv_table(inputs.claims, caption_for(inputs.claims, "table", inputs.captions), "verdict",
                    CLAIMS_SHOWN),
        "figures": "".join(figure(p, inputs.captions) for p in inputs.figures) or "<p>(no figures)</p>",
        "tables": "".join(table(p, inputs.captions) for p in inputs.tables) or "<p>(no tables)</p>",
        "provenance": provenance_section(record),
    }
    if inputs.baseline:
        assert inputs.compare_table and inputs.compare_figure
        bodies["compare"] = (f"<p>This run against the baseline <code>{esc(inputs.baseline)}</code>.</p>"
                             + figure(inputs.compare_figure, inputs.captions)
                             + csv_table(inputs.compare_table,
                                         caption_for(inputs.compare_table, "table", inputs.captions)))
    if inputs.merged is not None:
        bodies["merged"] = merged_section(inputs.merged)
    config = record.get("config", {}) if isinstance(record.get("config"), dict) else {}
    archs = ", ".join(map(str, config.get("archs", []))) or "?"
    nav = " ".join(f'<a href="#{sid}">{esc(title)}</a>' for sid, title in show)
    sections = "\n".join(f'<section id="{sid}"><h2>{esc(title)}</h2>{bodies[sid]}</section>' for sid, title in show)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>Unikernel I/O study: reproduction report</title>"
        f"<style>{CSS}</style></head><body>"
        "<header><h1>Unikernel I/O study: reproduction report</h1>"
        f'<p class="meta">Pipeline {esc(_pipeline_label(record))}; archs {esc(archs)}. '
        "Timings under emulation (TCG, the emulated testbed) or a software-assisted KVM show that the "
        "pipeline works; they are not performance results.</p>"
        f"<nav>{nav}</nav></header>\n<main>\n{sections}\n</main></body></html>\n"
    )


def write(inputs: Inputs, out: Path) -> None:
    tmp = out.with_name(out.name + ".part")
    tmp.write_text(render(inputs), encoding="utf-8")
    tmp.replace(out)
