"""Errors of the release library.

Exception tree (every class of the part; each line: class, ``code``, meaning)::

    ReleaseError                    release_error: root; every failure of this part
    +-- SafetensorsInvalidError     safetensors_invalid: a weights file is malformed
    +-- ModelFolderInvalidError     model_folder_invalid: no or a malformed config/index
    +-- UnsafePathError             unsafe_path: a path or symlink escapes its folder
    +-- ManifestInvalidError        manifest_invalid: a tier manifest document is malformed
    +-- TierMismatchError           tier_mismatch: a tier folder does not match its manifest
    +-- QuantizationError           quantization_failed: the optimized tier cannot be built
    +-- OptimizedTierInvalidError   optimized_tier_invalid: an optimized tier cannot be loaded
    +-- TierVerificationError       tier_verification_failed: a download fails verification
    |                               (release.verify)
    +-- OutputExistsError           output_exists: refusing to overwrite a build (release.build)
    +-- PublishError                publish_failed: the gateway refused a publish step; carries
                                    the gateway's own code when it sent one (release.upload)
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
    "UnsafePathError",
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


class OptimizedTierInvalidError(ReleaseError):
    """An optimized tier folder is inconsistent with its ``quantization_config``."""

    code = "optimized_tier_invalid"
