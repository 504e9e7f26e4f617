"""Rendering a verification report: Markdown and a self-contained HTML page, and the environment.

Pure formatting: it takes claim results (`verification.sweep.ClaimResult`), the model's
training metrics, figure files and the environment, and returns strings. Figures are
embedded in the HTML as base64 PNGs, so the page is one file.
"""

from __future__ import annotations

import base64
import html
import os
import platform
import re
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from attnverify.verification.report.sections import (
    HEADER,
    claim_row,
    claim_sections,
    model_used,
    summary_lines,
)
from attnverify.verification.sweep import ClaimResult

PACKAGES = ("attnverify", "jax", "jaxlib", "sympy", "numpy", "scipy", "optax", "matplotlib", "tqdm")


#: How to read the claims tables (both formats).
CLAIMS_LEGEND = ("Identity claims: maximum error against a tolerance. Every-draw checks: a statistic of all draws "
                 "(max |z|, max (lhs - rhs)) against its threshold, rounding only. Statistical claims: the statistic "
                 "against its threshold (≥ above, ≤ below) and its estimate with the one-sided confidence bound that "
                 "decides it (docs/theory.md §11). Provenance: where the expectation comes from.")


#: What the claims run on, said beside the model the figures explain (a reader took a claim's
#: "this model" for the given one).
CLAIMS_MODELS = ("The claims do not read this model: each is swept over random models of the claims' spec, or over "
                 "small models it trains on its own synthetic task (needle, bag-of-words, planted: docs/related.md). "
                 "The figures of the paper's sentences explain this model.")


@dataclass
class ReportContent:
    """Everything a report shows. ``errors`` are claims or figures that could not run."""

    title: str
    results: list[ClaimResult]
    claims: dict[str, dict]  # id -> {group, source, tolerance_reason}
    model: dict  # model file path, spec, training metrics (may be empty)
    figures: dict[str, Path]  # name -> PNG
    figure_notes: dict[str, dict | str]  # name -> {title, caption, takeaway, paper} (or one line)
    environment: dict[str, str]
    errors: list[str] = field(default_factory=list)


def environment(*, seed: int, dtypes: tuple[str, ...], spec_json: str) -> dict[str, str]:
    """Versions, platform, device and run settings, as strings."""
    import jax

    env = {"python": sys.version.split()[0], "platform": platform.platform(),
           "cpu_count": str(os.cpu_count())}
    for name in PACKAGES:
        try:
            env[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            env[name] = "not installed"
    env.update(device=", ".join(str(d) for d in jax.devices()), jax_backend=jax.default_backend(),
               jax_enable_x64=str(bool(jax.config.jax_enable_x64)), dtypes=", ".join(dtypes),
               seed=str(seed), claims_spec=spec_json)
    return env


def _model_lines(model: dict) -> list[str]:
    if not model:
        return ["No model."]
    lines = [f"- model file: `{model.get('path', '?')}` ({model.get('origin', '')})"]
    metrics = model.get("metrics") or {}
    if metrics:
        acc, base = metrics.get("accuracy", {}), metrics.get("majority_class_accuracy", {})
        lines += [
            f"- data: `{metrics.get('source')}`, sizes {metrics.get('sizes')}",
            f"- **test accuracy {acc.get('test', float('nan')):.4f}** (validation "
            f"{acc.get('validation', float('nan')):.4f}, train {acc.get('train', float('nan')):.4f}; "
            f"majority class on test: {base.get('test', float('nan')):.4f})",
            f"- training: {metrics.get('config')}, best epoch {metrics.get('best_epoch')}, "
            f"{metrics.get('seconds', 0):.0f} s, {metrics.get('dtype')}",
        ]
    lines.append(f"- spec: `{model.get('spec')}`")
    return lines


def _note(content: ReportContent, name: str) -> dict[str, str]:
    note = content.figure_notes.get(name, "")
    if isinstance(note, dict):
        return note
    return {"title": name, "caption": note, "takeaway": "", "paper": ""}


def _summary(content: ReportContent) -> list[str]:
    return summary_lines(content.results, content.claims, content.errors, content.figure_notes)


def markdown(content: ReportContent, *, figure_dir: str = "figures") -> str:
    """The report as Markdown; figures are linked (relative paths), not embedded. Order: Summary,
    Model used, Figures, Claims (by paper and section, negative controls apart), details."""
    out = [f"# {content.title}", "", "## Summary", ""]
    out += [f"- {line}" for line in _summary(content)]
    out += ["", "## Model used", "", model_used(content.model), "", CLAIMS_MODELS, ""]
    if content.figures:
        out += ["## Figures", ""]
        for i, (name, png) in enumerate(content.figures.items(), 1):
            note = _note(content, name)
            out += [f"### Figure {i}. {note['title']}", "", f"![{note['title']}]({figure_dir}/{png.name})", "",
                    f"**Takeaway.** {note['takeaway']}" if note["takeaway"] else "", ""]
            if note["paper"]:
                out += [f"**Paper.** {note['paper']}", ""]
            out += [(f"*{note['caption']}* " if note["caption"] else "") + f"(`{name}`)", ""]
    out += ["## Claims", "", CLAIMS_LEGEND, ""]
    for heading, rows in claim_sections(content.results, content.claims):
        out += [f"### {heading}", "", "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
        out += ["| " + " | ".join(c.replace("|", "\\|") for c in claim_row(r)) + " |" for r in rows]
        found = [r for r in rows if r.finding]
        out += [""] + [f"- **{r.id}** ({r.dtype}): {r.finding}" for r in found] + [""]
    if content.errors:
        out += ["## Could not run", "", *[f"- {e}" for e in content.errors], ""]
    out += ["## Model details", "", *_model_lines(content.model), ""]
    out += ["## Tolerances", ""]
    out += [f"- `{cid}`: {info.get('tolerance_reason', '')}" for cid, info in content.claims.items()]
    out += ["", "## Environment", "", "| key | value |", "|---|---|"]
    out += [f"| {k} | `{v}` |" for k, v in content.environment.items()]
    return "\n".join(out) + "\n"


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1000px; padding: 0 1em; color: #222;
       line-height: 1.45; }
table { border-collapse: collapse; font-size: 0.85em; margin: 1em 0; table-layout: fixed; width: 100%; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: left; vertical-align: top;
         overflow-wrap: break-word; }
.wide { overflow-x: auto; } .wide table { min-width: 860px; }
nav { font-size: 0.9em; } nav a { margin-right: 0.8em; }
th { background: #f0f0f0; }
td.PASS { background: #e3f4e3; } td.FAIL { background: #fbe3e3; } td.UNEXPECTED { background: #f6b0b0; }
td.INCONCLUSIVE { background: #fff4cc; }
figure { margin: 1.5em 0; } figcaption { font-size: 0.95em; }
img { max-width: 100%; height: auto; border: 1px solid #ddd; display: block; }
code { background: #f5f5f5; padding: 0 3px; overflow-wrap: anywhere; }
.summary li { margin: 0.3em 0; }
"""
#: Widths of the claims table's columns (percent), in HEADER order.
_WIDTHS = (16, 30, 7, 13, 13, 12, 9)


def _inline(text: str) -> str:
    """`text` escaped for HTML, with Markdown's `code` spans as <code> (they showed their backticks)."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def _anchor(heading: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", heading.lower()).strip("-")


def _h2(heading: str) -> str:
    """A section heading with the anchor the index links to (`_anchor`)."""
    return f"<h2 id='{_anchor(heading)}'>{html.escape(heading)}</h2>"


def _cell_class(verdict: str) -> str:
    return "UNEXPECTED" if "UNEXPECTED" in verdict else verdict.split()[0]


def html_page(content: ReportContent) -> str:
    """The report as one self-contained HTML page (figures inlined as base64 PNG; no external
    scripts, styles or fonts)."""
    e = html.escape
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'>"
             f"<meta name='viewport' content='width=device-width, initial-scale=1'><title>{e(content.title)}</title>"
             f"<style>{STYLE}</style></head><body>", f"<h1>{e(content.title)}</h1>"]
    sections = ["Summary", "Model used"] + (["Figures"] if content.figures else []) + ["Claims"] + \
        (["Could not run"] if content.errors else []) + ["Model details", "Tolerances", "Environment"]
    parts.append("<nav>" + "".join(f"<a href='#{_anchor(s)}'>{e(s)}</a>" for s in sections) + "</nav>")
    parts.append(f"{_h2('Summary')}<ul class='summary'>")
    parts += [f"<li>{_inline(line)}</li>" for line in _summary(content)]
    used = e(model_used(content.model)).replace("**", "").replace("`", "")
    parts.append(f"</ul>{_h2('Model used')}<p>{used}</p><p>{_inline(CLAIMS_MODELS)}</p>")
    if content.figures:
        parts.append(_h2("Figures"))
        for i, (name, png) in enumerate(content.figures.items(), 1):
            note = _note(content, name)
            data = base64.b64encode(png.read_bytes()).decode("ascii")
            paper = f"<br><b>Paper.</b> {_inline(note['paper'])}" if note["paper"] else ""
            parts.append(f"<figure id='{e(name)}'><h3>Figure {i}. {e(note['title'])}</h3>"
                         f"<img alt='{e(note['title'])}' src='data:image/png;base64,{data}'>"
                         f"<figcaption><b>Takeaway.</b> {_inline(note['takeaway'])}{paper}<br>"
                         + (f"<i>{_inline(note['caption'])}</i> " if note["caption"] else "")
                         + f"(<code>{e(name)}</code>)</figcaption></figure>")
    parts.append(f"{_h2('Claims')}<p>{_inline(CLAIMS_LEGEND)}</p>")
    colgroup = "<colgroup>" + "".join(f"<col style='width:{w}%'>" for w in _WIDTHS) + "</colgroup>"
    for heading, rows in claim_sections(content.results, content.claims):
        parts.append(f"<h3>{e(heading)}</h3><div class='wide'><table>{colgroup}<tr>"
                     + "".join(f"<th>{e(h)}</th>" for h in HEADER) + "</tr>")
        for r in rows:
            row = claim_row(r)
            cells = [f"<td>{e(c)}</td>" for c in row]
            cells[5] = f"<td class='{_cell_class(row[5])}'>{e(row[5])}</td>"
            parts.append("<tr>" + "".join(cells) + "</tr>")
        parts.append("</table></div>")
        found = [r for r in rows if r.finding]
        if found:
            parts.append("<ul>" + "".join(f"<li><b>{e(r.id)}</b> ({e(r.dtype)}): {_inline(r.finding)}</li>"
                                          for r in found) + "</ul>")
    if content.errors:
        parts.append(f"{_h2('Could not run')}<ul>"
                     + "".join(f"<li>{e(x)}</li>" for x in content.errors) + "</ul>")
    parts.append(f"{_h2('Model details')}<ul>")
    for line in _model_lines(content.model):
        text = e(line.removeprefix("- ")).replace("**", "")
        parts.append(f"<li>{text.replace('`', '')}</li>")
    parts.append(f"</ul>{_h2('Tolerances')}<ul>")
    parts += [f"<li><code>{e(cid)}</code>: {_inline(info.get('tolerance_reason', ''))}</li>"
              for cid, info in content.claims.items()]
    parts.append(f"</ul>{_h2('Environment')}<table><colgroup><col style='width:20%'><col></colgroup>")
    parts += [f"<tr><th>{e(k)}</th><td><code>{e(v)}</code></td></tr>" for k, v in content.environment.items()]
    parts.append("</table></body></html>")
    return "\n".join(parts) + "\n"
