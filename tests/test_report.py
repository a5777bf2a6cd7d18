"""The report: papermill runs notebooks/report.ipynb, nbconvert writes a self-contained HTML page."""
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from hvae_lite.cli import parse_value
from hvae_lite.errors import ReportError
from hvae_lite.export import export_html, render_math
from hvae_lite.paths import REPO_ROOT
from hvae_lite.pretrained import mixture_variant
from hvae_lite.recipes import recipe_for
from hvae_lite.report import REPORT_NOTEBOOK, check_parameters

# A tag that makes a browser fetch something from the web: script src, link href, img src, CSS imports.
EXTERNAL = re.compile(r"<(script|link|img|iframe)\b[^>]*\b(src|href)\s*=\s*[\"']?(https?:)?//"
                      r"|@import\s+(url\()?[\"']?(https?:)?//|url\([\"']?(https?:)?//", re.IGNORECASE)


def run_report(out: Path, *parameters: str) -> subprocess.CompletedProcess:
    """`python -m hvae_lite report` in fast mode, as a user would run it."""
    env = dict(os.environ, HVAE_LITE_FAST="1", MPLBACKEND="Agg",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
    return subprocess.run([sys.executable, "-m", "hvae_lite", "report", "--out", str(out), "--quiet", *parameters],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def fast_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    return out, run_report(out)


def test_fast_report_writes_notebook_and_html(fast_report):
    out, result = fast_report
    assert result.returncode == 0, result.stderr[-3000:]
    notebook = nbformat.read(out / "report.ipynb", as_version=4)
    errors = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    assert (out / "report.html").stat().st_size > 0


def test_html_embeds_its_figures_and_fetches_nothing(fast_report):
    out, _ = fast_report
    html = (out / "report.html").read_text(encoding="utf-8")
    assert len(re.findall(r"<img[^>]+src=\"data:image/png;base64,", html)) >= 8  # every figure, inline
    assert not EXTERNAL.search(html), EXTERNAL.search(html).group(0)


def test_an_unknown_preset_is_refused_before_any_cell_runs(tmp_path):
    result = run_report(tmp_path, "-p", "PRESET", "no-such-preset")
    assert result.returncode == 1
    assert "no-such-preset" in result.stderr and "matryoshka" in result.stderr  # names it and the choices
    assert not (tmp_path / "report.ipynb").exists() and not (tmp_path / "report.html").exists()


def test_unknown_parameter_is_refused_before_running(tmp_path):
    result = run_report(tmp_path, "-p", "EPOCS", "3")
    assert result.returncode == 1
    assert "EPOCS" in result.stderr and "EPOCHS" in result.stderr
    assert not (tmp_path / "report.ipynb").exists()


def test_check_parameters_knows_the_notebook_parameters():
    check_parameters({"PRESET": "matryoshka", "DEPTH": 4, "AR": True, "EPOCHS": 2, "SEED": 1, "USE_CHECKPOINTS": False,
                      "DATA": "embedded"})
    check_parameters({"FAST": True})  # FAST decides the mode (hvae_lite.parameters)
    with pytest.raises(ValueError, match="FASTER"):
        check_parameters({"FASTER": True})


def test_parse_value_reads_literals_else_strings():
    assert parse_value("3") == 3 and parse_value("0.5") == 0.5
    assert parse_value("True") is True and parse_value("None") is None
    assert parse_value("no-td-path") == "no-td-path"


def test_export_html_is_offline_even_with_maths_and_widgets(tmp_path):
    """The template drops the CDN scripts nbconvert adds for MathJax, require.js and widgets."""
    png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
    cell = nbformat.v4.new_code_cell("figure", outputs=[nbformat.v4.new_output(
        "display_data", data={"image/png": png, "text/plain": "<Figure>"})])
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("The ELBO $\\log p(x) \\ge 0$"), cell])
    notebook.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}, "version_major": 2,
                                                                                   "version_minor": 0}}
    nbformat.write(notebook, tmp_path / "n.ipynb")
    html = export_html(tmp_path / "n.ipynb", tmp_path / "n.html").read_text(encoding="utf-8")
    assert f"data:image/png;base64,{png}" in html
    assert "ELBO" in html
    assert not EXTERNAL.search(html), EXTERNAL.search(html).group(0)


def test_export_html_keeps_inline_mathml_whole_and_still_embeds_markdown_images(tmp_path):
    """nbconvert's embed_images used to close every inline tag at once: <math></math> then loose text."""
    import base64

    import bs4

    png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
    (tmp_path / "dot.png").write_bytes(base64.b64decode(png))
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(
        "The bound $\\log p(x \\mid z)$ and <span class='note'>a <b>bold</b> word <img src='dot.png'></span>\n\n"
        "![a dot](dot.png)")])
    nbformat.write(notebook, tmp_path / "n.ipynb")
    soup = bs4.BeautifulSoup(export_html(tmp_path / "n.ipynb", tmp_path / "n.html").read_text(), "html.parser")
    (math,) = soup.find_all("math")
    assert math.get_text() == "logp(x\u2223z)" and len(math.find_all("mi")) == 4
    assert soup.find("span", class_="note").find("b").get_text() == "bold"
    sources = [img["src"] for img in soup.find_all("img")]
    assert sources == [f"data:image/png;base64,{png}"] * 2  # the inline <img> and the Markdown image


def test_render_math_turns_formulas_into_mathml_and_leaves_code_and_prices_alone():
    text = ("Inline $\\mathrm{KL}(q \\| p)$ and\n$$h_i = h_{i-1} + g_i([h_{i-1}, z_i])$$\n"
            "code `x = $a$` and prices $5 and $6.")
    rendered = render_math(text)
    assert rendered.count("<math") == 2 and 'display="block"' in rendered
    assert '<mi mathvariant="normal">K</mi>' in rendered and "<msub><mi>h</mi><mi>i</mi></msub>" in rendered
    assert "`x = $a$`" in rendered and "prices $5 and $6." in rendered
    assert "\\mathrm" not in rendered and "$$" not in rendered
    with pytest.raises(ReportError, match="cannot render the formula"):
        render_math("$\\frac{1}{$ and $x^{$")


def test_the_report_html_shows_typeset_formulas_not_latex_source(tmp_path):
    """Every formula of the report notebook (markdown and Markdown outputs) arrives as MathML."""
    html = export_html(REPORT_NOTEBOOK, tmp_path / "report.html").read_text(encoding="utf-8")
    n_formulas = sum(cell.source.count("$") for cell in nbformat.read(REPORT_NOTEBOOK, as_version=4).cells
                     if cell.cell_type == "markdown") // 2
    assert n_formulas > 0 and html.count("<math") >= n_formulas
    import bs4  # each formula holds its content (tests/test_browser.py checks that Chromium typesets it)
    assert all(math.find() and math.get_text() for math in bs4.BeautifulSoup(html, "html.parser").find_all("math"))
    assert not re.search(r"\$[^$<>\n]*\\(mathrm|log|mid|sum|frac)", html)  # no LaTeX source left over


@pytest.mark.parametrize("fast", [False, True])
def test_the_report_finds_the_shipped_mixture_and_imputation_models(fast):
    config = recipe_for("matryoshka", fast).config
    assert mixture_variant(config, fast) == recipe_for("mixture", fast).config
    assert config.replace(conditional=True, ar_layers=0) == recipe_for("imputation", fast).config
