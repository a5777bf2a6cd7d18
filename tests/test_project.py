"""Project files agree with each other: dependencies, the README's commands, the CI script."""
import os
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONDA_TO_PIP = {"pytorch": "torch"}


def _name(requirement: str) -> str:
    """'torch>=2.2' -> 'torch'; names compared the way pip does (case, '-' and '_' alike)."""
    name = re.match(r"\s*([A-Za-z0-9_.\-]+)", requirement).group(1).lower().replace("_", "-")
    return CONDA_TO_PIP.get(name, name)


def _pyproject_packages() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        requirements += extra
    return {_name(r) for r in requirements}


def _environment_packages() -> set[str]:
    """The conda `dependencies:` list (and a nested `pip:` list), without python and pip."""
    names = set()
    in_dependencies = False
    for line in (ROOT / "environment.yml").read_text().splitlines():
        if re.match(r"^\S", line):  # a top-level key
            in_dependencies = line.startswith("dependencies:")
            continue
        item = re.match(r"^\s+-\s+([^#\s][^#]*)", line)
        if in_dependencies and item and not item.group(1).strip().startswith("pip:"):
            names.add(_name(item.group(1)))
    return names - {"python", "pip"}


def _make_targets() -> set[str]:
    return set(re.findall(r"^([A-Za-z0-9_.\-]+)\s*:(?!=)", (ROOT / "Makefile").read_text(), flags=re.M))


def test_environment_and_pyproject_list_the_same_packages():
    pip, conda = _pyproject_packages(), _environment_packages()
    assert {"torch", "numpy", "mlxtend", "pytest"} <= pip
    assert pip == conda, f"only in pyproject.toml: {sorted(pip - conda)}; only in environment.yml: {sorted(conda - pip)}"


def test_readme_commands_are_makefile_targets():
    readme = ROOT / "README.md"
    assert readme.is_file(), "README.md is missing"
    # `make x` in backticks, or a line of a code block that starts with make (or $ make).
    commands = set(re.findall(r"(?:^\s*(?:\$\s*)?|`)make\s+([A-Za-z0-9_.\-]+)", readme.read_text(), flags=re.M))
    assert {"test"} <= commands and len(commands) >= 2, f"README.md gives the make commands {sorted(commands)}"
    missing = commands - _make_targets()
    assert not missing, f"README.md runs `make {sorted(missing)}` but the Makefile has no such target"


def test_make_test_runs_the_tests_in_fast_mode():
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^test:.*\n((?:\t.*\n)+)", makefile, flags=re.M)
    assert recipe, "no test target"
    assert re.search(r"pytest .*\btests\b", recipe.group(1)) and "HVAE_LITE_FAST=1" in recipe.group(1)


def test_ci_script_runs_make_test():
    script = ROOT / ".ci" / "run"
    assert os.access(script, os.X_OK), ".ci/run must be executable"
    lines = [line.strip() for line in script.read_text().splitlines()]
    assert lines[0].startswith("#!")
    commands = [line for line in lines if line and not line.startswith("#")]
    assert "make test" in commands


def test_environment_takes_everything_from_conda_forge():
    """PyTorch's own conda channel stopped at 2.5: the `pytorch` and `nvidia` channels pin an old torch."""
    text = (ROOT / "environment.yml").read_text()
    channels = re.search(r"^channels:\n((?:\s+-.*\n)+)", text, flags=re.M)
    assert channels and re.findall(r"-\s*(\S+)", channels.group(1)) == ["conda-forge"]
    assert "pytorch-cuda" not in text
