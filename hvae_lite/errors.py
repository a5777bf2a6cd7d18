"""The kit's own errors: every problem it detects is raised as one of these, with a message that
says what was given, what was expected and what to do.

    HVAELiteError                     catch this for "anything hvae_lite refused"
    ├── InputError (ValueError)       a bad argument: images, counts, temperatures, masks, labels
    │   └── ConfigError               a bad model or training setting (HVAEConfig, TrainConfig, --set)
    ├── DataError (ValueError)        a data file that is corrupt or not what it should be
    ├── DataDownloadError             a data file could not be fetched and verified
    ├── CheckpointError               a checkpoint missing, corrupt, unwritable or in the way
    ├── OutputError                   an output file (JSON, image, report) that cannot or must not be written
    ├── TrainingDiverged              most updates of an epoch were not finite
    └── ReportError                   the report notebook failed

InputError, ConfigError and DataError are also ValueErrors, so code that caught ValueError
before keeps working.
"""
from __future__ import annotations


class HVAELiteError(Exception):
    """Base of every error the kit raises on purpose."""


class InputError(HVAELiteError, ValueError):
    """An argument the kit cannot use (shape, dtype, range, a count below 1, ...)."""


class ConfigError(InputError):
    """A model or training setting out of range or of the wrong type."""


class DataError(HVAELiteError, ValueError):
    """A data file that is corrupt, truncated or of an unexpected shape."""


class DataDownloadError(HVAELiteError, RuntimeError):
    """A data file could not be fetched from any mirror and verified."""


class CheckpointError(HVAELiteError, RuntimeError):
    """A checkpoint is missing, corrupt, of another format, fails its checksum, cannot be written,
    or would overwrite another run."""


class OutputError(HVAELiteError, RuntimeError):
    """An output file cannot be written (full disk, read-only folder, size limit), would replace a
    file of another kind or a file the kit ships, or another process is writing it."""


class TrainingDiverged(HVAELiteError, RuntimeError):
    """Most updates of an epoch had a non-finite loss or gradient."""


class ReportError(HVAELiteError, RuntimeError):
    """The report notebook failed; the partly executed notebook is kept at `notebook`."""

    def __init__(self, message: str, notebook=None):
        super().__init__(message)
        self.notebook = notebook
