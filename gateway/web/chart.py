"""Daily counts of downloads and generations (gateway.services.review), drawn as an inline SVG."""

from __future__ import annotations

from markupsafe import Markup, escape

from gateway.services.review import DailyCounts


def bar_chart(counts: DailyCounts) -> Markup:
    """Paired bars per day; colours are blue/orange and the series also differ by pattern."""
    width, height, pad, top = 640, 220, 34, 12
    n = len(counts.days)
    peak = max([1, *counts.downloads, *counts.generations])
    slot = (width - pad - 8) / n
    bar = max(2.0, slot / 2 - 2)
    parts = [
        f'<svg viewBox="0 0 {width} {height + 30}" role="img" '
        'aria-labelledby="chart-title chart-desc" xmlns="http://www.w3.org/2000/svg">',
        '<title id="chart-title">Downloads and generations per day</title>',
        f'<desc id="chart-desc">Last {n} days. Downloads: {sum(counts.downloads)}; '
        f"generations: {sum(counts.generations)}; busiest day peak {peak}.</desc>",
        '<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)"><rect width="6" height="6" fill="#e08a2c"/>'
        '<line x1="0" y1="0" x2="0" y2="6" stroke="#7a3d00" stroke-width="2"/></pattern></defs>',
        f'<line x1="{pad}" y1="{height}" x2="{width}" y2="{height}" stroke="#4a5361"/>',
        f'<text x="2" y="{top + 4}" font-size="11" fill="#1b1f24">{peak}</text>',
        f'<text x="2" y="{height}" font-size="11" fill="#1b1f24">0</text>',
    ]
    for i, day in enumerate(counts.days):
        x = pad + i * slot
        for j, (value, fill) in enumerate(
            ((counts.downloads[i], "#0b57d0"), (counts.generations[i], "url(#hatch)"))
        ):
            h = (height - top) * value / peak
            parts.append(
                f'<rect x="{x + j * (bar + 1):.1f}" y="{height - h:.1f}" width="{bar:.1f}" '
                f'height="{h:.1f}" fill="{fill}"><title>{escape(day)}: {value} '
                f"{'downloads' if j == 0 else 'generations'}</title></rect>"
            )
        if i % 2 == 0:
            parts.append(
                f'<text x="{x:.1f}" y="{height + 16}" font-size="10" fill="#1b1f24">'
                f"{escape(day)}</text>"
            )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 (numbers and escaped labels only)
