"""Student notebooks generated from the solution notebooks (the nbgrader convention, without nbgrader).

In a solution notebook's code cells the answer sits between `### BEGIN SOLUTION` and
`### END SOLUTION`; the student copy has `raise NotImplementedError()` there instead, at the
same indentation, and no outputs. nbgrader's ClearSolutions does the same, but nbgrader would
add a grading database, the Notebook 7 app and JupyterLab extensions to the kit for this one step.
"""
from __future__ import annotations

import copy
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from .. import files, paths
from ..errors import InputError

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
STUB = "raise NotImplementedError()"
EXERCISES_DIR = paths.NOTEBOOKS_DIR / "exercises"
SOLUTIONS_DIR, STUDENT_DIR = EXERCISES_DIR / "solutions", EXERCISES_DIR / "student"


def clear_solutions(source: str) -> str:
    """Replace every BEGIN/END SOLUTION region (marker lines included) by an indented stub."""
    _check_source(source)
    lines, inside = [], False
    for number, line in enumerate(source.splitlines(), start=1):
        marker = line.strip()
        if marker == BEGIN:
            if inside:
                raise InputError(f"line {number}: {BEGIN} inside another solution region")
            inside = True
            lines.append(line[: len(line) - len(line.lstrip())] + STUB)
        elif marker == END:
            if not inside:
                raise InputError(f"line {number}: {END} without a {BEGIN}")
            inside = False
        elif not inside:
            lines.append(line)
    if inside:
        raise InputError(f"a {BEGIN} is never closed")
    return "\n".join(lines)


def strip_markers(source: str) -> str:
    """The solution as a student would write it: the marker lines removed, the answer kept."""
    _check_source(source)
    return "\n".join(line for line in source.splitlines() if line.strip() not in (BEGIN, END))


def _check_source(source: object) -> None:
    if not isinstance(source, str):
        raise InputError(f"a cell's source must be a string, got {type(source).__name__}")


def student_notebook(solution: NotebookNode) -> NotebookNode:
    """A copy of a solution notebook with its answers cleared and every output removed."""
    student = copy.deepcopy(solution)
    for cell in student.cells:
        if cell.cell_type == "code":
            cell.source = clear_solutions(cell.source)
            cell.outputs, cell.execution_count = [], None
        elif BEGIN in cell.source:
            raise InputError("solution markers belong in code cells only")
    return student


def solution_paths(solutions_dir: Path = SOLUTIONS_DIR) -> list[Path]:
    return sorted(solutions_dir.glob("*.ipynb"))


def generate(solutions_dir: Path = SOLUTIONS_DIR, student_dir: Path = STUDENT_DIR) -> list[Path]:
    """Write one student notebook per solution notebook; returns the paths written."""
    student_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in solution_paths(solutions_dir):
        target = student_dir / path.name
        text = nbformat.writes(student_notebook(nbformat.read(path, as_version=4)))
        files.write_text(target, text if text.endswith("\n") else text + "\n", "notebook")  # as nbformat.write, atomically
        written.append(target)
    return written


def stale_notebooks(solutions_dir: Path = SOLUTIONS_DIR, student_dir: Path = STUDENT_DIR) -> list[str]:
    """Names of student notebooks that are missing, extra, or whose cells differ from a fresh generation."""
    expected = {path.name: path for path in solution_paths(solutions_dir)}
    present = {path.name for path in student_dir.glob("*.ipynb")}
    stale = sorted((present - set(expected)) | (set(expected) - present))
    for name in sorted(set(expected) & present):
        fresh = student_notebook(nbformat.read(expected[name], as_version=4))
        committed = nbformat.read(student_dir / name, as_version=4)
        if _cells(fresh) != _cells(committed):
            stale.append(name)
    return stale


def _cells(notebook: NotebookNode) -> list[tuple[str, str, int]]:
    return [(cell.cell_type, cell.source, len(cell.get("outputs", []))) for cell in notebook.cells]
