"""Errors of the release library.

Exception tree (every class of the part; each line: class, ``code``, meaning)::

    ReleaseError                    release_error: root; every failure of this part
    +-- SafetensorsInvalidError     safetensors_invalid: a weights file is malformed
    +-- ModelFolderInvalidError     model_folder_invalid: no or a malformed config/index
    +-- UnsafePathError             unsafe_path: a path or symlink escapes its folder
    +-- ManifestInvalidError        manifest_invalid: a tier manifest document is malformed
    +-- TierMismatchError           tier_mismatch: a tier folder does not match its manifest
    +-- QuantizationError           quantization_failed: the optimized tier cannot be built
    |   +-- UnknownOptimizationError      unknown_optimization: no such ``--optimize``
    |   +-- UnsupportedArchitectureError  unsupported_architecture: the format cannot express it
    |   +-- UnsupportedTokenizerError     unsupported_tokenizer: GGUF cannot express it
    |   +-- QuantizerUnavailableError     quantizer_unavailable: the artifact needs llama.cpp's
    |   |                                 quantizer and the [llamacpp] extra is not installed
    |   +-- CalibrationError              calibration_failed: no usable calibration text or
    |                                     statistics (release.calibration)
    +-- OptimizedTierInvalidError   optimized_tier_invalid: an optimized tier cannot be loaded
    |   +-- EngineVersionError      engine_too_old: a package that loads the tier's format is
    |                               missing or older than its minimum (release.engines)
    +-- DeclaredWeightsError        declared_weights_invalid: config.json and the stored
    |   |                           tensors disagree (file, tensor)
    |   +-- ConfigTooLargeError     config_too_large: declares more than the files could hold
    |   +-- WeightMissingError      weight_missing: a declared tensor is stored nowhere
    |   +-- WeightShapeError        weight_shape_mismatch: stored with another shape or dtype
    |   +-- WeightUnexpectedError   weight_unexpected: stored but not part of the architecture
    +-- TierVerificationError       tier_verification_failed: a download fails verification
    |                               (release.verify)
    +-- OutputExistsError           output_exists: refusing to overwrite a build (release.build)
    +-- BuildOptionsInvalidError    build_options_invalid: a repo id or version unusable
    +-- AiBomInvalidError           aibom_invalid: an AI BOM input cannot be expressed
    |                               (release.aibom)
    +-- AiBomUnavailableError       aibom_unavailable: the [aibom] extra is not installed
    +-- RebuildRefusedError         rebuild_refused: a release cannot be migrated to the
    |                               standard formats as asked (release.migrate)
    +-- CardRevisionRefusedError    card_revision_refused: a card revision cannot be rendered
    |                               or checked: no README.md in a tier, an attestation of
    |                               another release, a bundle that changes more than the card
    |                               (release.card_revision)
    +-- PublishError                publish_failed: the gateway refused a publish step; carries
    |                               the gateway's own code when it sent one (release.upload)
    +-- EvalError                   eval_error: an evaluation cannot be run or checked
        |                           (release.evals)
        +-- EvalTaskInvalidError    eval_task_invalid: a task file is malformed
        +-- EvalDataNotFoundError   eval_data_not_found: a task's data is missing or is not
        |                           the data its sha256 names (raised before any call)
        +-- EvalRunError            eval_run_failed: the run journal or the gateway's answers
        |                           cannot continue the run
        +-- EvalHarnessUnavailableError  eval_harness_unavailable: the harness a run asks
        |                           for (lm-eval) is not installed (raised before any call)
        +-- EvalAttestationInvalidError  eval_attestation_invalid: an attestation is
        |                           malformed or its signature does not verify
        +-- EvalEvidenceError       eval_evidence_rejected: the logged evidence does not
                                    support the attested score (altered, dropped or
                                    cherry-picked samples; samples before pre-registration;
                                    a log range not in the checkpoint)
"""

from __future__ import annotations

__all__ = [
    "BuildOptionsInvalidError",
    "CardRevisionRefusedError",
    "EvalAttestationInvalidError",
    "EvalDataNotFoundError",
    "EvalError",
    "EvalEvidenceError",
    "EvalHarnessUnavailableError",
    "EvalRunError",
    "EvalTaskInvalidError",
    "CalibrationError",
    "ConfigTooLargeError",
    "DeclaredWeightsError",
    "EngineVersionError",
    "ManifestInvalidError",
    "ModelFolderInvalidError",
    "OptimizedTierInvalidError",
    "QuantizationError",
    "QuantizerUnavailableError",
    "RebuildRefusedError",
    "ReleaseError",
    "SafetensorsInvalidError",
    "TierMismatchError",
    "UnknownOptimizationError",
    "UnsafePathError",
    "WeightMissingError",
    "WeightShapeError",
    "WeightUnexpectedError",
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


class QuantizerUnavailableError(QuantizationError):
    """The artifact (a GGUF k-quant) is quantized by llama.cpp's own quantizer, and its Python
    binding is not installed (``make llamacpp`` or ``pip install 'tiergate[llamacpp]'``)."""

    code = "quantizer_unavailable"


class CalibrationError(QuantizationError):
    """Calibration cannot run: the text is missing, unreadable or too short, the method is
    unknown, or the architecture's norms cannot take SmoothQuant's factors exactly."""

    code = "calibration_failed"


class OptimizedTierInvalidError(ReleaseError):
    """An optimized tier folder is inconsistent with its ``quantization_config``."""

    code = "optimized_tier_invalid"


class EngineVersionError(OptimizedTierInvalidError):
    """The engine that would load a tier is missing or older than the format's minimum
    (:data:`release.engines.MIN_VERSIONS`); loading anyway could give random weights."""

    code = "engine_too_old"


class DeclaredWeightsError(ReleaseError):
    """What ``config.json`` declares does not match the tensors the weight files store.

    A model whose files lack a declared parameter is invalid: loaders would fill it with
    random values, which is also how a kilobyte release made the gateway allocate gigabytes.
    ``tensor`` names the first offending tensor (``None`` when the config as a whole is at
    fault), ``reason`` is a short phrase.
    """

    code = "declared_weights_invalid"

    def __init__(self, reason: str, tensor: str | None = None, file: str = "config.json") -> None:
        where = f"{file}: tensor {tensor!r}" if tensor is not None else file
        super().__init__(f"{where}: {reason}")
        self.file = file
        self.tensor = tensor
        self.reason = reason


class ConfigTooLargeError(DeclaredWeightsError):
    """The config declares more layers, experts or parameters than its files could hold."""

    code = "config_too_large"


class WeightMissingError(DeclaredWeightsError):
    """A parameter the architecture declares is stored in no weight file."""

    code = "weight_missing"


class WeightShapeError(DeclaredWeightsError):
    """A stored tensor's shape (or integer dtype) differs from the declared one."""

    code = "weight_shape_mismatch"


class WeightUnexpectedError(DeclaredWeightsError):
    """A stored tensor is no parameter or buffer of the architecture."""

    code = "weight_unexpected"


class BuildOptionsInvalidError(ReleaseError):
    """A build option the release could never be published with (repo id, version),
    refused before any work is done."""

    code = "build_options_invalid"


class RebuildRefusedError(ReleaseError):
    """``rebuild-optimized`` refused: the old release's statement does not verify, its open
    tier differs from what it signed, it has no tier in the old format, or the new version
    is the old one (a signed version is never rewritten)."""

    code = "rebuild_refused"


class CardRevisionRefusedError(ReleaseError):
    """A card revision cannot be rendered from its inputs, or a revised bundle changes more
    than the card (release.card_revision)."""

    code = "card_revision_refused"


class EvalError(ReleaseError):
    """An evaluation cannot be run or checked (release.evals)."""

    code = "eval_error"


class EvalTaskInvalidError(EvalError):
    """A task file is malformed: a field missing, of the wrong type or out of bounds."""

    code = "eval_task_invalid"


class EvalDataNotFoundError(EvalError):
    """A task's data source is missing, or it is not the data the task's sha256 names.
    Raised before the run makes any call."""

    code = "eval_data_not_found"


class EvalRunError(EvalError):
    """The run journal belongs to another run, or the gateway's answers cannot continue it."""

    code = "eval_run_failed"


class EvalHarnessUnavailableError(EvalError):
    """An evaluation harness (lm-evaluation-harness) that a run asks for is not installed.
    Raised before the run makes any call."""

    code = "eval_harness_unavailable"


class EvalAttestationInvalidError(EvalError):
    """An evaluation attestation is malformed, or no trusted key verifies its signature."""

    code = "eval_attestation_invalid"


class EvalEvidenceError(EvalError):
    """The logged evidence does not support the attestation: a sample altered, dropped or
    cherry-picked, a sample logged before the pre-registration, or a log index outside the
    checkpoint. ``reason`` names which check failed (stable, for tests and tools)."""

    code = "eval_evidence_rejected"

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason
