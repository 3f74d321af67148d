"""The pipeline's own Markdown pages (results/tables.md, results/released.md) as HTML fragments, so the
Snakemake report shows them as tables on its landing page (workflow/report/workflow.rst includes them)
instead of linking a file the browser does not render.

Only what fcnlib.report.tables and fcnlib.eval.released write: `#`/`##` headings, `- ` items, `> ` notes, pipe tables
(`\\|` escapes a bar), `**bold**`, `*italic*` and `` `code` ``; anything else is a paragraph. Inline styles
only: the fragment sits inside the report's own page and stylesheet.
"""

from __future__ import annotations

import html
import os
import re
from pathlib import Path

from fcnlib.files.io import atomic_write_text

_TABLE = 'style="border-collapse:collapse;margin:0.4em 0 1.2em 0;font-size:0.85em"'
_CELL = 'style="border:1px solid #bbb;padding:2px 6px;text-align:left;vertical-align:top"'
_HEAD = 'style="border:1px solid #bbb;padding:2px 6px;text-align:left;background:#eef"'
_NOTE = 'style="border-left:4px solid #c0392b;background:#fdf0ee;padding:4px 10px;margin:0.5em 0"'


def _inline(text: str) -> str:
    s = html.escape(text, quote=False)
    s = re.sub(r"`([^`]+)`", r"<code>\1</code>", s)
    s = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", s)
    return re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"<em>\1</em>", s)


def _cells(line: str) -> list[str]:
    inner = line.strip()[1:-1] if line.strip().endswith("|") else line.strip()[1:]
    parts = re.split(r"(?<!\\)\|", inner)
    return [p.strip().replace("\\|", "|") for p in parts]


def markdown_to_html(md: str) -> str:
    """The HTML fragment of one of the pipeline's Markdown pages."""
    out: list[str] = []
    lines = md.splitlines()
    i = 0
    items: list[str] = []

    def flush_items() -> None:
        if items:
            out.append("<ul>" + "".join(f"<li>{x}</li>" for x in items) + "</ul>")
            items.clear()

    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped.startswith("- "):
            items.append(_inline(stripped[2:]))
            i += 1
            continue
        flush_items()
        if not stripped:
            i += 1
        elif stripped.startswith("#"):
            level = min(len(stripped) - len(stripped.lstrip("#")), 4) + 1  # the report's own title is h1
            out.append(f"<h{level}>{_inline(stripped.lstrip('#').strip())}</h{level}>")
            i += 1
        elif stripped.startswith(">"):
            out.append(f"<div {_NOTE}>{_inline(stripped.lstrip('>').strip())}</div>")
            i += 1
        elif stripped.startswith("|"):
            block = []
            while i < len(lines) and lines[i].strip().startswith("|"):
                block.append(lines[i])
                i += 1
            rows = [_cells(b) for b in block if not re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", b.strip())]
            head, body = rows[0], rows[1:]
            t = [f"<table {_TABLE}><thead><tr>"] + [f"<th {_HEAD}>{_inline(c)}</th>" for c in head]
            t.append("</tr></thead><tbody>")
            for r in body:
                t.append("<tr>" + "".join(f"<td {_CELL}>{_inline(c)}</td>" for c in r) + "</tr>")
            out.append("".join(t) + "</tbody></table>")
        else:
            out.append(f"<p>{_inline(stripped)}</p>")
            i += 1
    flush_items()
    return "\n".join(out) + "\n"


def write_html(md_path: str | os.PathLike, html_path: str | os.PathLike) -> Path:
    """`md_path` rendered by markdown_to_html, written atomically to `html_path`."""
    out = Path(html_path)
    atomic_write_text(out, markdown_to_html(Path(md_path).read_text(encoding="utf-8")))
    return out
