"""The digit judge: training, the classifier score, verdicts, and the checkpoint round trip."""
import math

import pytest
import torch

from hvae_lite.checkpoints import Checkpoint, load_checkpoint, save_checkpoint
from hvae_lite.judge import CONFIDENT, JudgeConfig, augment, classifier_score, judge_images, train_judge


def test_classifier_score_bounds():
    one_hot = torch.eye(10)
    assert classifier_score(one_hot) == pytest.approx(10.0)                 # confident and all classes
    assert classifier_score(torch.full((7, 10), 0.1)) == pytest.approx(1.0)  # undecided
    same_class = torch.zeros(5, 10)
    same_class[:, 3] = 1
    assert classifier_score(same_class) == pytest.approx(1.0)               # confident, but no variety
    two = torch.eye(10)[:2].repeat(4, 1)
    assert classifier_score(two) == pytest.approx(2.0)


def test_augment_keeps_images_valid_and_is_seeded(embedded):
    x = embedded.train_images[:32]
    a = augment(x, torch.Generator().manual_seed(0))
    b = augment(x, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.shape == x.shape
    assert a.min() >= 0 and a.max() <= 1 and not torch.equal(a, x)


@pytest.fixture(scope="module")
def small_judge(embedded):
    """A judge trained briefly on 1,000 digits: far better than chance, in seconds."""
    return train_judge(embedded.train_images[:1000], embedded.train_labels[:1000], epochs=6, lr=3e-3,
                       config=JudgeConfig(channels=(8, 16), hidden=32))


def test_a_trained_judge_reads_held_out_digits(small_judge, embedded):
    verdict = judge_images(small_judge, embedded.test_images[:300], embedded.test_labels[:300])
    assert verdict.accuracy > 0.6  # chance is 0.1
    assert verdict.n_images == 300 and len(verdict.predictions) == 300
    assert sum(verdict.class_histogram) == pytest.approx(1.0)
    assert 1.0 <= verdict.classifier_score <= 10.0
    assert 0 <= verdict.confident_fraction <= 1
    assert verdict.confident_stderr == pytest.approx(
        math.sqrt(verdict.confident_fraction * (1 - verdict.confident_fraction) / 300))
    probabilities = small_judge.probabilities(embedded.test_images[:10])
    assert torch.allclose(probabilities.sum(1), torch.ones(10))
    assert verdict.confident_fraction == pytest.approx(
        (small_judge.probabilities(embedded.test_images[:300]).max(1).values >= CONFIDENT).double().mean().item())


def test_same_seed_same_judge(embedded):
    config = JudgeConfig(channels=(4, 8), hidden=16)
    a = train_judge(embedded.train_images[:200], embedded.train_labels[:200], epochs=1, config=config)
    b = train_judge(embedded.train_images[:200], embedded.train_labels[:200], epochs=1, config=config)
    for p, q in zip(a.state_dict().values(), b.state_dict().values()):
        assert torch.equal(p, q)


def test_judge_checkpoint_round_trip(small_judge, embedded, tmp_path):
    save_checkpoint(Checkpoint(small_judge.config, small_judge.state_dict()), tmp_path / "judge.pt")
    loaded = load_checkpoint(tmp_path / "judge.pt").model()
    x = embedded.test_images[:20]
    assert torch.equal(loaded.probabilities(x), small_judge.probabilities(x))


def test_judge_rejects_bad_input(small_judge, embedded):
    with pytest.raises(ValueError, match="must be in"):
        judge_images(small_judge, embedded.test_images[:4] * 255)
    with pytest.raises(ValueError, match="labels"):
        judge_images(small_judge, embedded.test_images[:4], torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="labels must be"):
        train_judge(embedded.train_images[:4], torch.full((4,), 10))


def test_load_judge_trains_and_caches_when_nothing_is_shipped(tmp_path, monkeypatch):
    from hvae_lite import pretrained
    monkeypatch.setattr(pretrained, "JUDGE_QUICK_EPOCHS", 1)
    judge = pretrained.load_judge(progress=False, checkpoint_dir=tmp_path / "none", runs_dir=tmp_path / "runs")
    assert (tmp_path / "runs" / "judge.pt").is_file()
    again = pretrained.load_judge(progress=False, checkpoint_dir=tmp_path / "none", runs_dir=tmp_path / "runs")
    for p, q in zip(judge.state_dict().values(), again.state_dict().values()):
        assert torch.equal(p, q)


def test_the_shipped_judge_meets_its_manifest(embedded):
    """The shipped judge: >= 98 % accurate on the 1,000 held-out digits, as its manifest says."""
    import json
    from hvae_lite.paths import CHECKPOINT_DIR
    from hvae_lite.pretrained import load_judge
    manifest = json.loads((CHECKPOINT_DIR / "judge.json").read_text())
    verdict = judge_images(load_judge(progress=False), embedded.test_images, embedded.test_labels)
    assert verdict.accuracy == pytest.approx(manifest["heldout"]["accuracy_grey"])
    assert verdict.accuracy >= 0.98
    assert verdict.confident_fraction == pytest.approx(manifest["heldout"]["confident_fraction_grey"])
    noise = torch.rand(200, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    assert judge_images(load_judge(progress=False), noise).confident_fraction < 0.5 * verdict.confident_fraction
