"""Drift reports: JSON for machines, a Markdown or HTML table for people."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from ..artifact import LoadedModel
from .charts import bars
from .drift import ColumnDrift, DriftReport

HEADER = ["column", "kind", "PSI", "KS p-value", "missing (train → now)", "unseen", "status"]


def row(column: ColumnDrift) -> list[str]:
    pvalue = "" if column.ks_pvalue is None else f"{column.ks_pvalue:.3g}"
    unseen = f"{column.unseen_share:.1%}" if column.kind == "categorical" else ""
    if column.unseen_examples:
        unseen += " (" + ", ".join(column.unseen_examples) + ")"
    missing = f"{column.missing_reference:.1%} → {column.missing_current:.1%}"
    return [column.name, column.kind, f"{column.psi:.3f}", pvalue, missing, unseen, column.status]


def rows(report: DriftReport) -> list[list[str]]:
    columns = [*report.features, *([report.prediction] if report.prediction else [])]
    return [row(column) for column in columns]


def verdict(report: DriftReport) -> str:
    if not report.detected:
        return "no drift at the alert level"
    drifted = ", ".join(report.drifted) or "none"
    return f"DRIFT: features {drifted}" + (
        "; predictions too" if report.prediction and report.prediction.status == "alert" else ""
    )


def heading(report: DriftReport, model: LoadedModel, current: Path) -> list[str]:
    limits = report.thresholds
    return [
        f"Model {model.name} v{model.version} ({model.source}), "
        f"{report.reference_rows} training rows",
        f"Current data: {current}, {report.rows} rows",
        f"PSI warn ≥ {limits.psi_warn}, alert ≥ {limits.psi_alert} (and above its sampling "
        f"noise); KS on samples of ≤ {limits.ks_max_rows} rows; level {limits.alpha} overall",
    ]


def markdown(report: DriftReport, model: LoadedModel, current: Path) -> str:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    table = [line(HEADER), line(["---"] * len(HEADER)), *(line(cells) for cells in rows(report))]
    lines = ["# Drift report", "", *(f"- {text}" for text in heading(report, model, current))]
    return "\n".join([*lines, "", f"**{verdict(report)}**", "", *table]) + "\n"


# Nothing may be fetched: the page is one file that opens offline and in CI artifacts.
POLICY = "default-src 'none'; style-src 'unsafe-inline'"
STYLE = (
    "body{font-family:sans-serif;max-width:980px;margin:1em auto;padding:0 1em}"
    "td,th{padding:2px 8px;text-align:left}.warn{background:#fff3cd}"
    ".alert{background:#f8d7da}section{border-top:1px solid #ccc;margin-top:1em}"
    "h3 small{font-weight:normal;padding:0 6px}summary{cursor:pointer;margin:1em 0}"
)


def summary(report: DriftReport) -> str:
    """One line: the verdict, then how many features are at each level."""
    counts = dict.fromkeys(("alert", "warn", "ok"), 0)
    for column in report.features:
        counts[column.status] += 1
    levels = ", ".join(f"{count} {status}" for status, count in counts.items() if count)
    return (
        f"{verdict(report)}. {len(report.features)} features: {levels}; "
        f"{report.rows} current rows against {report.reference_rows} training rows."
    )


def by_drift(report: DriftReport) -> list[ColumnDrift]:
    """Features by status (alert first), then by PSI, highest first."""
    rank = {"alert": 0, "warn": 1, "ok": 2}
    return sorted(report.features, key=lambda column: (rank[column.status], -column.psi))


def section(column: ColumnDrift, kind: str) -> str:
    name = html.escape(column.name)
    facts = [
        f"PSI {column.psi:.3f} (noise level {column.psi_noise:.3f})",
        f"missing {column.missing_reference:.1%} → {column.missing_current:.1%}",
    ]
    if column.ks_pvalue is not None:
        facts.append(f"KS p-value {column.ks_pvalue:.3g}")
    if column.kind == "categorical":
        facts.append(f"unseen {column.unseen_share:.1%}")
    chart = bars(
        column.labels,
        column.reference_shares,
        column.current_shares,
        f"{column.name}: share of rows per bin, training and current",
    )
    return (
        f'<section class="{kind} {column.status}" id="{kind}-{name}">'
        f"<h3>{name}<small>{html.escape(column.status)}</small></h3>"
        f"<p>{html.escape(' · '.join(facts))}</p>{chart}</section>"
    )


def html_page(report: DriftReport, model: LoadedModel, current: Path) -> str:
    """Summary, drifted features with their charts, the rest folded, predictions, a table."""

    def cells(tag: str, values: list[str]) -> str:
        return "".join(f"<{tag}>{html.escape(value)}</{tag}>" for value in values)

    ordered = by_drift(report)
    moved = "".join(section(column, "feature") for column in ordered if column.status != "ok")
    steady = [column for column in ordered if column.status == "ok"]
    if steady:
        moved += (
            f"<details><summary>{len(steady)} features within the limits</summary>"
            + "".join(section(column, "feature") for column in steady)
            + "</details>"
        )
    table = "".join(
        f'<tr class="{html.escape(values[-1])}">{cells("td", values)}</tr>'
        for values in (row(column) for column in ordered)
    )
    facts = "".join(f"<li>{html.escape(text)}</li>" for text in heading(report, model, current))
    prediction = section(report.prediction, "prediction") if report.prediction else ""
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{POLICY}">'
        f"<title>Drift report</title><style>{STYLE}</style></head><body>"
        f'<h1>Drift report</h1><p id="summary"><strong>{html.escape(summary(report))}'
        f"</strong></p><ul>{facts}</ul>"
        f'<h2>Features, most drifted first</h2><div id="features">{moved}</div>'
        f"<h2>Predictions</h2>{prediction or '<p>no predictions compared</p>'}"
        f"<h2>Every column</h2><table><tr>{cells('th', HEADER)}</tr>{table}</table>"
        "</body></html>\n"
    )


def write_reports(
    report: DriftReport, model: LoadedModel, current: Path, output: Path, kinds: list[str]
) -> list[Path]:
    """drift.json plus drift.md and/or drift.html in `output`."""
    output.mkdir(parents=True, exist_ok=True)
    document: dict[str, Any] = {
        "model": {"name": model.name, "version": model.version, "source": model.source},
        "current": str(current),
        **report.to_dict(),
    }
    data = output / "drift.json"
    data.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    written = [data]
    for kind in dict.fromkeys(kinds):
        page = markdown if kind == "md" else html_page
        written.append(output / f"drift.{kind}")
        written[-1].write_text(page(report, model, current), encoding="utf-8")
    return written
