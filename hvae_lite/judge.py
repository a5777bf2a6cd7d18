"""The digit judge: a small CNN classifier that scores generated digits.

How do we know samples are good? Image-generation work asks a classifier trained on real data
(Salimans et al. 2016's Inception score): a good sample is classified *confidently*, and a good
set of samples covers every class. The judge is trained on the 4,000 training digits only, with
shifts, small rotations and random binarisation, so it reads both grey-level images (the pixel
probabilities a model draws) and binary samples.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .data import check_images, iterate_minibatches, random_occlusion_mask
from .errors import InputError

N_CLASSES = 10
CONFIDENT = 0.9  # a sample is "confident" when the judge gives its top class at least this probability


@dataclass(frozen=True)
class JudgeConfig:
    """Two conv stages (28 -> 14 -> 7) and a small dense classifier."""

    channels: tuple[int, int] = (32, 64)   # conv widths of the two stages
    hidden: int = 128                      # dense layer before the 10 logits
    dropout: float = 0.3

    def to_dict(self) -> dict[str, Any]:
        return {"channels": list(self.channels), "hidden": self.hidden, "dropout": self.dropout}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "JudgeConfig":
        return cls(channels=tuple(values["channels"]), hidden=values["hidden"], dropout=values["dropout"])


class DigitJudge(nn.Module):
    """(B, 1, 28, 28) images in [0, 1] -> (B, 10) class logits."""

    def __init__(self, config: JudgeConfig):
        super().__init__()
        self.config = config
        c1, c2 = config.channels
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1), nn.ReLU(), nn.Conv2d(c1, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.Conv2d(c2, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(config.dropout), nn.Linear(c2 * 49, config.hidden),
                                        nn.ReLU(), nn.Dropout(config.dropout), nn.Linear(config.hidden, N_CLASSES))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))

    @torch.no_grad()
    def probabilities(self, images: Tensor, batch_size: int = 500) -> Tensor:
        """p(y | x) for each image: (N, 1, 28, 28) -> (N, 10), in eval mode, on the judge's device."""
        images = check_images(images, name="images")
        self.eval()
        device = next(self.parameters()).device
        return torch.cat([torch.softmax(self(batch.to(device)), 1).cpu()
                          for batch in iterate_minibatches(images, batch_size, shuffle=False)])


def augment(images: Tensor, generator: torch.Generator) -> Tensor:
    """Random shifts (up to 2 pixels), rotations (up to 10 degrees) and scalings (0.9-1.1), then
    binarisation of half of the images: (B, 1, 28, 28) -> same."""
    n = images.shape[0]
    angle = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(10)
    scale = 0.9 + 0.2 * torch.rand(n, generator=generator)
    shift = (torch.rand(n, 2, generator=generator) * 2 - 1) * (2 / 14)  # 2 pixels in [-1, 1] coordinates
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    warped = F.grid_sample(images, grid, align_corners=False, padding_mode="zeros").clamp(0, 1)
    binary = torch.rand(n, 1, 1, 1, generator=generator) < 0.5
    return torch.where(binary, torch.bernoulli(warped, generator=generator), warped)


OCCLUDED_FILL = 0.5  # what an occluded judge sees in a missing pixel: grey, neither ink nor background


def occluded(images: Tensor, observed: Tensor) -> Tensor:
    """What an occluded judge reads: the observed pixels, grey (OCCLUDED_FILL) where missing.
    (B, 1, H, W) images and masks (1 = observed) -> (B, 1, H, W)."""
    return images * observed + OCCLUDED_FILL * (1 - observed)


def train_judge(images: Tensor, labels: Tensor, epochs: int = 30, batch_size: int = 100, lr: float = 1e-3,
                seed: int = 0, config: JudgeConfig = JudgeConfig(), occlusions: bool = False) -> DigitJudge:
    """Train a judge on (N, 1, 28, 28) images and (N,) labels with augmentation; Adam with a
    cosine learning-rate decay. Deterministic on the CPU for a given seed.
    occlusions=True: every training image is also occluded (`occluded`, a random kind of
    data.MASK_KINDS per image), so the judge learns to classify from the observed pixels alone:
    its accuracy on an occlusion kind is what any completion of those pixels can carry of the class."""
    images = check_images(images, name="images")
    if labels.shape != (images.shape[0],) or labels.min() < 0 or labels.max() >= N_CLASSES:
        raise InputError(f"labels must be (N,) = ({images.shape[0]},) class indices in 0..9")
    if epochs < 1:
        raise InputError(f"epochs must be >= 1, got {epochs}")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    judge = DigitJudge(config)
    optimizer = torch.optim.Adam(judge.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    for _ in range(epochs):
        judge.train()
        for x, y in iterate_minibatches(images, batch_size, shuffle=True, generator=generator, labels=labels):
            x = augment(x, generator)
            if occlusions:
                x = occluded(x, random_occlusion_mask(len(x), x.shape[-1], generator=generator))
            loss = F.cross_entropy(judge(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        scheduler.step()
    return judge.eval()


@dataclass(frozen=True)
class JudgeVerdict:
    """How the judge sees a set of images."""

    n_images: int
    confident_fraction: float         # share of images whose top class has p >= CONFIDENT
    confident_stderr: float           # its binomial standard error
    class_histogram: list[float]      # share of images per predicted class (sums to 1)
    classifier_score: float           # exp(E_x KL(p(y|x) || p(y))): 1 (useless) .. 10 (confident and varied)
    predictions: list[int]            # the top class of each image
    accuracy: float | None = None     # share of correct top classes, when labels were given
    accuracy_stderr: float | None = None  # its binomial standard error

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "predictions"}


def classifier_score(probabilities: Tensor) -> float:
    """exp(E_x KL(p(y|x) || p(y))) for (N, 10) class probabilities, p(y) their mean: the
    Inception score with the digit judge as the classifier. 10 at most (one class per image,
    all classes equally often); 1 when every image gets the same distribution."""
    p_y = probabilities.mean(0, keepdim=True)
    kl = (probabilities * (probabilities.clamp_min(1e-12).log() - p_y.clamp_min(1e-12).log())).sum(1)
    return math.exp(kl.mean().item())


def judge_images(judge: DigitJudge, images: Tensor, labels: Tensor | None = None) -> JudgeVerdict:
    """Score (N, 1, 28, 28) images in [0, 1] (pixel probabilities or binary samples) with the judge."""
    probabilities = judge.probabilities(images)
    top, predicted = probabilities.max(1)
    confident = (top >= CONFIDENT).double()
    n = len(images)
    histogram = torch.bincount(predicted, minlength=N_CLASSES).double() / n
    accuracy = accuracy_stderr = None
    if labels is not None:
        if labels.shape != (n,):
            raise InputError(f"labels must have shape ({n},), got {tuple(labels.shape)}")
        accuracy = (predicted == labels.cpu()).double().mean().item()
        accuracy_stderr = math.sqrt(accuracy * (1 - accuracy) / n)
    return JudgeVerdict(
        n_images=n, confident_fraction=confident.mean().item(),
        confident_stderr=math.sqrt(confident.mean().item() * (1 - confident.mean().item()) / n),
        class_histogram=histogram.tolist(), classifier_score=classifier_score(probabilities),
        predictions=predicted.tolist(), accuracy=accuracy, accuracy_stderr=accuracy_stderr)
