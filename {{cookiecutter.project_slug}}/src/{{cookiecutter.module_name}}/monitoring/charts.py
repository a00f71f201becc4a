"""Bar charts of two distributions as inline SVG: the training data's and the current one.

No script, no stylesheet, no font or image to fetch: the drift report is one file that
opens offline and in a CI artifact. A chart is a few hundred bytes per bin, so a report of
thirty features stays small and quick to write.
"""

from __future__ import annotations

from html import escape

WIDTH, HEIGHT = 640, 180
PLOT_TOP, PLOT_BOTTOM, PLOT_LEFT = 10, 140, 40
TRAINING, CURRENT = "#9e9e9e", "#1f77b4"
MAX_LABELS = 8  # bin labels shown under the axis; every bin has its own in a tooltip


def bars(labels: list[str], reference: list[float], current: list[float], title: str) -> str:
    """Grouped bars per bin: training share (grey) and current share (blue)."""
    count = max(len(labels), 1)
    top = max([*reference, *current, 1e-9])
    slot = (WIDTH - PLOT_LEFT - 10) / count
    height = PLOT_BOTTOM - PLOT_TOP
    shapes = []
    for index, label in enumerate(labels):
        x = PLOT_LEFT + index * slot
        for offset, (share, colour, side) in enumerate(
            ((reference[index], TRAINING, "training"), (current[index], CURRENT, "current"))
        ):
            tall = height * share / top
            shapes.append(
                f'<rect class="{side}" x="{x + slot * (0.1 + 0.4 * offset):.1f}" '
                f'y="{PLOT_BOTTOM - tall:.1f}" width="{slot * 0.4:.1f}" height="{tall:.1f}" '
                f'fill="{colour}"><title>{escape(label)}: {side} {share:.1%}</title></rect>'
            )
    step = max(1, -(-count // MAX_LABELS))
    ticks = [
        f'<text x="{PLOT_LEFT + (index + 0.5) * slot:.1f}" y="{PLOT_BOTTOM + 14}" '
        f'font-size="10" text-anchor="middle">{escape(label[:14])}</text>'
        for index, label in enumerate(labels)
        if index % step == 0
    ]
    axis = (
        f'<line x1="{PLOT_LEFT}" y1="{PLOT_BOTTOM}" x2="{WIDTH - 10}" y2="{PLOT_BOTTOM}" '
        'stroke="#444"/>'
        f'<text x="4" y="{PLOT_TOP + 8}" font-size="10">{top:.0%}</text>'
    )
    legend = (
        f'<rect x="{WIDTH - 190}" y="{HEIGHT - 16}" width="10" height="10" fill="{TRAINING}"/>'
        f'<text x="{WIDTH - 176}" y="{HEIGHT - 7}" font-size="11">training</text>'
        f'<rect x="{WIDTH - 110}" y="{HEIGHT - 16}" width="10" height="10" fill="{CURRENT}"/>'
        f'<text x="{WIDTH - 96}" y="{HEIGHT - 7}" font-size="11">current</text>'
    )
    return (
        f'<svg width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}">'
        f"<title>{escape(title)}</title>{axis}{''.join(shapes)}{''.join(ticks)}{legend}</svg>"
    )
