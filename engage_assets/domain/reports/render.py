"""A report as sections (a heading, a table, a chart, a note), written out twice: Markdown for the Dagster UI's
asset metadata (charts as `data:` PNG images, which its Markdown view shows) and a standalone HTML file (charts
inline too: the file opens anywhere, with no server and no network)."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass, field

from engage_assets.domain.reports.charts import Spec, render_png

NO_DATA = "No data yet"
WIDE_COLUMNS = 4  # a table with more columns takes the page's whole width


@dataclass(frozen=True)
class Table:
    """A table: headers and rows of text; `numeric` columns are right-aligned."""

    headers: Sequence[str]
    rows: Sequence[Sequence[str]]
    numeric: frozenset[int] = field(default_factory=frozenset)


@dataclass(frozen=True)
class Section:
    """One heading with what it shows: a note, a table, a chart (PNG bytes)."""

    title: str
    note: str = ""
    table: Table | None = None
    png: bytes | None = None


@dataclass(frozen=True)
class Report:
    """A report: its title, a subtitle line, its sections."""

    title: str
    subtitle: str
    sections: Sequence[Section]


def chart_section(title: str, spec: Spec | None, what: str) -> Section:
    """A chart's section: the PNG, or a note that there is nothing to draw yet (`what` names the data it needs)."""
    if spec is None:
        return Section(title, note=f"{NO_DATA}: {what}.")
    return Section(title, png=render_png(spec))


def png_uri(png: bytes) -> str:
    """A PNG as a data URI."""
    return "data:image/png;base64," + base64.b64encode(png).decode()


def md_cell(text: str) -> str:
    """A table cell's text, its pipes escaped."""
    return text.replace("|", "\\|").replace("\n", " ")


def table_markdown(table: Table) -> str:
    """A Markdown (GFM) table."""
    align = ["---:" if i in table.numeric else "---" for i in range(len(table.headers))]
    lines = ["| " + " | ".join(md_cell(h) for h in table.headers) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(md_cell(c) for c in row) + " |" for row in table.rows]
    return "\n".join(lines)


def to_markdown(report: Report) -> str:
    """The report as Markdown (the asset's metadata)."""
    out = [f"# {report.title}", f"_{report.subtitle}_"]
    for s in report.sections:
        out.append(f"## {s.title}")
        if s.note:
            out.append(s.note)
        if s.table is not None:
            out.append(table_markdown(s.table))
        if s.png is not None:
            out.append(f"![{s.title}]({png_uri(s.png)})")
    return "\n\n".join(out) + "\n"


def table_html(table: Table) -> str:
    """An HTML table."""

    def cls(i: int) -> str:
        return ' class="num"' if i in table.numeric else ""

    head = "".join(f"<th{cls(i)}>{html.escape(h)}</th>" for i, h in enumerate(table.headers))
    body = "".join(
        "<tr>" + "".join(f"<td{cls(i)}>{html.escape(c)}</td>" for i, c in enumerate(row)) + "</tr>"
        for row in table.rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


STYLE = """
body { font-family: Helvetica, Arial, sans-serif; margin: 24px 40px; color: #222; background: #fafafa; }
h1 { font-size: 26px; margin-bottom: 4px; } h2 { font-size: 19px; margin: 28px 0 8px; }
.subtitle { color: #666; margin-top: 0; } .note { color: #444; }
.nodata { background: #fff7e0; border: 1px solid #f0d890; padding: 10px 14px; border-radius: 4px; }
table { border-collapse: collapse; background: #fff; font-size: 14px; }
th, td { border: 1px solid #ddd; padding: 5px 10px; text-align: left; } th { background: #f0f0f0; }
.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
main { display: grid; grid-template-columns: repeat(auto-fit, minmax(660px, 1fr)); gap: 16px; align-items: start; }
section.wide { grid-column: 1 / -1; }
section { background: #fff; border: 1px solid #e4e4e4; border-radius: 6px; padding: 4px 18px 16px; overflow-x: auto; }
img { max-width: 100%; }
"""


def to_html(report: Report) -> str:
    """The report as one standalone HTML page."""
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(report.title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(report.title)}</h1>",
        f'<p class="subtitle">{html.escape(report.subtitle)}</p>',
        "<main>",
    ]
    for s in report.sections:
        wide = s.table is not None and len(s.table.headers) > WIDE_COLUMNS
        attrs = ' class="wide"' if wide else ""
        parts.append(f"<section{attrs}><h2>{html.escape(s.title)}</h2>")
        if s.note:
            kind = "note nodata" if s.note.startswith(NO_DATA) else "note"
            parts.append(f'<p class="{kind}">{html.escape(s.note)}</p>')
        if s.table is not None:
            parts.append(table_html(s.table))
        if s.png is not None:
            parts.append(f'<p><img alt="{html.escape(s.title)}" src="{png_uri(s.png)}"></p>')
        parts.append("</section>")
    parts.append("</main></body></html>")
    return "\n".join(parts) + "\n"
