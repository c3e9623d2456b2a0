"""The benchmarks' latest figures in benchmarks/README.md: each script owns one block between two markers."""

from __future__ import annotations

from pathlib import Path

README = Path(__file__).resolve().parent / "README.md"


def write_block(name: str, text: str, heading: str) -> None:
    """Replace what stands between `<!-- NAME-benchmark:begin -->` and `...:end -->` in README.md by `text`, or
    append the block under `heading` when the README has none yet."""
    begin, end = f"<!-- {name}-benchmark:begin -->", f"<!-- {name}-benchmark:end -->"
    content = README.read_text()
    block = f"{begin}\n{text}\n{end}"
    if begin in content and end in content:
        content = content[: content.index(begin)] + block + content[content.index(end) + len(end) :]
    else:
        content = content.rstrip() + f"\n\n{heading}\n\n{block}\n"
    README.write_text(content)
