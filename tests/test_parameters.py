"""Notebook and report parameters: one spec (hvae_lite.parameters) that every notebook checks right
after its parameters cell and that `python -m hvae_lite report` checks before a kernel starts.
FAST decides the mode; a bad value is an InputError naming the parameter."""
import ast
import os
import re
from pathlib import Path

import nbformat
import pytest

from hvae_lite.__main__ import main
from hvae_lite.errors import InputError
from hvae_lite.parameters import MODE, NOTEBOOKS, check_parameters
from hvae_lite.recipes import FAST_ENV

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_FILES = sorted((ROOT / "notebooks").glob("*.ipynb")) + sorted((ROOT / "notebooks" / "exercises").glob("*/*.ipynb"))
QUICKSTART = {"FAST": None, "SEED": 0, "N_SAMPLES": None, "N_TEMPERATURE": None, "N_SHOW": 8, "N_EVAL": None}


def _cells(path: Path) -> tuple[str, str]:
    """The source of the parameters cell and of the code cell after it."""
    cells = nbformat.read(path, as_version=4).cells
    index = next(i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", []))
    return cells[index].source, cells[index + 1].source


def _shown(value) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else repr(value)


@pytest.mark.parametrize("path", NOTEBOOK_FILES, ids=lambda p: p.stem)
def test_each_notebook_checks_exactly_its_parameters_first(path):
    spec = NOTEBOOKS[path.stem]
    parameters, after = _cells(path)
    assigned = [(node.targets[0].id, ast.literal_eval(node.value)) for node in ast.parse(parameters).body
                if isinstance(node, ast.Assign)]
    assert [name for name, _ in assigned] == list(spec), "the parameters cell and hvae_lite.parameters disagree"
    comments = {line.split("=")[0].strip(): line.partition("#")[2] for line in parameters.splitlines() if "=" in line}
    for name, value in assigned:
        param = spec[name]
        if param.default is MODE:
            assert value is None, f"{name}: its value depends on the mode, so the notebook leaves it at None"
            full = "None: all" if param.full is None else f"None: {_shown(param.full)}"
            assert full in comments[name] and f"{_shown(param.fast)} in fast mode" in comments[name], (name, comments)
        else:
            assert value == param.default, name
    # The check comes right after the imports of the next cell, before anything uses a parameter.
    call = re.search(r"^([^\n=]*?) = check_parameters\(\s*\"(\w+)\", (.*?)\)(\.\w+)?$", after, flags=re.M | re.S)
    assert call and call.group(2) == path.stem
    assert re.sub(r"\s+", " ", call.group(3)) == ", ".join(f"{n}={n}" for n in spec)
    assigned_back = [call.group(1)] if call.group(4) else call.group(1).split(", ")  # NAME = ....NAME, or A, B = ...
    assert assigned_back == list(spec) and (not call.group(4) or call.group(4) == f".{call.group(1)}")
    code_before = [line for line in after[:call.start()].splitlines()
                   if line.strip() and not line.startswith(("import ", "from ", "%", "#"))]
    assert not code_before, code_before


def test_mode_dependent_parameters_follow_fast(monkeypatch):
    monkeypatch.setenv(FAST_ENV, "1")
    assert check_parameters("00_quickstart", **QUICKSTART) == (True, 0, 16, 8, 8, 100)
    assert check_parameters("00_quickstart", **{**QUICKSTART, "FAST": False}) == (False, 0, 64, 12, 8, 1000)
    assert os.environ[FAST_ENV] == "0"  # every kit function called afterwards runs in the full mode
    assert check_parameters("00_quickstart", **{**QUICKSTART, "FAST": True, "N_EVAL": 300}).N_EVAL == 300
    monkeypatch.setenv(FAST_ENV, "0")
    assert check_parameters("00_quickstart", **QUICKSTART).FAST is False
    assert check_parameters("01_one_latent_layer", **{name: (None if param.default is MODE else param.default)
                                                      for name, param in NOTEBOOKS["01_one_latent_layer"].items()
                                                      }).N_TRAIN is None  # None: all 4,000 digits


@pytest.mark.parametrize("changes, words", [
    ({"N_EVAL": -1}, "N_EVAL must be between 1 and 1000, got -1"),
    ({"N_EVAL": 5000}, "N_EVAL must be between 1 and 1000, got 5000"),
    ({"N_EVAL": 2.5}, "N_EVAL must be an integer"),
    ({"FAST": "abc"}, "FAST must be True or False, got 'abc'"),
    ({"SEED": 2**70}, "SEED must be a whole number from 0 to 2\\*\\*63 - 1"),
    ({"N_SHOW": None}, "N_SHOW must be given"),
    ({"N_SHOWS": 3}, r"unknown parameter\(s\) \['N_SHOWS'\]"),
])
def test_a_bad_parameter_is_an_input_error_naming_it(changes, words):
    with pytest.raises(InputError, match=words):
        check_parameters("00_quickstart", **{**QUICKSTART, **changes})


@pytest.mark.parametrize("name, value, words", [
    ("N_EVAL", "-1", "N_EVAL must be between 1 and 10000, got -1"),
    ("N_EVAL", "2000", r"N_EVAL must be <= 1000 \(the held-out digits of DATA='embedded'\)"),
    ("AR", "maybe", "AR must be True or False, got 'maybe'"),
    ("EPOCHS", "0", "EPOCHS must be between 1 and 100000, got 0"),
    ("FAST", "abc", "FAST must be True or False, got 'abc'"),
    ("PRESET", "cifar10", "PRESET must be one of"),
    ("DATA", "omniglot", "DATA must be one of 'embedded', 'full'"),
])
def test_report_parameters_are_refused_before_a_kernel_starts(tmp_path, capsys, name, value, words):
    assert main(["report", "--out", str(tmp_path / "r"), "--quiet", "-p", name, value]) == 1
    assert re.search(f"^error: {words}", capsys.readouterr().err)
    assert not (tmp_path / "r").exists()


def test_a_notebook_run_with_a_bad_parameter_stops_at_the_check(tmp_path):
    """papermill 00_quickstart.ipynb -p N_EVAL -1 used to print "held-out ELBO ... on -1 digits"."""
    import papermill

    out = tmp_path / "run.ipynb"
    env = {"PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]), FAST_ENV: "1",
           "MPLBACKEND": "Agg", "HVAE_LITE_HEADLESS": "1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        with pytest.raises(papermill.PapermillExecutionError) as failure:
            papermill.execute_notebook(str(ROOT / "notebooks" / "00_quickstart.ipynb"), str(out),
                                       parameters={"N_EVAL": -1}, cwd=str(ROOT / "notebooks"), progress_bar=False,
                                       kernel_name="python3")
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    assert failure.value.ename == "InputError" and "N_EVAL must be between 1 and 1000, got -1" in failure.value.evalue
    executed = nbformat.read(out, as_version=4)
    ran = [c for c in executed.cells if c.cell_type == "code" and c.get("execution_count")]
    assert len(ran) == 4  # the setup cell, the parameters, papermill's injected parameters, and the check: nothing after it


def test_student_notebooks_check_the_same_parameters():
    for solution in sorted((ROOT / "notebooks" / "exercises" / "solutions").glob("*.ipynb")):
        student = solution.parents[1] / "student" / solution.name
        assert _cells(student) == _cells(solution), solution.name

