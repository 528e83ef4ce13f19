"""One self-contained HTML file of a view: pictures, their labels and tables, no kernel needed.

ipywidgets' ``embed_minimal_html`` keeps widget state, but an ipycanvas canvas's picture is not
state (it is drawn by messages), so an embedded dashboard opens blank. A static page of the
frames the canvases show, as PNG data URIs, is what survives: it opens from disk in any
browser, can be mailed or attached to a report, and needs neither Python nor the network.
"""

from __future__ import annotations

import base64
import html
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

from .errors import InvalidInputError, InvalidOptionError
from .render import check_output_path

__all__ = ["Figure", "Section", "metrics_table", "page_html", "png_data_uri", "write_html"]

_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 16px; color: #222; background: #fff; }
h1 { font-size: 17px; margin: 0 0 8px; }
.labels { border-collapse: collapse; margin-bottom: 12px; }
.labels td { padding: 1px 10px 1px 0; }
.labels td:first-child { color: #666; }
.row { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; }
figure { margin: 0; }
figcaption { font-size: 13px; color: #444; margin-bottom: 4px; }
img { image-rendering: pixelated; display: block; }
.text { max-width: 640px; margin: 8px 0; }
table.metrics { border-collapse: collapse; margin-top: 8px; font-variant-numeric: tabular-nums; }
table.metrics th, table.metrics td { border: 1px solid #ccc; padding: 2px 8px; text-align: right; }
@media (prefers-color-scheme: dark) {
  body { color: #ddd; background: #111; } figcaption, .labels td:first-child { color: #aaa; }
}
"""


@dataclass(frozen=True)
class Figure:
    """A picture on the page: ``(H, W, 3|4)`` uint8 pixels, its caption and a CSS class."""

    picture: npt.NDArray[np.uint8]
    caption: str = ""
    name: str = ""


@dataclass
class Section:
    """A heading, then figures side by side, then optional HTML (already escaped)."""

    title: str
    figures: list[Figure] = field(default_factory=list)
    html_text: str = ""


def png_data_uri(picture: npt.NDArray[np.uint8]) -> str:
    """``data:image/png;base64,...`` of an ``(H, W)``, ``(H, W, 3)`` or ``(H, W, 4)`` uint8
    picture (lossless: the page shows exactly the canvas's pixels)."""
    array = np.ascontiguousarray(picture)
    if array.dtype != np.uint8 or array.ndim not in (2, 3) or (
            array.ndim == 3 and array.shape[2] not in (3, 4)):
        msg = (f"a picture must be uint8 (H, W), (H, W, 3) or (H, W, 4), got {array.dtype} "
               f"{array.shape}")
        raise InvalidInputError(msg)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def metrics_table(curves: dict[str, tuple[Sequence[int], Sequence[float]]]) -> str:
    """An HTML table, one row per epoch and one column per metric (``{name: (epochs,
    values)}``), values to 4 significant digits; empty when there are no metrics."""
    if not curves:
        return ""
    epochs = sorted({int(e) for xs, _ in curves.values() for e in xs})
    cells = {name: dict(zip((int(e) for e in xs), ys, strict=True))
             for name, (xs, ys) in curves.items()}
    head = "".join(f"<th>{html.escape(name)}</th>" for name in curves)
    rows = []
    for epoch in epochs:
        values = "".join(
            f"<td>{cells[n][epoch]:.4g}</td>" if epoch in cells[n] else "<td></td>"
            for n in curves)
        rows.append(f"<tr><td>{epoch}</td>{values}</tr>")
    return (f"<table class='metrics'><tr><th>epoch</th>{head}</tr>{''.join(rows)}</table>")


def page_html(title: str, labels: dict[str, str], sections: Sequence[Section]) -> str:
    """The whole page as a string: a title, a table of labels and the sections."""
    label_rows = "".join(f"<tr><td>{html.escape(k)}</td><td class='label-{html.escape(k)}'>"
                         f"{html.escape(v)}</td></tr>" for k, v in labels.items())
    parts = [f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
             f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>", f"<table class='labels'>{label_rows}</table>"]
    for section in sections:
        if section.title:
            parts.append(f"<h2 style='font-size:15px'>{html.escape(section.title)}</h2>")
        if section.figures:
            parts.append("<div class='row'>")
            for figure in section.figures:
                height, width = figure.picture.shape[:2]
                parts.append(
                    f"<figure class='fig-{html.escape(figure.name)}'><figcaption>"
                    f"{html.escape(figure.caption)}</figcaption><img alt='"
                    f"{html.escape(figure.caption)}' width='{width}' height='{height}' "
                    f"src='{png_data_uri(figure.picture)}'></figure>")
            parts.append("</div>")
        if section.html_text:
            parts.append(f"<div class='text'>{section.html_text}</div>")
    parts.append("</body></html>\n")
    return "".join(parts)


def write_html(path: str | os.PathLike[str], title: str, labels: dict[str, str],
               sections: Sequence[Section]) -> Path:
    """Write :func:`page_html` to ``path`` (a ``.html`` name in an existing folder)."""
    target = check_output_path(path, (".html", ".htm"))
    try:
        target.write_text(page_html(title, labels, sections), encoding="utf-8")
    except OSError as exc:
        msg = f"cannot write {str(target)!r}: {exc.strerror or exc}"
        raise InvalidOptionError(msg) from exc
    return target
