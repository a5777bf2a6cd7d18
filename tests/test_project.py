"""Project files agree with each other: dependencies, the README's commands and tree, the CI script; and the
package keeps one home per concern (paths, recipes, tables, the verdict rule) and modules of a readable size."""
import os
import re
import tomllib
from pathlib import Path

import pytest

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


# ----------------------------------------------------------------------------- one home per concern (issue 21)

PACKAGE = ROOT / "hvae_lite"
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 350, 60
# path relative to the repository (a module) or "path:function" -> why it may stay longer.
ALLOWED_LONG = {
    "hvae_lite/exercises/checks.py": "one small checker per exercise step, in the order of the notebooks: "
                                     "split, a teacher would look for one exercise's checks in several files",
}


def _sources(*folders: Path) -> dict[str, str]:
    """Relative path -> text of every Python file under the folders."""
    return {str(p.relative_to(ROOT)): p.read_text() for folder in folders for p in sorted(folder.rglob("*.py"))}


def _too_long(path: str, text: str) -> list[str]:
    """What in one module breaks the size limits (and is not allowed with a reason)."""
    import ast

    found = []
    if len(text.splitlines()) > MAX_MODULE_LINES and path not in ALLOWED_LONG:
        found.append(f"{path}: {len(text.splitlines())} lines")
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            length = node.end_lineno - start + 1
            if length > MAX_FUNCTION_LINES and f"{path}:{node.name}" not in ALLOWED_LONG:
                found.append(f"{path}:{node.name}: {length} lines")
    return found


def test_no_module_or_function_is_too_long():
    found = [problem for path, text in _sources(PACKAGE).items() for problem in _too_long(path, text)]
    assert not found, (f"over {MAX_MODULE_LINES} lines per module or {MAX_FUNCTION_LINES} per function: {found}; "
                       "split it, or add it to ALLOWED_LONG with a one-line reason")
    assert all(reason.strip() for reason in ALLOWED_LONG.values())
    assert all((ROOT / key.split(":")[0]).is_file() for key in ALLOWED_LONG), "ALLOWED_LONG names a file that is gone"


# Each concern's definitions, and the one module allowed to hold them. A rule: (what, regex, home).
ONE_HOME = [
    ("a folder root from the package's own location", r"__file__", "hvae_lite/paths.py"),
    ("the user's cache folder", r"platformdirs|user_cache_(path|dir)", "hvae_lite/paths.py"),
    ("the download folder's environment variable", r"[\"']HVAE_LITE_DATA[\"']", "hvae_lite/paths.py"),
    ("a folder of the repository", r"/ [\"'](runs|results|checkpoints|mnist|notebooks|bench|pretrained)[\"']"
     r"|[\"'](runs|benchmarks|data)/[\w./-]*[\"']", "hvae_lite/paths.py"),
    ("the fast-mode switch", r"[\"']HVAE_LITE_FAST[\"']|^def fast_mode\b", "hvae_lite/recipes.py"),
    ("a training recipe", r"\bTrainConfig\(\s*\w+\s*=|\bRecipe\(|^\w*RECIPES?\s*[:=]", "hvae_lite/recipes.py"),
    ("a Markdown table", r"\|\s*---|---\s*\|", "hvae_lite/results.py"),
    ("the verdict rule and its statistics",
     r"^def (verdict|compare_paired|paired_difference|mean_stderr|clearly_less|plus_minus)\b|^class Verdict\b",
     "hvae_lite/results.py"),
    ("reading the results files", r"^(RESULT_FILES|MEASURES)\s*[:=]|^def (read_results|result|measured)\b",
     "hvae_lite/results.py"),
]


def _second_homes(sources: dict[str, str]) -> list[str]:
    """Every line outside its concern's home that defines (or builds by hand) what ONE_HOME gives a home."""
    found = []
    for what, pattern, home in ONE_HOME:
        regex = re.compile(pattern, flags=re.M)
        for path, text in sources.items():
            if path != home:
                found += [f"{path}:{text.count(chr(10), 0, m.start()) + 1}: {what} (its home is {home})"
                          for m in regex.finditer(text)]
    return found


def test_paths_recipes_tables_and_the_verdict_rule_each_have_one_home():
    found = _second_homes(_sources(PACKAGE, ROOT / "benchmarks"))
    assert not found, "defined outside its one home:\n" + "\n".join(found)
    for _, _, home in ONE_HOME:
        assert (ROOT / home).is_file()


@pytest.mark.parametrize("line", [
    'DATA = Path(__file__).resolve().parent / "data"',
    'CACHE = platformdirs.user_cache_path("hvae_lite")',
    'RUNS = REPO_ROOT / "runs" / "bench"',
    'init_from = "runs/checkpoints/matryoshka.pt"',
    'FAST = os.environ.get("HVAE_LITE_FAST") == "1"',
    "LONG = TrainConfig(epochs=300, lr=1e-3)",
    'lines = ["| a | b |", "|---|---|"]',
    "def verdict(a, b, se):",
    "def mean_stderr(values):",
])
def test_a_second_definition_is_found(line):
    """The check above fails when someone adds a second home, e.g. in a benchmark script."""
    assert _second_homes({"benchmarks/new.py": line + "\n"})


def _readme_tree() -> list[str]:
    """The lines of README.md's "What is inside" block that describe the package."""
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"## What is inside\n+```\n(.*?)```", readme, flags=re.S).group(1)
    lines = block.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("hvae_lite/"))
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].startswith(" ")), len(lines))
    return lines[start + 1:end]


def test_readme_lists_every_module_and_subpackage_of_the_package():
    tree = "\n".join(_readme_tree())
    listed_modules = set(re.findall(r"\b(\w+\.py)\b", tree))
    listed_packages = set(re.findall(r"^\s+(\w+)/", tree, flags=re.M))
    packages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    modules = {p.name for p in PACKAGE.glob("*.py")} - {"__init__.py"}
    modules |= {p.name for package in packages - {"exercises"} for p in (PACKAGE / package).glob("*.py")} - {"__init__.py"}
    assert listed_packages == packages, f"README.md lists {sorted(listed_packages)}, the package has {sorted(packages)}"
    assert listed_modules == modules, (f"only in README.md: {sorted(listed_modules - modules)}; "
                                       f"only in hvae_lite/: {sorted(modules - listed_modules)}")
