"""The report: execute notebooks/report.ipynb with papermill, then export a self-contained HTML page.

`python -m hvae_lite report [--out reports] [-p name value ...]` writes `<out>/report.ipynb`
(the executed notebook, kept even when a cell fails, for inspection) and `<out>/report.html`
(`export.export_html`: figures embedded, formulas as MathML, nothing fetched from the web).
The notebook's models come from `pretrained.report_checkpoint` and `pretrained.mixture_variant`.
"""
from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import paths
from .errors import InputError, ReportError
from .export import export_html
from .files import check_target

REPORT_NOTEBOOK = paths.NOTEBOOKS_DIR / "report.ipynb"


@dataclass(frozen=True)
class ReportFiles:
    notebook: Path  # the executed notebook
    html: Path      # the self-contained page


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


@contextlib.contextmanager
def _kernel_environment() -> Iterator[None]:
    """Environment for the kernel papermill starts (it inherits ours), restored afterwards.

    The kernel must import this very package, installed or not, so its parent goes on the path;
    headless mode makes widgets (if any) also draw a static figure, which the HTML can show.
    """
    saved = dict(os.environ)
    python_paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    os.environ["PYTHONPATH"] = os.pathsep.join([str(paths.REPO_ROOT), *python_paths])
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
    check_target(files.notebook, "notebook")  # never over another kind of file, nor a shipped one
    check_target(files.html, "html")
    files.html.unlink(missing_ok=True)  # a failed run must not leave an older page looking current
    try:
        with _kernel_environment():
            papermill.execute_notebook(str(notebook), str(files.notebook), parameters=parameters,
                                       cwd=str(notebook.parent), progress_bar=progress)
    except papermill.PapermillExecutionError as error:
        raise ReportError(f"the report failed in cell {error.exec_count} ({error.ename}: {error.evalue}); "
                          f"the executed notebook is kept at {files.notebook}", files.notebook) from error
    export_html(files.notebook, files.html, image_dir=notebook.parent)
    return files
