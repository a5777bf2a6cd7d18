"""The report as one self-contained HTML page: figures embedded as base64, formulas pre-rendered
as MathML (which browsers typeset natively), no script, stylesheet or font fetched from the web."""
from __future__ import annotations

import re
from pathlib import Path

from . import files
from .errors import ReportError

# The lab template without the blocks that load JavaScript from CDNs (require.js, MathJax,
# mermaid, the widget manager): the report has static figures only, and its formulas are
# converted to MathML before the export (`render_math`), so MathJax is not needed.
OFFLINE_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""


# Code (fenced blocks, inline spans) is left alone; outside it, $$...$$ is a displayed formula and
# $...$ an inline one (no space just inside the dollars, no digit right after: "$5 and $6" is prose).
_CODE = re.compile(r"(```.*?```|`[^`\n]*`)", re.DOTALL)
_DISPLAY_MATH = re.compile(r"\$\$(.+?)\$\$", re.DOTALL)
_INLINE_MATH = re.compile(r"(?<![\\$])\$(?=\S)([^$\n]+?)(?<=\S)\$(?!\d)")


def render_math(text: str) -> str:
    """Markdown with every LaTeX formula replaced by MathML (latex2mathml), typeset by the browser
    without any script. A formula latex2mathml cannot parse raises ValueError naming it."""
    from latex2mathml.converter import convert

    def to_mathml(latex: str, display: str) -> str:
        try:
            return convert(latex.strip(), display=display)
        except Exception as error:  # latex2mathml raises its own exception types, and a few built-ins
            raise ReportError(f"cannot render the formula {latex.strip()!r} as MathML: {error}") from None

    def outside_code(part: str) -> str:
        part = _DISPLAY_MATH.sub(lambda m: "\n\n" + to_mathml(m.group(1), "block") + "\n\n", part)
        return _INLINE_MATH.sub(lambda m: to_mathml(m.group(1), "inline"), part)

    return "".join(part if _CODE.fullmatch(part) else outside_code(part) for part in _CODE.split(text))


def _exporter():
    """nbconvert's HTMLExporter with embedded images that leaves inline HTML (the MathML) whole.

    With `embed_images=True`, nbconvert's Markdown renderer passes every inline HTML token through
    BeautifulSoup to rewrite `<img src>`; mistune hands it one tag at a time (`<math ...>`, `<mi>`,
    `</mi>`, ...), and BeautifulSoup closes each opening tag at once, so every inline formula
    became an empty `<math></math>` followed by loose text (jupyter/nbconvert#2020, open). Only
    a token that holds an `<img` needs rewriting, so only such tokens go through BeautifulSoup.
    """
    import jinja2
    from nbconvert import HTMLExporter
    from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath
    from jinja2 import pass_context

    class Renderer(IPythonRenderer):
        def _html_embed_images(self, html: str) -> str:
            return super()._html_embed_images(html) if "<img" in html.lower() else html

    class Exporter(HTMLExporter):
        @pass_context
        def markdown2html(self, context, source):  # HTMLExporter.markdown2html with the renderer above
            cell = context.get("cell", {})
            renderer = Renderer(escape=False, attachments=cell.get("attachments", {}), embed_images=self.embed_images,
                                path=context.get("resources", {}).get("metadata", {}).get("path", ""),
                                anchor_link_text=self.anchor_link_text,
                                exclude_anchor_links=self.exclude_anchor_links, **self.lexer_options)
            return MarkdownWithMath(renderer=renderer).render(source)

    return Exporter(extra_loaders=[jinja2.DictLoader({"offline.html.j2": OFFLINE_TEMPLATE})],
                    template_file="offline.html.j2", embed_images=True)


def export_html(notebook: Path, html: Path, image_dir: Path | None = None) -> Path:
    """Write `notebook` as a single HTML file with embedded images, formulas as MathML and no
    external scripts. Markdown images with a relative path are read from `image_dir` (default:
    the notebook's folder; the report passes the folder of the notebook it executed)."""
    import nbformat

    node = nbformat.read(notebook, as_version=4)
    for cell in node.cells:  # markdown cells, and the Markdown that code cells display
        if cell.cell_type == "markdown":
            cell.source = render_math(cell.source)
        for output in cell.get("outputs", []):
            if "text/markdown" in output.get("data", {}):
                output.data["text/markdown"] = render_math(output.data["text/markdown"])
    folder = Path(image_dir or Path(notebook).parent)
    body, _ = _exporter().from_notebook_node(node, resources={"metadata": {"path": str(folder)}})
    files.write_text(html, body, "html")
    return html
