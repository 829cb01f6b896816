"""A self-contained HTML page: inline CSS, PNGs beside it, every value escaped."""

from __future__ import annotations

import html
from dataclasses import dataclass

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1d2733}
main{max-width:1040px;margin:0 auto;padding:24px 28px 48px}
h1{font-size:26px;margin:0 0 4px}h2{font-size:19px;margin:0 0 12px;border-bottom:1px solid #dde2e8;padding-bottom:6px}
h3{font-size:15px;margin:18px 0 6px}
.sub{color:#5b6776;margin:0 0 20px;font-size:14px;overflow-wrap:anywhere}
section{background:#fff;border:1px solid #dde2e8;border-radius:8px;padding:18px 22px;margin:0 0 18px}
table{border-collapse:collapse;font-size:14px;margin:4px 0 8px}
th,td{padding:5px 12px;border-bottom:1px solid #eef1f4;text-align:left;vertical-align:top}
th{background:#f1f4f7;font-weight:600}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.kv th{background:none;font-weight:500;color:#5b6776;white-space:nowrap;padding-right:28px}
img{max-width:100%;height:auto;display:block;margin:8px 0 4px}
figure{margin:0 0 12px}figcaption{color:#5b6776;font-size:13px}
.excerpt{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12.5px;white-space:pre-wrap;
 overflow-wrap:anywhere;color:#2d3a48;max-width:640px}
.tag{display:inline-block;padding:1px 7px;border-radius:9px;font-size:12px;background:#e8eef6;color:#1f4f80}
.tag.skipped{background:#eef3e8;color:#3d6b21}.tag.failed{background:#fbe9e7;color:#a12a1c}
.note{color:#5b6776;font-size:13px}
"""


@dataclass(frozen=True)
class Raw:
    """Markup that is already safe (built by these helpers)."""

    markup: str


def esc(value) -> str:
    return value.markup if isinstance(value, Raw) else html.escape(str(value))


def fmt(value) -> str:
    """Integers with thousands separators, floats to 3 significant decimals, None as a dash."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def _cell(tag: str, value) -> str:
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    text = esc(value) if isinstance(value, Raw) else html.escape(fmt(value))
    return f'<{tag} class="num">{text}</{tag}>' if numeric else f"<{tag}>{text}</{tag}>"


def table(headers: list[str], rows: list[list], numeric_headers: set[str] = frozenset()) -> Raw:
    head = "".join(f'<th class="num">{esc(h)}</th>' if h in numeric_headers else f"<th>{esc(h)}</th>"
                   for h in headers)
    body = "".join("<tr>" + "".join(_cell("td", v) for v in row) + "</tr>" for row in rows)
    return Raw(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def key_values(pairs: list[tuple[str, object]]) -> Raw:
    rows = "".join(f'<tr><th>{esc(k)}</th><td class="num">{esc(v) if isinstance(v, Raw) else html.escape(fmt(v))}</td></tr>'
                   for k, v in pairs)
    return Raw(f'<table class="kv"><tbody>{rows}</tbody></table>')


def figure(src: str, caption: str, alt: str) -> Raw:
    return Raw(f'<figure><img src="{html.escape(src)}" alt="{html.escape(alt)}">'
               f"<figcaption>{esc(caption)}</figcaption></figure>")


def tag(text: str, kind: str = "") -> Raw:
    return Raw(f'<span class="tag {html.escape(kind)}">{html.escape(text)}</span>')


def excerpt(text: str | None, limit: int) -> Raw:
    """The start of a text with runs of blank lines collapsed, marked when cut."""
    if text is None:
        return Raw('<span class="note">(text not available)</span>')
    lines = [line.rstrip() for line in text.strip().splitlines()]
    compact = "\n".join(line for k, line in enumerate(lines) if line or (k and lines[k - 1]))
    cut = compact[:limit] + ("…" if len(compact) > limit else "")
    return Raw(f'<div class="excerpt">{html.escape(cut)}</div>')


def section(title: str, *parts) -> Raw:
    return Raw(f"<section><h2>{esc(title)}</h2>" + "".join(esc(p) for p in parts) + "</section>")


def paragraph(text, cls: str = "") -> Raw:
    return Raw(f'<p class="{cls}">{esc(text)}</p>' if cls else f"<p>{esc(text)}</p>")


def heading(text: str) -> Raw:
    return Raw(f"<h3>{esc(text)}</h3>")


def page(title: str, subtitle: str, sections: list[Raw]) -> str:
    body = "".join(s.markup for s in sections)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head>"
            f'<body><main><h1>{html.escape(title)}</h1><p class="sub">{html.escape(subtitle)}</p>'
            f"{body}</main></body></html>\n")
