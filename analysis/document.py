"""A report as data, and its renderings: Markdown, self-contained HTML, CSV, PNG.

A report is a title and a list of `Section`s; a section holds blocks: text (a
little Markdown: paragraphs, `- ` bullets, **bold**, `code`), tables
(DataFrames) and `Plot`s (matplotlib Figures). `write` renders all of it into a
new folder and swaps it in, so a failure leaves the previous report whole.
"""

from __future__ import annotations

import base64
import html
import math
import numbers
import re
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from analysis.errors import AnalysisError
from analysis.painters import Painters
from analysis.plots import Sketch


class Plot:
    """A named figure (`name` is its file stem, e.g. "distribution-val_loss") and its
    caption. Given as a `plots.Sketch`, the figure is drawn when first asked for; a report
    being written draws its sketches in helper processes (analysis.painters) instead."""

    def __init__(self, name: str, figure: Figure | Sketch, caption: str = "") -> None:
        self.name, self.caption = name, caption
        self.source = figure

    @property
    def figure(self) -> Figure:
        if isinstance(self.source, Sketch):
            self.source = self.source.draw()
        return self.source


Block = str | pd.DataFrame | Plot


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)

    def add(self, *blocks: Block) -> Section:
        """Append blocks; empty text is skipped, so callers may pass optional lines."""
        self.blocks.extend(b for b in blocks if not (isinstance(b, str) and not b.strip()))
        return self

    def plots(self) -> list[Plot]:
        return [b for b in self.blocks if isinstance(b, Plot)]


def write(
    out: Path,
    title: str,
    sections: list[Section],
    tables: dict[str, pd.DataFrame],
    painters: Painters | None = None,
) -> Path:
    """report.md, report.html (images inside), PNGs and `<name>.csv` per table, into `out`;
    the figures drawn by `painters` (helper processes), or here when there are none."""
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (out / "report.md").is_file():
        raise AnalysisError(
            f"{out} holds files that are not a report, and the report replaces its folder "
            "whole: give --out a new or empty folder"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        plots = [p for s in sections for p in s.plots()]
        pngs = (painters or Painters(0)).draw([p.source for p in plots])
        images = {p.name: data for p, data in zip(plots, pngs, strict=True)}
        for name, data in images.items():
            (staging / f"{name}.png").write_bytes(data)
        (staging / "report.md").write_text(to_markdown(title, sections))
        (staging / "report.html").write_text(to_html(title, sections, images))
        for name, table in tables.items():
            table.to_csv(staging / f"{name}.csv", index=False)
        _swap(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def _swap(new: Path, out: Path) -> None:
    old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
    if out.exists():
        out.rename(old)
    new.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def slug(text: str) -> str:
    """Text made safe for a file name."""
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text)


def fmt(value: object) -> str:
    """Numbers to 4 significant digits, missing values as a dash."""
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        value = float(value)  # numpy float32 too
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:,.0f}" if 1e4 <= abs(value) < 1e9 else f"{value:.4g}"
    return str(value)


def to_markdown(title: str, sections: list[Section]) -> str:
    lines = [f"# {title}", ""]
    for section in sections:
        lines += [f"## {section.title}", ""]
        for block in section.blocks:
            if isinstance(block, pd.DataFrame):
                lines += [markdown_table(block), ""]
            elif isinstance(block, Plot):
                lines += [f"![{block.caption or block.name}]({block.name}.png)", ""]
                lines += [f"*{block.caption}*", ""] if block.caption else []
            else:
                lines += [block.strip(), ""]
    return "\n".join(lines)


def markdown_table(table: pd.DataFrame) -> str:
    def cell(v: object) -> str:
        return fmt(v).replace("|", "\\|").replace("\n", " ")

    head = "| " + " | ".join(map(str, table.columns)) + " |"
    rule = "|" + "---|" * len(table.columns)
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([head, rule, *body])


STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1100px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #444; padding-bottom: .2em; }
h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.88em; display: block;
        overflow-x: auto; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: right; white-space: nowrap; }
th { background: #f0f0f0; }
td.t, th:first-child { text-align: left; }
tr:nth-child(even) td { background: #fafafa; }
figure { margin: 1em 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; }
code { background: #f3f3f3; padding: 0 .25em; border-radius: 3px; }
nav ul { columns: 2; }
"""


def to_html(title: str, sections: list[Section], images: dict[str, bytes]) -> str:
    """One file: styles inline, images as data URIs; opens from disk without a server."""
    anchors = [f"s{i}" for i in range(len(sections))]
    toc = "".join(
        f'<li><a href="#{a}">{html.escape(s.title)}</a></li>'
        for a, s in zip(anchors, sections, strict=True)
    )
    parts = [f"<h1>{html.escape(title)}</h1>", f"<nav><ul>{toc}</ul></nav>"]
    for anchor, section in zip(anchors, sections, strict=True):
        parts.append(f'<h2 id="{anchor}">{html.escape(section.title)}</h2>')
        for block in section.blocks:
            if isinstance(block, pd.DataFrame):
                parts.append(_html_table(block))
            elif isinstance(block, Plot):
                data = base64.b64encode(images[block.name]).decode()
                caption = html.escape(block.caption)
                parts.append(
                    f'<figure><img alt="{caption or block.name}" '
                    f'src="data:image/png;base64,{data}"><figcaption>{caption}</figcaption></figure>'
                )
            else:
                parts.append(_html_text(block))
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
        f"<body>{''.join(parts)}</body></html>\n"
    )


def _html_table(table: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns)
    rows = "".join(
        "<tr>" + "".join(_html_cell(v) for v in row) + "</tr>"
        for row in table.itertuples(index=False)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _html_cell(value: object) -> str:
    number = isinstance(value, numbers.Number) and not isinstance(value, bool)
    return f"<td{'' if number else ' class=t'}>{html.escape(fmt(value))}</td>"


def _html_text(text: str) -> str:
    out = []
    for paragraph in re.split(r"\n\s*\n", text.strip()):
        lines = paragraph.splitlines()
        if all(line.startswith("- ") for line in lines):
            items = "".join(f"<li>{_inline(line[2:])}</li>" for line in lines)
            out.append(f"<ul>{items}</ul>")
        else:
            out.append(f"<p>{_inline(' '.join(lines))}</p>")
    return "".join(out)


def _inline(text: str) -> str:
    escaped = html.escape(text)
    escaped = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", escaped)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", escaped)
