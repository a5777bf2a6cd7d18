"""The one validation layer: every public entry point checks its images and numbers here.

Images: float32 tensors (B, 1, 28, 28), B >= 1, finite, in [0, 1]; binary (only 0 and 1) where a
Bernoulli model reads them. Other float dtypes (float64 from numpy, float16, bfloat16) and numpy
arrays are converted to float32, since the kit computes in float32 and the conversion of values
in [0, 1] loses nothing that matters; integer pixels are refused, because 0..255 and 0/1 integers
look alike and mean different things.
"""
from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .errors import ConfigError, InputError

IMAGE_SHAPE = (1, 28, 28)


def check_int(value: Any, name: str, minimum: int | None = None, maximum: int | None = None,
              error: type[InputError] = InputError) -> int:
    """`value` as an int in [minimum, maximum]; bools and floats are refused (3.0 is not a count)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise error(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    value = int(value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise error(f"{name} must be {_interval(minimum, maximum)}, got {value}")
    return value


def check_float(value: Any, name: str, low: float | None = None, high: float | None = None,
                low_open: bool = False, high_open: bool = False,
                error: type[InputError] = InputError) -> float:
    """`value` as a finite float in the interval; NaN and inf are refused, bools too."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise error(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    value = float(value)
    below = low is not None and (value <= low if low_open else value < low)
    above = high is not None and (value >= high if high_open else value > high)
    if not math.isfinite(value) or below or above:
        left = "(-inf" if low is None else f"{'(' if low_open else '['}{low:g}"
        right = "inf)" if high is None else f"{high:g}{')' if high_open else ']'}"
        raise error(f"{name} must be a finite number in {left}, {right}, got {value}")
    return value


def check_bool(value: Any, name: str, error: type[InputError] = ConfigError) -> bool:
    """Only True or False: the string 'false' is truthy, so it must never pass for one."""
    if not isinstance(value, (bool, np.bool_)):
        raise error(f"{name} must be True or False, got {value!r} ({type(value).__name__})")
    return bool(value)


# torch seeds its generators with a 64-bit integer: larger seeds overflow, and a run adds its rank
# to its seed under torchrun, so seeds stop at 2**63 - 1 (still far more than anyone types).
MAX_SEED = 2**63 - 1


def check_seed(value: Any, name: str = "seed", error: type[InputError] = InputError) -> int:
    """A random seed: an integer in [0, 2**63 - 1]."""
    value = check_int(value, name, error=error)
    if not 0 <= value <= MAX_SEED:
        raise error(f"{name} must be a whole number from 0 to 2**63 - 1 (torch seeds are 64-bit), got {value}")
    return value


_DEVICE_HINT = "use auto, cpu, cuda, cuda:N or mps"


def check_device_name(name: Any) -> None:
    """A device name torch understands and the kit can run on (availability: resolve_device)."""
    if name == "auto":
        return
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as error:
        raise ConfigError(f"unknown device {name!r}; {_DEVICE_HINT}") from error
    if device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"device {name!r} is not one the kit runs on; {_DEVICE_HINT}")


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """'auto' -> the best accelerator present (cuda, then mps), else the CPU; any other name must
    be a device this machine has (cuda on a CPU-only build is an InputError, not an assertion)."""
    if isinstance(name, torch.device):
        name = str(name)
    if name != "auto":
        check_device_name(name)
        device = torch.device(name)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise InputError(f"device {name!r} asked for, but this PyTorch sees no CUDA GPU; use auto or cpu")
        if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
            raise InputError(f"device {name!r} asked for, but this machine has {torch.cuda.device_count()} "
                             f"CUDA GPU(s), numbered from 0; use cuda or cuda:0")
        mps = getattr(torch.backends, "mps", None)
        if device.type == "mps" and not (mps is not None and mps.is_available()):
            raise InputError(f"device {name!r} asked for, but this PyTorch sees no Apple GPU (MPS); use auto or cpu")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


MAX_TEMPERATURE = 100.0  # far past where samples are noise; larger ones overflow float32 to NaN


def check_temperature(value: Any, name: str = "temperature") -> float:
    """A sampling temperature in [0, 100]: 1 = the model's own prior, 0 = its most likely latents."""
    return check_float(value, name, low=0.0, high=MAX_TEMPERATURE)


def _interval(minimum: int | None, maximum: int | None) -> str:
    if maximum is None:
        return f">= {minimum}"
    if minimum is None:
        return f"<= {maximum}"
    return f"between {minimum} and {maximum}"


def check_images(x: Any, binary: bool = False, name: str = "x",
                 shape: tuple[int, int, int] = IMAGE_SHAPE) -> Tensor:
    """The images as a float32 tensor (B, *shape) (default (B, 1, 28, 28)), or an InputError saying
    what is wrong and how to fix it: not a tensor, another shape, an empty batch, integer pixels,
    NaN or inf, values outside [0, 1], or (binary=True) values other than 0 and 1. The result keeps
    x's device."""
    shape = tuple(shape)
    dims = ", ".join(map(str, shape))
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, Tensor):
        raise InputError(f"{name} must be a torch.Tensor of images (B, {dims}), got {type(x).__name__}")
    if tuple(x.shape[1:]) != shape:
        hint = ""
        if x.dim() == 2 and x.shape[1] == math.prod(shape):
            hint = f"; flat images: use {name}.view(-1, {dims})"
        elif shape[0] == 1 and x.dim() == 3 and tuple(x.shape[1:]) == shape[1:]:
            hint = f"; missing the channel axis: use {name}.unsqueeze(1)"
        elif x.dim() == 3 and tuple(x.shape) == shape:
            hint = f"; one image: use {name}.unsqueeze(0)"
        elif x.dim() == 4 and tuple(x.shape[1:]) == (*shape[1:], shape[0]):
            hint = f"; channels last: use {name}.permute(0, 3, 1, 2)"
        raise InputError(f"{name} must have shape (B, {dims}), got {tuple(x.shape)}{hint}")
    if x.shape[0] == 0:
        raise InputError(f"{name} is an empty batch (B = 0): give at least one image")
    if x.dtype == torch.bool:
        x = x.float()
    elif not x.is_floating_point():
        raise InputError(f"{name} must hold float pixels in [0, 1], got {x.dtype}; "
                         f"use {name}.float() / 255 for 0..255 pixels, {name}.float() for 0/1 pixels")
    x = x.float()
    if not torch.isfinite(x).all():
        raise InputError(f"{name} contains NaN or inf values ({int((~torch.isfinite(x)).sum())} of "
                         f"{x.numel()}); images must be finite numbers in [0, 1]")
    low, high = x.min().item(), x.max().item()
    if low < 0 or high > 1:
        hint = f"; 0..255 pixels: divide by 255" if high > 1 and low >= 0 else ""
        raise InputError(f"{name} must be in [0, 1], got values in [{low:g}, {high:g}]{hint}")
    if binary and not ((x == 0) | (x == 1)).all():
        raise InputError(f"{name} has values other than 0 and 1, but a Bernoulli model reads binary pixels; "
                         f"binarise it first: hvae_lite.data.fixed_binarize({name}, seed=0)")
    return x


def check_model_images(model: torch.nn.Module, x: Any, name: str = "x") -> Tensor:
    """Images a model reads directly, of its image shape: binary for a Bernoulli model, [0, 1] for
    the others."""
    shape = getattr(model.config, "image_shape", IMAGE_SHAPE)
    return check_images(x, binary=model.config.likelihood == "bernoulli", name=name, shape=shape)


def check_mask(observed: Any, x: Tensor, name: str = "observed") -> Tensor:
    """An observed-pixel mask (1 = observed, 0 = missing) for the images x (B, C, H, W): one value
    per pixel, (B, 1, H, W), shared by a pixel's colour channels."""
    wanted = (x.shape[0], 1, *x.shape[2:])
    given = tuple(getattr(observed, "shape", ()))
    if given != wanted:
        raise InputError(f"{name} must have the shape of the images' pixels: images {tuple(x.shape)} need "
                         f"{name} (B, 1, {x.shape[2]}, {x.shape[3]}) = {wanted}, got {given or type(observed).__name__}; "
                         f"make one with hvae_lite.data.occlusion_mask(kind, len(x), {x.shape[-1]})")
    observed = check_images(observed, name=name, shape=wanted[1:])
    if not ((observed == 0) | (observed == 1)).all():
        raise InputError(f"{name} must hold only 0 (missing) and 1 (observed); "
                         "make one with hvae_lite.data.occlusion_mask(kind, len(x))")
    return observed
