"""The benchmarks' latest figures in docs/benchmarks/*.md: each script owns one block between two markers."""

from __future__ import annotations

import statistics
from pathlib import Path

PAGES = Path(__file__).resolve().parent.parent / "docs" / "benchmarks"
# The page that gets a script's block when no page holds it yet.
PAGE_OF = {"throughput": "speed.md", "methods": "quality.md", "series": "series.md"}


def page_of(name: str) -> Path:
    """The page holding `<!-- NAME-benchmark:begin -->`, else the one `PAGE_OF` names (else the index)."""
    begin = f"<!-- {name}-benchmark:begin -->"
    for page in sorted(PAGES.glob("*.md")):
        if begin in page.read_text():
            return page
    return PAGES / PAGE_OF.get(name, "index.md")


def write_block(name: str, text: str, heading: str) -> None:
    """Replace what stands between `<!-- NAME-benchmark:begin -->` and `...:end -->` in its page by `text`, or
    append the block under `heading` when no page has it yet."""
    begin, end = f"<!-- {name}-benchmark:begin -->", f"<!-- {name}-benchmark:end -->"
    page = page_of(name)
    content = page.read_text()
    block = f"{begin}\n{text}\n{end}"
    if begin in content and end in content:
        content = content[: content.index(begin)] + block + content[content.index(end) + len(end) :]
    else:
        content = content.rstrip() + f"\n\n{heading}\n\n{block}\n"
    page.write_text(content)


def mean_sd(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation over seeds (sd 0 for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0
