"""Model-card render cost per character: adversarial cards vs. ordinary prose, 10k to 1M chars.

Run: ``.venv/bin/python bench/markdown_render.py`` (``--sizes 10000,100000,1000000``,
``--rounds 3``; ``--old-regex`` adds the link pattern of the renderer replaced in issue 14.2,
timed on ``"[a](b" * N`` at small sizes only, since it is quadratic).

For each input shape and size it prints the best-of-rounds CPU time (``time.process_time``)
of one full render (``gateway.web.markdown._render``: front matter, parse, render; no cache)
in microseconds per character, the ratio to the prose baseline of the same size, and the
growth of time per character from the smallest to the largest size: about 1 means linear.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PROSE = (
    "## Intended use\n\nThis model writes **short** answers about *gardening*; see "
    "[the docs](https://example.com/docs) and `pip install thing`.\n\n"
    "| metric | value |\n|---|---|\n| ppl | 12.5 |\n\n- one item\n- two items\n\n"
)
SHAPES = {
    "prose (baseline)": PROSE,
    "[a](b": "[a](b",
    "[": "[",
    "[[[[a]]]](": "[[[[a]]]](",
    "`a``": "`a``",
    "*a_": "*a_",
    "**a": "**a",
    "![a](": "![a](",
    "> - ": "> - ",
    "<a": "<a",
}
# The pattern the hand-written renderer used for links (quadratic on "[a](b" * N).
OLD_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")


def make(unit: str, size: int) -> str:
    return (unit * (size // len(unit) + 1))[:size]


def cpu_seconds(fn: object, text: str, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        fn(text)  # type: ignore[operator]
        best = min(best, time.process_time() - start)
    return best


def main() -> None:
    from gateway.web.markdown import _render

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--old-regex", action="store_true")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    def render(text: str) -> str:
        return _render(text, 1)

    baseline = {n: cpu_seconds(render, make(PROSE, n), args.rounds) / n for n in sizes}
    header = " ".join(f"{n:>10,} us/c  x prose" for n in sizes)
    print(f"{'shape':18} {header}   growth")
    for name, unit in SHAPES.items():
        per_char = (
            baseline
            if unit == PROSE
            else {n: cpu_seconds(render, make(unit, n), args.rounds) / n for n in sizes}
        )
        cells = " ".join(
            f"{per_char[n] * 1e6:>15.2f} {per_char[n] / baseline[n]:>8.2f}" for n in sizes
        )
        growth = per_char[sizes[-1]] / per_char[sizes[0]]
        print(f"{name:18} {cells}   {growth:6.2f}")
    if args.old_regex:
        print("\nold link regex on '[a](b' * N (the replaced renderer's first pass alone):")
        for n in (2_000, 4_000, 8_000, 16_000):
            seconds = cpu_seconds(lambda t: OLD_LINK.sub("", t), make("[a](b", n), 1)
            print(f"  {n:>7,} chars: {seconds:8.3f} s  ({seconds / n * 1e6:8.1f} us/char)")


if __name__ == "__main__":
    main()
