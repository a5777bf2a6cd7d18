"""The report: execute notebooks/report.ipynb with papermill, then export a self-contained HTML page.

`python -m hvae_lite report [--out reports] [-p name value ...]` writes `<out>/report.ipynb`
(the executed notebook, kept even when a cell fails, for inspection) and `<out>/report.html`
(figures embedded as base64; formulas pre-rendered as MathML, which browsers typeset natively;
no script, stylesheet or font fetched from the web when opened).
`report_checkpoint` is the notebook's one decision: load a shipped model or train one;
`mixture_variant` names the mixture-prior model that goes with the report's model.
"""
from __future__ import annotations

import ast
import contextlib
import dataclasses
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .checkpoints import Checkpoint, ModelConfig
from .data import load_mnist
from .errors import InputError, ReportError
from .pretrained import CHECKPOINT_NAMES, REPO_ROOT, fast_mode, load_or_train, recipe_for
from .train import Trainer

REPORT_NOTEBOOK = REPO_ROOT / "notebooks" / "report.ipynb"

# The lab template without the blocks that load JavaScript from CDNs (require.js, MathJax,
# mermaid, the widget manager): the report has static figures only, and its formulas are
# converted to MathML before the export (`render_math`), so MathJax is not needed.
OFFLINE_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""


def report_checkpoint(config: ModelConfig, *, epochs: int | None = None, seed: int = 0,
                      data_source: str = "embedded", use_checkpoints: bool = True, fast: bool | None = None,
                      device: str = "auto", progress: bool = False) -> tuple[Checkpoint, str]:
    """A trained model of `config` and where it came from.

    With `use_checkpoints`, a shipped checkpoint (or, in fast mode, its tiny stand-in) whose config,
    seed and epochs are the ones asked for is loaded (`pretrained.load_or_train`). Otherwise the
    model is trained here with the shipped recipe's settings, `epochs` (None: the recipe's) and
    `seed` (training only: the held-out split is always seed 0's); fast mode trains on the fast
    recipe's few hundred digits.
    """
    base = recipe_for("matryoshka", fast)
    if use_checkpoints and data_source == "embedded":
        for name in CHECKPOINT_NAMES:
            recipe = recipe_for(name, fast)
            if recipe.config == config and seed == recipe.train.seed and epochs in (None, recipe.train.epochs):
                return load_or_train(name, fast=fast, device=device, progress=progress), f"checkpoint {name!r}"
    train_config = dataclasses.replace(base.train, epochs=epochs or base.train.epochs, seed=seed, device=device)
    data = load_mnist(data_source, seed=0)  # one held-out split for every report, whatever the seed
    if fast_mode(fast):
        data = data.subset(base.n_train, base.n_test)
    trainer = Trainer(config, train_config, data, progress=progress)
    trainer.fit()
    return trainer.checkpoint(), f"trained here ({train_config.epochs} epochs on {len(data.train_images)} digits)"


def mixture_variant(config: ModelConfig, fast: bool | None = None) -> ModelConfig:
    """The mixture-prior model that goes with `config` in the report: a factorised head and a
    mixture top prior on a top vector as small as the shipped `mixture` model's, so that the
    default preset finds that checkpoint instead of training a mixture model of its own."""
    return config.replace(top_prior="mixture", ar_layers=0,
                          top_latent_dim=recipe_for("mixture", fast).config.top_latent_dim)


@dataclass(frozen=True)
class ReportFiles:
    notebook: Path  # the executed notebook
    html: Path      # the self-contained page


def parse_value(text: str) -> Any:
    """A command-line parameter value: a Python literal (3, 0.5, True, None) or else a plain string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def check_parameters(parameters: dict[str, Any], notebook: Path = REPORT_NOTEBOOK) -> None:
    """Raise ValueError for a name the notebook's `parameters` cell does not define (papermill only warns)."""
    import papermill

    # papermill warns about lines such as `FAST = os.environ.get(...) == "1"`, which are meant to
    # stay out of its reach (fast mode comes from the environment): silence it while reading.
    translator_log = logging.getLogger("papermill.translators")
    level = translator_log.level
    translator_log.setLevel(logging.ERROR)
    try:
        known = papermill.inspect_notebook(str(notebook))
    finally:
        translator_log.setLevel(level)
    unknown = sorted(set(parameters) - set(known))
    if unknown:
        raise InputError(f"unknown report parameter(s) {unknown}; the report takes {sorted(known)}")


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
            raise ValueError(f"cannot render the formula {latex.strip()!r} as MathML: {error}") from None

    def outside_code(part: str) -> str:
        part = _DISPLAY_MATH.sub(lambda m: "\n\n" + to_mathml(m.group(1), "block") + "\n\n", part)
        return _INLINE_MATH.sub(lambda m: to_mathml(m.group(1), "inline"), part)

    return "".join(part if _CODE.fullmatch(part) else outside_code(part) for part in _CODE.split(text))


def export_html(notebook: Path, html: Path) -> Path:
    """Write `notebook` as a single HTML file with embedded images, formulas as MathML and no
    external scripts."""
    import jinja2
    import nbformat
    from nbconvert import HTMLExporter

    node = nbformat.read(notebook, as_version=4)
    for cell in node.cells:  # markdown cells, and the Markdown that code cells display
        if cell.cell_type == "markdown":
            cell.source = render_math(cell.source)
        for output in cell.get("outputs", []):
            if "text/markdown" in output.get("data", {}):
                output.data["text/markdown"] = render_math(output.data["text/markdown"])
    exporter = HTMLExporter(extra_loaders=[jinja2.DictLoader({"offline.html.j2": OFFLINE_TEMPLATE})],
                            template_file="offline.html.j2", embed_images=True)
    body, _ = exporter.from_notebook_node(node)
    html.write_text(body, encoding="utf-8")
    return html


@contextlib.contextmanager
def _kernel_environment() -> Iterator[None]:
    """Environment for the kernel papermill starts (it inherits ours), restored afterwards.

    The kernel must import this very package, installed or not, so its parent goes on the path;
    headless mode makes widgets (if any) also draw a static figure, which the HTML can show.
    """
    saved = dict(os.environ)
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *paths])
    os.environ.setdefault("HVAE_LITE_HEADLESS", "1")
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def run_report(out_dir: str | Path = "reports", parameters: dict[str, Any] | None = None,
               notebook: Path = REPORT_NOTEBOOK, progress: bool = False) -> ReportFiles:
    """Execute the report notebook with `parameters` into `out_dir` and export it to HTML.

    Raises ReportError when a cell fails (the executed notebook stays in `out_dir`).
    """
    import papermill

    parameters = dict(parameters or {})
    check_parameters(parameters, notebook)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = ReportFiles(out_dir / "report.ipynb", out_dir / "report.html")
    files.html.unlink(missing_ok=True)  # a failed run must not leave an older page looking current
    try:
        with _kernel_environment():
            papermill.execute_notebook(str(notebook), str(files.notebook), parameters=parameters,
                                       cwd=str(notebook.parent), progress_bar=progress)
    except papermill.PapermillExecutionError as error:
        raise ReportError(f"the report failed in cell {error.exec_count} ({error.ename}: {error.evalue}); "
                          f"the executed notebook is kept at {files.notebook}", files.notebook) from error
    export_html(files.notebook, files.html)
    return files
