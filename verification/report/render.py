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
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from attnverify.verification.sweep import ClaimResult
from attnverify.verification.table import _verdict

PACKAGES = ("attnverify", "jax", "jaxlib", "sympy", "numpy", "scipy", "optax", "matplotlib", "tqdm")


@dataclass
class ReportContent:
    """Everything a report shows. ``errors`` are claims or figures that could not run."""

    title: str
    results: list[ClaimResult]
    claims: dict[str, dict]  # id -> {group, source, tolerance_reason}
    model: dict  # model file path, spec, training metrics (may be empty)
    figures: dict[str, Path]  # name -> PNG
    figure_notes: dict[str, str]  # name -> one line: what it shows
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


def summary(results: list[ClaimResult], errors: list[str]) -> str:
    unexpected = [r for r in results if r.unexpected]
    expected_fail = [r for r in results if not r.passed and r.expected is False]
    return (f"{len(results)} claim runs: {sum(r.passed for r in results)} PASS, "
            f"{sum(not r.passed for r in results)} FAIL ({len(expected_fail)} expected to fail, "
            f"{len(unexpected)} unexpected); {len(errors)} could not run.")


def _rows(content: ReportContent) -> list[list[str]]:
    rows = []
    for r in content.results:
        group = content.claims.get(r.id, {}).get("group", "")
        rows.append([r.id, group, r.statement, r.dtype, f"{r.tolerance:.0e}", f"{r.max_error:.2e}",
                     f"{r.median_error:.2e}", str(r.trials), _verdict(r), r.proof or "-"])
    return rows


HEADER = ["claim", "group", "statement", "dtype", "tolerance", "max error", "median error", "trials",
          "result", "proof"]


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


def markdown(content: ReportContent, *, figure_dir: str = "figures") -> str:
    """The report as Markdown; figures are linked (relative paths), not embedded."""
    out = [f"# {content.title}", "", summary(content.results, content.errors), "",
           "## Model", "", *_model_lines(content.model), "", "## Claims", "",
           "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in _rows(content)]
    findings = [r for r in content.results if r.finding]
    out += ["", "## Findings", ""]
    out += [f"- **{r.id}** ({r.dtype}): {r.finding}" for r in findings] or ["None."]
    out += ["", "## Tolerances", ""]
    out += [f"- `{cid}`: {info.get('tolerance_reason', '')}" for cid, info in content.claims.items()]
    if content.errors:
        out += ["", "## Could not run", "", *[f"- {e}" for e in content.errors]]
    out += ["", "## Figures", ""]
    for name, png in content.figures.items():
        out += [f"### {name}", "", content.figure_notes.get(name, ""), "",
                f"![{name}]({figure_dir}/{png.name})", ""]
    out += ["## Environment", "", "| key | value |", "|---|---|"]
    out += [f"| {k} | `{v}` |" for k, v in content.environment.items()]
    return "\n".join(out) + "\n"


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
td.PASS { background: #e3f4e3; } td.FAIL { background: #fbe3e3; } td.UNEXPECTED { background: #f6b0b0; }
img { max-width: 100%; border: 1px solid #ddd; }
code { background: #f5f5f5; padding: 0 3px; }
"""


def _cell_class(verdict: str) -> str:
    return "UNEXPECTED" if "UNEXPECTED" in verdict else verdict.split()[0]


def html_page(content: ReportContent) -> str:
    """The report as one self-contained HTML page (figures inlined as base64 PNG)."""
    e = html.escape
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{e(content.title)}</title>"
             f"<style>{STYLE}</style></head><body>", f"<h1>{e(content.title)}</h1>",
             f"<p><b>{e(summary(content.results, content.errors))}</b></p>", "<h2>Model</h2><ul>"]
    for line in _model_lines(content.model):
        text = e(line.removeprefix("- ")).replace("**", "")
        parts.append(f"<li>{text.replace('`', '')}</li>")
    parts.append("</ul><h2>Claims</h2><table><tr>" + "".join(f"<th>{e(h)}</th>" for h in HEADER) + "</tr>")
    for row in _rows(content):
        cells = [f"<td>{e(c)}</td>" for c in row]
        cells[8] = f"<td class='{_cell_class(row[8])}'>{e(row[8])}</td>"
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</table><h2>Findings</h2><ul>")
    findings = [r for r in content.results if r.finding]
    parts += [f"<li><b>{e(r.id)}</b> ({e(r.dtype)}): {e(r.finding)}</li>" for r in findings] or ["<li>None.</li>"]
    parts.append("</ul><h2>Tolerances</h2><ul>")
    parts += [f"<li><code>{e(cid)}</code>: {e(info.get('tolerance_reason', ''))}</li>"
              for cid, info in content.claims.items()]
    parts.append("</ul>")
    if content.errors:
        parts.append("<h2>Could not run</h2><ul>" + "".join(f"<li>{e(x)}</li>" for x in content.errors) + "</ul>")
    parts.append("<h2>Figures</h2>")
    for name, png in content.figures.items():
        data = base64.b64encode(png.read_bytes()).decode("ascii")
        parts.append(f"<h3>{e(name)}</h3><p>{e(content.figure_notes.get(name, ''))}</p>"
                     f"<img alt='{e(name)}' src='data:image/png;base64,{data}'>")
    parts.append("<h2>Environment</h2><table>")
    parts += [f"<tr><th>{e(k)}</th><td><code>{e(v)}</code></td></tr>" for k, v in content.environment.items()]
    parts.append("</table></body></html>")
    return "\n".join(parts) + "\n"
