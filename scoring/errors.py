"""The scoring error tree, one branch per thing the caller does next::

    ScoringError
     ├── FeatureSpecError     the [scoring] configuration is invalid: fix the named key
     ├── ReleaseGateError     a freshly trained model may not ship: keep serving the previous one
     ├── ModelLoadError       the model folder is missing or unreadable: retrain or restore it
     └── ModelMismatchError   model and feature spec (or frame) disagree: retrain with this spec

The CLI maps each branch to an exit code and one line; none of them is a bug in leadrelay.
"""

from __future__ import annotations


class ScoringError(Exception):
    """Base of every error the scoring package raises on purpose."""


class FeatureSpecError(ScoringError, ValueError):
    """A feature spec mapping is invalid; ``path`` names the offending key (``features.windows[1]``)."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class ReleaseGateError(ScoringError):
    """Training finished but a release gate refused the model (too little data, bad calibration, ONNX
    parity). ``gate`` names the gate so that monitoring can count refusals by cause."""

    def __init__(self, gate: str, message: str) -> None:
        self.gate = gate
        super().__init__(f"release gate '{gate}' refused the model: {message}")


class ModelLoadError(ScoringError):
    """The model folder lacks a file or holds one that cannot be read."""


class ModelMismatchError(ScoringError):
    """The ONNX inputs, the model card and the feature spec (or a frame) do not describe the same
    features. ``missing`` are expected but absent, ``extra`` are present but unexpected."""

    def __init__(self, message: str, *, missing: tuple[str, ...] = (), extra: tuple[str, ...] = ()) -> None:
        self.missing = missing
        self.extra = extra
        detail = []
        if missing:
            detail.append("missing: " + ", ".join(missing))
        if extra:
            detail.append("extra: " + ", ".join(extra))
        super().__init__(message + (f" ({'; '.join(detail)})" if detail else ""))
