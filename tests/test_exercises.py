"""Exercises: checkers pass the reference answers and explain wrong ones; references agree with the
kit; the student notebooks are generated from the solution notebooks and are up to date."""
import inspect
import math
import re

import nbformat
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from nbclient import NotebookClient
from scipy.optimize import linear_sum_assignment
from torch.distributions import Normal, kl_divergence

from hvae_lite.blocks import MaskedConv2d
from hvae_lite.config import get_preset
from hvae_lite.distributions import DiagonalGaussian, soft_clamp
from hvae_lite.errors import InputError
from hvae_lite.evaluate import clustering_accuracy as kit_clustering_accuracy
from hvae_lite.exercises import CHECKERS, PREDICTION_CHECKERS, CheckResult, check_reach_prediction
from hvae_lite.exercises import reference as ref
from hvae_lite.exercises.__main__ import main
from hvae_lite.exercises.demos import (causal_reach, gradient_estimates, merge_step_in, path_gradients, recipe_challenge,
                                       rows_above, train_with_kl_term)
from hvae_lite.exercises.notebooks import (BEGIN, END, SOLUTIONS_DIR, STUB, STUDENT_DIR, clear_solutions,
                                           solution_paths, stale_notebooks, strip_markers, student_notebook)
from hvae_lite.impute import impute_iterative
from hvae_lite.model import HVAE
from hvae_lite.objectives import iwae_log_likelihood, training_loss
from hvae_lite.train import TrainConfig, Trainer


# --- typical wrong answers, written as a student would, with the words the feedback must contain ---

def _naive_iwae(log_w):
    return torch.log(torch.exp(log_w).mean(0))


def _purity(assignments, labels):
    a, t = np.asarray(assignments), np.asarray(labels)
    return sum(np.bincount(t[a == c]).max() for c in np.unique(a)) / len(t)


def _min_cost_matching(assignments, labels):
    """The assignment problem solved the wrong way round: the fewest examples right."""
    a, t = np.asarray(assignments), np.asarray(labels)
    counts = np.zeros((a.max() + 1, t.max() + 1))
    np.add.at(counts, (a, t), 1)
    rows, cols = linear_sum_assignment(counts)
    return float(counts[rows, cols].sum() / len(t))


def _imputation_with(fill):
    def step(model, x, observed):
        with torch.no_grad():
            probs = torch.sigmoid(model(x).params)
        return observed * x + (1 - observed) * fill(probs)
    return step


WRONG_ANSWERS = {
    "reparameterize": [
        (lambda m, lv, e: m + torch.exp(lv) * e, "variance exp(logvar)"),
        (lambda m, lv, e: m + torch.sqrt(lv) * e, "A square root or log of the log-variance"),
        (lambda m, lv, e: (m + torch.exp(0.5 * lv) * e).detach(), "no gradient flows"),
        (lambda m, lv, e: m + torch.exp(0.5 * lv) * torch.randn_like(m), "use the `eps` argument"),
        (lambda m, lv, e: m.numpy() + np.exp(0.5 * lv.numpy()) * e.numpy(), "should be a torch tensor"),
    ],
    "gaussian_kl": [
        (lambda mq, lq, mp, lp: (0.5 * (lp.exp() - lq.exp() + (lq.exp() + (mq - mp) ** 2) / lp.exp() - 1))
         .flatten(1).sum(1), "variance where the log-variance belongs"),
        (lambda mq, lq, mp, lp: 0.5 * (lp - lq + (lq.exp() + (mq - mp) ** 2) / lp.exp() - 1),
         "Sum the KL over every dimension except the batch"),
        (lambda mq, lq, mp, lp: (0.5 * (lp - lq + (lq.exp() + (mq - mp) ** 2) / lp.exp() - 1)).sum(1),
         "expected (B,) = (2,), got (2, 4, 4)"),
        (lambda mq, lq, mp, lp: ref.gaussian_kl(mp, lp, mq, lq), "KL(p || q)"),
        (lambda mq, lq, mp, lp: (0.5 * (lp - lq + (lq.exp() + (mq - mp) ** 2) / lp.exp()) - 1).flatten(1).sum(1),
         "negative"),
        (lambda mq, lq, mp, lp: (0.5 * (lp - lq + (lq.exp() + (mq - mp) ** 2) / lp.exp() - 1)).flatten(1).mean(1),
         "averaged the KL over the dimensions"),
        (lambda mq, lq, mp, lp: 3 * ref.gaussian_kl(mq, lq, mp, lp), "3 times the expected one"),
    ],
    "bernoulli_elbo": [
        (lambda lg, x, kl: -F.binary_cross_entropy_with_logits(lg, x, reduction="none").flatten(1).sum(1)
         + kl.sum(1), "subtracted, not added"),
        (lambda lg, x, kl: (x * torch.log(torch.sigmoid(lg)) + (1 - x) * torch.log(1 - torch.sigmoid(lg)))
         .flatten(1).sum(1) - kl.sum(1), "binary_cross_entropy_with_logits"),
        (lambda lg, x, kl: -F.binary_cross_entropy_with_logits(lg, x) - kl.sum(1).mean(), "wrong shape"),
        (lambda lg, x, kl: -ref.bernoulli_elbo(lg, x, kl), "the loss"),
        (lambda lg, x, kl: -F.binary_cross_entropy_with_logits(lg, x) - kl.sum(1), "reduction='mean'"),
        (lambda lg, x, kl: -F.binary_cross_entropy_with_logits(lg, x, reduction="sum") - kl.sum(1), "whole batch"),
        (lambda lg, x, kl: ref.bernoulli_elbo(lg, x, kl) + kl.sum(1) - kl.sum(), "summed the KL over the batch"),
    ],
    "iwae_bound": [
        (lambda log_w: log_w.mean(0), "that is the ELBO"),
        (_naive_iwae, "torch.logsumexp"),
        (lambda log_w: torch.logsumexp(log_w, 1) - math.log(log_w.shape[1]), "expected (B,) = (4,), got (5,)"),
        (lambda log_w: torch.logsumexp(log_w, 0), "subtract log k"),
        (lambda log_w: torch.logsumexp(log_w, 0) / log_w.shape[0], "divided the logsumexp by k"),
        (lambda log_w: torch.logsumexp(log_w, 0) - math.log(log_w.shape[1]), "log of the batch size"),
    ],
    "causal_mask": [
        (lambda k, t: ref.causal_mask(k, "B"), "includes the centre pixel"),
        (lambda k, t: ref.causal_mask(k, t).T, "transposed"),
        (lambda k, t: torch.cat([ref.causal_mask(k, t)[:k // 2 + 1], torch.ones(k - k // 2 - 1, k)]), "rows below"),
    ],
    "top_down_update": [
        (lambda h, z, g: g(torch.cat([h, z], 1)), "alone"),
        (lambda h, z, g: h + g(torch.cat([h, z], 0)), "concatenate h and z along the channel dimension"),
    ],
    "merge_step": [
        (lambda h, b, m, r, head: (r(torch.cat([h, b, m], 1)), *head(r(torch.cat([h, b, m], 1))).chunk(2, 1)),
         "alone"),
        (lambda h, b, m, r, head: (m + r(torch.cat([h, b, m], 1)), *head(m).chunk(2, 1)), "old merge state"),
        (lambda h, b, m, r, head: (lambda m2: (m2, *reversed(head(m2).chunk(2, 1))))(m + r(torch.cat([h, b, m], 1))),
         "swapped"),
        (lambda h, b, m, r, head: {"m": m}, "return three things"),
    ],
    "clustering_accuracy": [
        (lambda a, t: float((np.asarray(a) == np.asarray(t)).mean()), "compared cluster ids with labels directly"),
        (_purity, "one-to-one"),
        (lambda a, t: 100 * ref.clustering_accuracy(a, t), "percentage"),
        (_min_cost_matching, "maximize=True"),
    ],
    "imputation_step": [
        (_imputation_with(lambda probs: probs), "not 0 or 1"),
        (_imputation_with(lambda probs: (probs > 0.5).float()), "do not follow the model's probabilities"),
        (lambda model, x, observed: (1 - observed) * x + observed * torch.bernoulli(torch.sigmoid(model(x).params)),
         "changed observed pixels"),  # the mask the wrong way round
    ],
    "free_bits_kl": [
        (lambda kl, floor: kl.clamp(min=floor).mean(0), "average first, then max"),
        (lambda kl, floor: kl.mean(0), "left out the floor"),
        (lambda kl, floor: kl.mean(0).clamp(max=floor), "capped the KL"),
        (lambda kl, floor: torch.clamp(kl.mean(0), min=floor).sum(), "expected (n_layers,)"),
        (lambda kl, floor: torch.clamp(kl.mean(0), min=floor).detach(), "no gradient flows"),
        (lambda kl, floor: torch.maximum(kl.mean(0), torch.tensor(floor)).numpy(), "should be a torch tensor"),
        (lambda kl, floor: kl.sum(0).clamp(min=floor), "summed the KL over the batch"),
        (lambda kl, floor: kl.clamp(min=floor).sum(0), "floored each image and summed"),
    ],
}


def _not_implemented(*args):
    raise NotImplementedError()


def test_every_exercise_has_a_checker_and_wrong_answers():
    assert len(CHECKERS) >= 8
    assert set(WRONG_ANSWERS) == set(CHECKERS) == set(ref.__all__)


@pytest.mark.parametrize("name", sorted(CHECKERS))
def test_checker_passes_the_reference(name, capsys):
    result = CHECKERS[name](getattr(ref, name))
    assert isinstance(result, CheckResult)
    assert result.passed, result.message
    assert result.message.startswith("correct")
    assert "[PASSED]" in capsys.readouterr().out  # a passing check says so plainly


@pytest.mark.parametrize("name", sorted(CHECKERS))
def test_checker_says_not_implemented(name, capsys):
    result = CHECKERS[name](_not_implemented)
    assert not result.passed
    assert "not implemented yet" in result.message
    assert "[NOT YET]" in capsys.readouterr().out


@pytest.mark.parametrize("name, wrong, hint", [(name, wrong, hint) for name, answers in WRONG_ANSWERS.items()
                                               for wrong, hint in answers])
def test_checker_explains_typical_mistakes(name, wrong, hint):
    result = CHECKERS[name](wrong, quiet=True)
    assert not result.passed
    assert hint in result.message, result.message


def _raises_value_error(*args):
    raise ValueError("boom")


@pytest.mark.parametrize("name", sorted(CHECKERS))
@pytest.mark.parametrize("answer, hint", [
    (lambda *args: None, ""),
    (lambda *args: "a string", ""),
    (lambda: 0, "raised TypeError"),
    (_raises_value_error, "raised ValueError"),
    (lambda *args: torch.full((3,), float("nan")), ""),
    (42, "pass your function itself"),
    (lambda *args: undefined_name, "Did you run the cells above"),  # noqa: F821
])
def test_checker_never_raises(name, answer, hint):
    result = CHECKERS[name](answer, quiet=True)
    assert not result.passed
    assert hint in result.message and len(result.message) > 20


def test_checker_leaves_the_callers_random_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    CHECKERS["reparameterize"](ref.reparameterize, quiet=True)
    assert torch.equal(torch.rand(3), expected)


# --- the reference answers agree with the kit's own implementation ---

def test_reparameterize_matches_kit_sampling():
    mean, logvar = torch.randn(4, 3), torch.randn(4, 3)
    torch.manual_seed(1)
    kit = DiagonalGaussian(mean, logvar).sample()
    torch.manual_seed(1)
    assert torch.allclose(ref.reparameterize(mean, logvar, torch.randn_like(mean)), kit)


def test_gaussian_kl_matches_kit_and_torch():
    q = DiagonalGaussian(torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4))
    p = DiagonalGaussian(torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4))
    ours = ref.gaussian_kl(q.mean, q.logvar, p.mean, p.logvar)
    assert torch.allclose(ours, q.kl(p).flatten(1).sum(1), atol=1e-5)
    as_normal = lambda g: Normal(g.mean, torch.exp(0.5 * g.logvar))  # noqa: E731
    assert torch.allclose(ours, kl_divergence(as_normal(q), as_normal(p)).flatten(1).sum(1), atol=1e-4)


def test_bernoulli_elbo_matches_model(tiny_model, digits):
    out = tiny_model(digits)
    assert torch.allclose(ref.bernoulli_elbo(out.params, digits, out.kl), out.elbo, atol=1e-3)


def test_iwae_bound_matches_kit(tiny_model, digits):
    x, k = digits[:4], 7
    torch.manual_seed(2)
    kit = iwae_log_likelihood(tiny_model, x, k, chunk_size=k)
    torch.manual_seed(2)
    with torch.no_grad():
        log_w = tiny_model(x.repeat(k, 1, 1, 1)).log_weight.view(k, len(x))
    assert torch.allclose(ref.iwae_bound(log_w), kit, atol=1e-4)


@pytest.mark.parametrize("size", [1, 3, 5, 7])
@pytest.mark.parametrize("mask_type", ["A", "B"])
def test_causal_mask_matches_masked_conv(size, mask_type):
    kit = MaskedConv2d(2, 3, size, mask_type).mask
    assert torch.equal(kit, ref.causal_mask(size, mask_type).expand_as(kit))


def _layer_with_random_heads(config):
    torch.manual_seed(0)
    model = HVAE(config)
    layer = model.layers[0]
    with torch.no_grad():  # the heads start at zero, which would make any merge state look right
        layer.posterior_head.weight.normal_(0, 0.3)
    return model, layer


def test_top_down_update_matches_latent_layer():
    model, layer = _layer_with_random_heads(get_preset("tiny"))
    width, res = model.config.width, layer.resolution
    h, z = torch.randn(2, width, res, res), torch.randn(2, model.config.latent_channels, res, res)
    with torch.no_grad():
        kit_h, _, _ = layer(h, None, None, None, 1.0, forced=z)
        assert torch.allclose(ref.top_down_update(h, z, layer.update), kit_h, atol=1e-6)


def test_merge_step_matches_latent_layer():
    model, layer = _layer_with_random_heads(get_preset("tiny", posterior="direct"))
    width, res = model.config.width, layer.resolution
    h, b, m = (torch.randn(2, width, res, res) for _ in range(3))
    z = torch.randn(2, model.config.latent_channels, res, res)
    with torch.no_grad():
        _, kit_m, stats = layer(h, m, b, None, 1.0, forced=z)
        m_new, mean, logvar = ref.merge_step(h, b, m, layer.merge, layer.posterior_head)
    assert torch.allclose(m_new, kit_m, atol=1e-6)
    assert torch.allclose(mean, stats.posterior.mean, atol=1e-6)
    assert torch.allclose(soft_clamp(logvar), stats.posterior.logvar, atol=1e-6)  # the kit bounds logvar


@pytest.mark.parametrize("n_clusters, n_labels", [(10, 10), (15, 10), (3, 10), (1, 1)])
def test_clustering_accuracy_matches_kit(n_clusters, n_labels):
    rng = np.random.default_rng(n_clusters)
    assignments, labels = rng.integers(0, n_clusters, 300), rng.integers(0, n_labels, 300)
    assert ref.clustering_accuracy(assignments, labels) == pytest.approx(kit_clustering_accuracy(assignments, labels))


def test_imputation_step_is_one_step_of_kit_imputation(trained_tiny, digits):
    observed = torch.ones_like(digits[:4])
    observed[..., 10:18, :] = 0
    kit = impute_iterative(trained_tiny, digits[:4], observed, n_steps=1, seed=3)[:, 0]
    torch.manual_seed(3)  # the kit starts the missing pixels as coin flips, then takes one step
    start = observed * digits[:4] + (1 - observed) * torch.bernoulli(torch.full_like(digits[:4], 0.5))
    assert torch.equal(ref.imputation_step(trained_tiny, start, observed), kit)


# --- the notebooks: one source (the solutions), the student copies generated and up to date ---

def test_clear_solutions_keeps_indentation_and_everything_outside():
    source = f"def f(x):\n    '''doc'''\n    {BEGIN}\n    y = x + 1\n    return y\n    {END}\n\n{BEGIN}\nz = 1\n{END}\nprint(2)"
    assert clear_solutions(source) == f"def f(x):\n    '''doc'''\n    {STUB}\n\n{STUB}\nprint(2)"
    assert strip_markers(source) == "def f(x):\n    '''doc'''\n    y = x + 1\n    return y\n\nz = 1\nprint(2)"
    assert clear_solutions("a = 1") == "a = 1"


@pytest.mark.parametrize("source", [f"{BEGIN}\nx = 1", f"x = 1\n{END}", f"{BEGIN}\n{BEGIN}\n{END}"])
def test_clear_solutions_rejects_unbalanced_markers(source):
    with pytest.raises(InputError):
        clear_solutions(source)


def _solutions():
    return {path.name: nbformat.read(path, as_version=4) for path in solution_paths()}


# Open exercises: the student's function is judged by what it achieves, not against a reference.
OPEN_EXERCISES = {"my_recipe": "recipe_challenge"}
# Predictions made before an experiment: a function returning the prediction -> its checker's key.
PREDICTIONS = {"my_rows_above": "reach_prediction"}


def _answer_cells(notebook, open_exercises=False, predictions=False):
    """{function name: cell source} for the cells holding an answer: the checked ones, the open
    ones (open_exercises=True) or the predictions (predictions=True)."""
    cells = {re.search(r"^def (\w+)", cell.source, re.M).group(1): cell.source
             for cell in notebook.cells if cell.cell_type == "code" and BEGIN in cell.source}
    return {name: source for name, source in cells.items()
            if (name in OPEN_EXERCISES) == open_exercises and (name in PREDICTIONS) == predictions}


def test_committed_student_notebooks_are_up_to_date():
    assert len(solution_paths()) >= 3
    assert stale_notebooks() == [], "run: python -m hvae_lite.exercises generate"


def test_solution_answers_are_the_package_references():
    answers = {}
    for notebook in _solutions().values():
        answers.update(_answer_cells(notebook))
        assert set(_answer_cells(notebook, open_exercises=True)) <= set(OPEN_EXERCISES)
        assert set(_answer_cells(notebook, predictions=True)) <= set(PREDICTIONS)
    assert set(answers) == set(CHECKERS)
    for name, source in answers.items():
        assert strip_markers(source) == inspect.getsource(getattr(ref, name)).rstrip("\n"), name


def test_every_answer_is_followed_by_its_check_and_only_solutions_carry_outputs():
    for name, notebook in _solutions().items():
        sources = [cell.source for cell in notebook.cells]
        for function in _answer_cells(notebook):
            assert f"{CHECKERS[function].__name__}({function});" in sources, (name, function)
        for function in _answer_cells(notebook, open_exercises=True):
            assert any(s.startswith(f"{OPEN_EXERCISES[function]}({function}") for s in sources), (name, function)
        for function in _answer_cells(notebook, predictions=True):
            checker = PREDICTION_CHECKERS[PREDICTIONS[function]].__name__
            assert any(f"{checker}({function});" in s for s in sources), (name, function)
        parameters = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(parameters) == 1 and "HVAE_LITE_FAST" in parameters[0].source, name
        code = [cell for cell in notebook.cells if cell.cell_type == "code"]
        assert all(cell.get("execution_count") for cell in code), f"{name}: execute the solution notebook (expected outputs)"
        assert not [o for c in code for o in c.outputs if o.output_type == "error"], name
        student = nbformat.read(STUDENT_DIR / name, as_version=4)
        for cell in student.cells:
            assert not cell.get("outputs") and cell.get("execution_count") is None, name


def test_student_stubs_fail_their_checks():
    for name in sorted(_solutions()):
        student = nbformat.read(STUDENT_DIR / name, as_version=4)
        for function, source in _answer_cells(_solutions()[name]).items():
            stub = student.cells[[c.source for c in _solutions()[name].cells].index(source)].source
            assert STUB in stub and BEGIN not in stub
            namespace = {}
            exec(stub, namespace)  # noqa: S102 - our own generated notebook
            result = CHECKERS[function](namespace[function], quiet=True)
            assert not result.passed and "not implemented yet" in result.message
        for function, source in _answer_cells(_solutions()[name], open_exercises=True).items():
            stub = student.cells[[c.source for c in _solutions()[name].cells].index(source)].source
            namespace = {}
            exec(stub, namespace)  # noqa: S102 - our own generated notebook
            result = recipe_challenge(namespace[function], quiet=True)  # stops before any training
            assert not result.passed and "not implemented yet" in result.message
        for function, source in _answer_cells(_solutions()[name], predictions=True).items():
            stub = student.cells[[c.source for c in _solutions()[name].cells].index(source)].source
            namespace = {}
            exec(stub, namespace)  # noqa: S102 - our own generated notebook
            result = PREDICTION_CHECKERS[PREDICTIONS[function]](namespace[function], quiet=True)
            assert not result.passed and "not implemented yet" in result.message


@pytest.mark.parametrize("folder, verdict", [(STUDENT_DIR, "[NOT YET] "), (SOLUTIONS_DIR, "[PASSED] ")],
                         ids=["student", "solutions"])
def test_notebooks_run_through_their_checks(folder, verdict, tmp_path, monkeypatch):
    """Every cell runs and each check cell reports: "not implemented yet" in a student notebook, a
    pass in a solution notebook. The notebooks run one after the other in one kernel (a kernel
    start costs seconds), the namespace reset between them; their closing demonstrations are
    left out (nbval runs them)."""
    combined, n_answers = nbformat.v4.new_notebook(), 0
    for name, solution in _solutions().items():
        cells = nbformat.read(folder / name, as_version=4).cells
        last_check = max(i for i, cell in enumerate(cells) if cell.source.startswith("check_"))
        combined.cells += [nbformat.v4.new_code_cell("%reset -f"), *cells[:last_check + 1]]  # a fresh namespace
        n_answers += len(_answer_cells(solution)) + len(_answer_cells(solution, predictions=True))
    monkeypatch.setenv("PYTHONPATH", str(SOLUTIONS_DIR.parents[2]))
    NotebookClient(combined, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    reports = [out.text for cell in combined.cells if cell.source.startswith("check_")
               for out in cell.get("outputs", []) if "text" in out]  # demonstrations print too
    assert len(reports) == n_answers == len(CHECKERS) + len(PREDICTION_CHECKERS)
    assert all(text.startswith(verdict) for text in reports), reports
    if folder == STUDENT_DIR:
        assert all("not implemented yet" in text for text in reports)


def test_generate_command_writes_and_checks(tmp_path):
    solutions, student = tmp_path / "solutions", tmp_path / "student"
    solutions.mkdir()
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(f"def f():\n    {BEGIN}\n    return 1\n    {END}")])
    nbformat.write(notebook, solutions / "a.ipynb")
    args = ["generate", "--solutions", str(solutions), "--student", str(student)]
    assert main(args + ["--check"]) == 1  # nothing generated yet
    assert main(args) == 0
    assert nbformat.read(student / "a.ipynb", as_version=4).cells[0].source == f"def f():\n    {STUB}"
    assert main(args + ["--check"]) == 0
    notebook.cells[0].source = notebook.cells[0].source.replace("return 1", "return 2\n    # changed")
    nbformat.write(notebook, solutions / "a.ipynb")
    assert main(args + ["--check"]) == 0  # the answer changed but the student copy did not
    notebook.cells.append(nbformat.v4.new_markdown_cell("new text"))
    nbformat.write(notebook, solutions / "a.ipynb")
    assert main(args + ["--check"]) == 1


def test_student_notebook_copy_drops_outputs():
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(f"{BEGIN}\nx = 1\n{END}")])
    notebook.cells[0].outputs = [nbformat.v4.new_output("stream", text="1")]
    notebook.cells[0].execution_count = 3
    cell = student_notebook(notebook).cells[0]
    assert (cell.source, cell.outputs, cell.execution_count) == (STUB, [], None)
    assert notebook.cells[0].outputs  # the solution itself is not modified


def test_free_bits_kl_is_the_kit_training_loss(trained_tiny, digits):
    out = trained_tiny(digits)
    for floor in (0.0, 0.5, 3.0):
        ours = out.recon.mean() + ref.free_bits_kl(out.kl, floor).sum()
        assert torch.allclose(ours, training_loss(out, beta=1.0, free_bits=floor))


# --- exercises that put the student's function to work ---

def test_merge_step_in_runs_the_students_merge_inside_the_model(trained_tiny, digits):
    torch.manual_seed(4)
    kit = trained_tiny(digits).elbo
    with merge_step_in(trained_tiny, ref.merge_step):
        torch.manual_seed(4)
        assert torch.allclose(trained_tiny(digits).elbo, kit, atol=1e-4)  # the reference answer is the model's own step
    blind = lambda h, b, m, r, head: ref.merge_step(h, torch.zeros_like(b), m, r, head)  # noqa: E731
    with merge_step_in(trained_tiny, blind):
        torch.manual_seed(4)
        assert not torch.allclose(trained_tiny(digits).elbo, kit, atol=1e-2)
    torch.manual_seed(4)
    assert torch.allclose(trained_tiny(digits).elbo, kit)  # restored on exit
    with pytest.raises(InputError, match="inference merge"):
        with merge_step_in(HVAE(get_preset("tiny", inference_merge=False)), ref.merge_step):
            pass


def test_train_with_kl_term_trains_exactly_like_the_kit_with_the_reference(small_split):
    recipe = TrainConfig(epochs=1, batch_size=50, warmup_epochs=0.5, free_bits=0.5, seed=0)
    theirs = train_with_kl_term(ref.free_bits_kl, recipe, small_split).history[-1]
    kit = Trainer(get_preset("tiny"), recipe, small_split, progress=False)
    kit.fit()
    assert theirs["test_elbo"] == pytest.approx(kit.history[-1]["test_elbo"], abs=1e-4)
    floorless = train_with_kl_term(lambda kl, floor: kl.mean(0), recipe, small_split).history[-1]
    assert floorless["test_elbo"] != pytest.approx(theirs["test_elbo"], abs=1e-4)  # the student's term is what trains


@pytest.mark.parametrize("changes, words", [({"lr": 5e-3, "epochs": 9}, "fixed budget"), ({"batch_size": 10}, "fixed budget"),
                                            ({"learning_rate": 1.0}, "not TrainConfig fields"),
                                            ([("lr", 1.0)], "as a dict")])
def test_recipe_challenge_refuses_changes_outside_the_rules(changes, words, small_split):
    result = recipe_challenge(changes, data=small_split, quiet=True)
    assert not result.passed and words in result.message


def test_recipe_challenge_reports_the_gain_and_a_failed_training(small_split):
    strict = recipe_challenge({"lr": 5e-3}, min_gain=1e9, data=small_split, quiet=True, seeds=[0])
    assert not strict.passed and "Not enough yet" in strict.message and "seed 0:" in strict.message
    def not_yet():
        raise NotImplementedError()
    assert "not implemented yet" in recipe_challenge(not_yet, data=small_split, quiet=True).message
    broken = recipe_challenge(lambda: {"lr": -1.0}, data=small_split, quiet=True, seeds=[0])
    assert not broken.passed and "failed" in broken.message
    with pytest.raises(InputError, match="seeds"):
        recipe_challenge({"lr": 5e-3}, data=small_split, seeds=[])


@pytest.mark.parametrize("pairs, passed, words", [
    ([[-200.0, -190.0], [-210.0, -199.0], [-205.0, -196.0]], True, "gain +10.0 ± 0.6 nats over 3 seeds (better)"),
    ([[-200.0, -170.0], [-210.0, -215.0], [-205.0, -200.0]], False, "(not distinguishable)"),  # a big mean, one seed worse
    ([[-200.0, -198.0], [-210.0, -208.0], [-205.0, -203.5]], False, "(better)"),               # clear, but too small
    ([[-184.1, -177.1], [-211.8, -183.1], [-211.3, -208.4]], True, "(not distinguishable)"),   # the kit's answer, measured
])
def test_the_challenge_passes_on_a_gain_with_every_seed_only(pairs, passed, words):
    from hvae_lite.exercises.demos import _challenge_result

    result = _challenge_result("challenge", pairs, [0, 1, 2], {"kl_balance": True}, 5.0, 200)
    assert result.passed is passed and words in result.message


def test_ready_runs_a_demonstration_only_for_a_passing_answer(capsys):
    from hvae_lite.exercises import check_iwae_bound
    from hvae_lite.exercises.demos import ready

    assert ready(check_iwae_bound, ref.iwae_bound) and capsys.readouterr().out == ""

    def iwae_bound(log_weights):
        raise NotImplementedError()
    assert not ready(check_iwae_bound, iwae_bound)
    assert "Skipped: this uses your `iwae_bound`" in capsys.readouterr().out


# --- the experiments of exercises 1.1b, 2.1b and 2.3b, run with the student's function ---

def _raises_zero_division(*args):
    return 1 / 0


@pytest.mark.parametrize("demo, kwargs, match", [
    (gradient_estimates, {"reparameterize": "reparameterize"}, "function itself"),
    (gradient_estimates, {"reparameterize": ref.reparameterize, "n_samples": 0}, "n_samples"),
    (gradient_estimates, {"reparameterize": ref.reparameterize, "mean": float("nan")}, "mean"),
    (gradient_estimates, {"reparameterize": _raises_zero_division}, "raised ZeroDivisionError"),
    (gradient_estimates, {"reparameterize": lambda m, lv, eps: (m + eps).detach()}, "gradient path"),
    (gradient_estimates, {"reparameterize": lambda m, lv, eps: m[0]}, "shape"),
    (path_gradients, {"top_down_update": ref.top_down_update, "depth": 0}, "depth"),
    (path_gradients, {"top_down_update": lambda h, z, g: None}, "shape"),
    (causal_reach, {"causal_mask": ref.causal_mask, "mask_types": "AB"}, "mask_types"),
    (causal_reach, {"causal_mask": ref.causal_mask, "mask_types": ["A", "C"]}, "mask_types"),
    (causal_reach, {"causal_mask": ref.causal_mask, "kernel_size": 4}, "odd"),
    (causal_reach, {"causal_mask": lambda k, kind: torch.ones(k + 1, k + 1)}, "shape"),
    (rows_above, {"reach": [[True]]}, "causal_reach"),
    (train_with_kl_term, {"kl_term": ref.free_bits_kl, "train_config": {"epochs": 1}, "data": None}, "TrainConfig"),
])
def test_demonstrations_refuse_bad_input_with_the_kits_error(demo, kwargs, match):
    """Each demonstration says what is wrong with its input, or with the student's function, in the kit's words."""
    with pytest.raises(InputError, match=match):
        demo(**kwargs)


def test_gradient_estimates_are_unbiased_and_the_score_function_scatters_more():
    estimates = gradient_estimates(ref.reparameterize, mean=1.5, n_samples=10, n_repeats=400)
    path, score = estimates["pathwise"], estimates["score function"]
    for values in (path, score):
        assert abs(values.mean().item() - 3.0) < 4 * values.std().item() / len(values) ** 0.5
    assert score.std() > 2 * path.std()
    # the pathwise route is the student's function: a wrong one shows in the numbers
    wrong = gradient_estimates(lambda m, lv, e: m + torch.exp(lv) * e, mean=1.5, logvar=1.0, n_repeats=50)["pathwise"]
    right = gradient_estimates(ref.reparameterize, mean=1.5, logvar=1.0, n_repeats=50)["pathwise"]
    assert not torch.allclose(wrong, right)


def test_path_gradients_show_the_deterministic_path():
    residual = path_gradients(ref.top_down_update, depth=6)
    plain = path_gradients(lambda h, z, g: g(torch.cat([h, z], 1)), depth=6, out_scale=1.0)
    assert len(residual) == len(plain) == 6
    assert all(0.8 < r < 1.25 for r in residual)  # h_0 arrives (almost) intact at every depth
    assert plain[-1] < 0.01 and plain[0] > plain[-1]  # without the sum it fades layer by layer
    assert path_gradients(lambda h, z, g: g(torch.cat([torch.zeros_like(h), z], 1)), depth=2) == [0.0, 0.0]


def test_causal_reach_uses_the_students_mask():
    for n in (1, 2, 3):
        reach = causal_reach(ref.causal_mask, ("A",) + ("B",) * (n - 1))
        assert rows_above(reach) == n and not reach[7, 7] and not reach[8:].any()  # nothing below, not itself
    assert causal_reach(ref.causal_mask, ("B", "B"))[7, 7]  # type B first: the output reads its own pixel
    assert causal_reach(ref.causal_mask, ("A", "A", "A")).sum() < causal_reach(ref.causal_mask, ("A", "B", "B")).sum()
    leaky = causal_reach(lambda k, t: torch.ones(k, k), ("A",))
    assert leaky[8:].any()  # a mask of ones reads the rows below: the measurement shows a wrong mask


@pytest.mark.parametrize("prediction, words", [
    ({1: 1, 2: 2, 3: 3}, "correct"),
    ({1: 3, 2: 6, 3: 9}, "kernel_size // 2"),
    ({1: 2, 2: 4, 3: 6}, "reaches 1 row up"),
    ({1: 0, 2: 1, 3: 2}, "type A) layer also reads the row above"),
    ({1: 1, 2: 1, 3: 1}, "grows with depth"),
    ({1: 1, 2: 2, 3: 4}, "for 3 layer(s) the logit reads 3 row(s)"),
    ({1: 1}, "the keys must be 1, 2, 3"),
    ({1: 1, 2: 2, 3: "3"}, "whole number"),
    ([1, 2, 3], "as a dict"),
    (lambda: {1: 1, 2: 2, 3: 3}, "correct"),
    (_not_implemented, "not implemented yet"),
])
def test_reach_prediction_checker_explains(prediction, words):
    result = check_reach_prediction(prediction, quiet=True)
    assert result.passed == (words == "correct")
    assert words in result.message, result.message
