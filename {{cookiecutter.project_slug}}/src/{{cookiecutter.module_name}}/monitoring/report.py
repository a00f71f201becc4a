"""Drift reports: JSON for machines, a Markdown or HTML table for people."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from ..artifact import LoadedModel
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


def html_page(report: DriftReport, model: LoadedModel, current: Path) -> str:
    def cells(tag: str, values: list[str]) -> str:
        return "".join(f"<{tag}>{html.escape(value)}</{tag}>" for value in values)

    body = "".join(
        f'<tr class="{html.escape(values[-1])}">{cells("td", values)}</tr>'
        for values in rows(report)
    )
    facts = "".join(f"<li>{html.escape(text)}</li>" for text in heading(report, model, current))
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>Drift report</title>'
        "<style>td,th{padding:2px 8px;text-align:left}.warn{background:#fff3cd}"
        ".alert{background:#f8d7da}</style></head><body>"
        f"<h1>Drift report</h1><ul>{facts}</ul><p><strong>{html.escape(verdict(report))}"
        f"</strong></p><table><tr>{cells('th', HEADER)}</tr>{body}</table></body></html>\n"
    )


def write_reports(
    report: DriftReport, model: LoadedModel, current: Path, output: Path, kind: str
) -> list[Path]:
    """drift.json plus drift.md or drift.html in `output`."""
    output.mkdir(parents=True, exist_ok=True)
    document: dict[str, Any] = {
        "model": {"name": model.name, "version": model.version, "source": model.source},
        "current": str(current),
        **report.to_dict(),
    }
    data = output / "drift.json"
    data.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    readable = output / f"drift.{kind}"
    text = markdown(report, model, current) if kind == "md" else html_page(report, model, current)
    readable.write_text(text, encoding="utf-8")
    return [data, readable]
