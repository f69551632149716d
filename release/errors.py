"""Errors of the release library.

Exception tree::

    ReleaseError                    root; every failure of this part is one of these
    +-- SafetensorsInvalidError     a weights file is malformed (file, tensor, reason)
    +-- ModelFolderInvalidError     a model folder lacks or has a malformed config/index
    +-- UnsafePathError             a path or symlink escapes the folder it must stay in
    +-- ManifestInvalidError        a tier manifest document is malformed
    +-- TierMismatchError           a tier folder does not match its manifest
    +-- QuantizationError           the optimized tier cannot be built from these weights
    |   +-- UnknownOptimizationError    an ``--optimize`` value that does not exist
    |   +-- UnsupportedArchitectureError  an engine's format cannot express this architecture
    |   +-- UnsupportedTokenizerError   GGUF cannot express this tokenizer (refused before writing)
    +-- OptimizedTierInvalidError   an optimized tier folder cannot be loaded
"""

from __future__ import annotations

__all__ = [
    "ManifestInvalidError",
    "ModelFolderInvalidError",
    "OptimizedTierInvalidError",
    "QuantizationError",
    "ReleaseError",
    "SafetensorsInvalidError",
    "TierMismatchError",
    "UnknownOptimizationError",
    "UnsafePathError",
    "UnsupportedArchitectureError",
    "UnsupportedTokenizerError",
]


class ReleaseError(Exception):
    """Root of every error raised by :mod:`release`.

    ``code`` is stable and machine readable; the message is for people.
    """

    code = "release_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class SafetensorsInvalidError(ReleaseError):
    """A ``*.safetensors`` file (or its shard index) is malformed or inconsistent.

    ``file`` is the path as given (relative to the model folder when validating a folder),
    ``tensor`` the tensor name when the problem is one tensor's, ``reason`` a short phrase.
    """

    code = "safetensors_invalid"

    def __init__(self, file: str, reason: str, tensor: str | None = None) -> None:
        where = f"{file}: tensor {tensor!r}" if tensor is not None else file
        super().__init__(f"{where}: {reason}")
        self.file = file
        self.tensor = tensor
        self.reason = reason


class ModelFolderInvalidError(ReleaseError):
    """The model folder as a whole is unusable (no config.json, no weights, bad JSON...)."""

    code = "model_folder_invalid"

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class UnsafePathError(ReleaseError):
    """A path (typically a symlink) points outside the folder, or is not a regular file."""

    code = "unsafe_path"

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class ManifestInvalidError(ReleaseError):
    """A serialized tier manifest is not a well-formed manifest document."""

    code = "manifest_invalid"


class TierMismatchError(ReleaseError):
    """A tier folder differs from its manifest.

    ``missing``: listed but absent; ``extra``: present but not listed; ``mismatched``: present
    with another size or sha256. All three are sorted tuples of relative posix paths.
    """

    code = "tier_mismatch"

    def __init__(
        self,
        missing: tuple[str, ...],
        extra: tuple[str, ...],
        mismatched: tuple[str, ...],
    ) -> None:
        parts = []
        for label, paths in (("missing", missing), ("extra", extra), ("mismatched", mismatched)):
            if paths:
                shown = ", ".join(paths[:5]) + (
                    f" (+{len(paths) - 5} more)" if len(paths) > 5 else ""
                )
                parts.append(f"{label}: {shown}")
        super().__init__("tier folder does not match its manifest; " + "; ".join(parts))
        self.missing = missing
        self.extra = extra
        self.mismatched = mismatched


class QuantizationError(ReleaseError):
    """The optimized tier cannot be built (unsupported method, architecture or tensor)."""

    code = "quantization_failed"


class UnknownOptimizationError(QuantizationError):
    """An optimization name (``--optimize``) that is not one of the formats we build."""

    code = "unknown_optimization"


class UnsupportedArchitectureError(QuantizationError):
    """The artifact's format (or the engine that loads it) cannot express this architecture;
    the message names the artifact and the engine."""

    code = "unsupported_architecture"


class UnsupportedTokenizerError(QuantizationError):
    """The tokenizer cannot be written as GGUF ``tokenizer.ggml.*`` metadata faithfully."""

    code = "unsupported_tokenizer"


class OptimizedTierInvalidError(ReleaseError):
    """An optimized tier folder is inconsistent with its ``quantization_config``."""

    code = "optimized_tier_invalid"
