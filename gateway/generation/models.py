"""Models served from the gateway's own stored releases: materialize, verify, load, cache (LRU).

A tier's files are materialized from blobs into ``<data_dir>/model-cache/<manifest digest>``
(hard links for local blobs, a streamed copy otherwise), its ``model.sig`` written from the
tier's stored bundle, and the folder checked with ``release.verify.verify_tier`` against the
signer's registered public key before anything is loaded: the gateway only runs weights the
publisher signed. Loaded models stay in memory under a byte budget, least recently used out.

Signed is not the same as sound: before loading, the folder's safetensors headers are parsed
defensively and ``release.declared`` checks that every tensor ``config.json`` declares is
stored (a loader would otherwise allocate the missing ones, filled with random values). The
memory the model will take is computed from those declared sizes and reserved in the budget
before a byte is allocated: a model larger than the whole budget is refused with 507
(``model_too_large``: retrying cannot help, the operator must raise
``TIERGATE_GENERATION_MODEL_CACHE_BYTES``); one that fits only once other loads in flight end
gets 503 (``model_cache_busy``, Retry-After). Invalid files are 422 (``model_invalid``).
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from gateway.errors import (
    GatewayError,
    GrantRequired,
    ServiceUnavailable,
    ValidationFailed,
)
from gateway.storage.base import BlobStore
from licensing.keys import PublicKey
from licensing.layout import REPO_ID_PATTERN, SIGNATURE_FILE, TierFile

if TYPE_CHECKING:
    pass

__all__ = [
    "GrantRequired",
    "LoadedModel",
    "ModelCache",
    "ModelCacheBusy",
    "ModelInvalid",
    "ModelTooLarge",
    "ModelRef",
    "TierFile",
    "context_length_of",
    "parse_model_name",
]

DEFAULT_TIER = "open"
_MODEL_NAME = re.compile(
    rf"(?P<repo>{REPO_ID_PATTERN.pattern})"
    r"(?:@(?P<version>[A-Za-z0-9][A-Za-z0-9.+_-]{0,63}))?(?::(?P<tier>[a-z0-9_-]{1,32}))?"
)


@dataclass(frozen=True, slots=True)
class ModelRef:
    """One released model tier, as the database describes it."""

    release_id: int
    repo_id: str
    version: str
    tier: str
    manifest_digest: str
    statement_digest: str
    bundle: str
    files: tuple[TierFile, ...]
    public_key_pem: str
    gated: bool = False

    @property
    def name(self) -> str:
        return f"{self.repo_id}@{self.version}:{self.tier}"


@dataclass
class LoadedModel:
    ref: ModelRef
    model: Any
    tokenizer: Any
    size_bytes: int
    vocab_size: int
    # Positions the model was trained for (config.json's max_position_embeddings, or an
    # engine's smaller max_model_len); None: the config does not say.
    context_length: int | None = None
    # Watermark key/config of this model, filled once by the generation service.
    extras: dict[str, Any] = field(default_factory=dict)


class ModelLoadFailed(ServiceUnavailable):
    code = "model_unavailable"
    title = "Model unavailable"


class ModelNotVerified(ValidationFailed):
    code = "model_not_verified"
    title = "Model failed verification"


class ModelInvalid(ValidationFailed):
    """Signed files that are no loadable model: malformed safetensors, or weights missing,
    misshapen or extra compared with what config.json declares."""

    code = "model_invalid"
    title = "Model files are invalid"


class ModelTooLarge(GatewayError):
    """The model's declared size exceeds the whole model-cache budget of this gateway."""

    code = "model_too_large"
    status = 507
    title = "Model too large for this gateway"


class ModelCacheBusy(ServiceUnavailable):
    """The model fits the budget, but not next to the loads in flight; retry shortly."""

    code = "model_cache_busy"
    title = "Model cache busy"


def _safe_relative(path: str) -> PurePosixPath:
    rel = PurePosixPath(path)
    if rel.is_absolute() or ".." in rel.parts or not rel.parts or "\\" in path:
        raise ModelNotVerified(f"refusing to materialize unsafe path {path!r}")
    return rel


def _model_bytes(model: Any) -> int:
    total = 0
    for tensor in list(model.parameters()) + list(model.buffers()):
        total += int(tensor.numel()) * int(tensor.element_size())
    return total


class ModelCache:
    """Thread-safe LRU of loaded models, bounded by ``budget_bytes`` of weights."""

    def __init__(
        self,
        directory: Path,
        blobs: BlobStore,
        budget_bytes: int,
        *,
        loader: Callable[[Path], Any] | None = None,
    ) -> None:
        self.directory = directory
        self.blobs = blobs
        self.budget_bytes = budget_bytes
        self._loader = loader
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()
        self._tokenizers: OrderedDict[str, Any] = OrderedDict()
        self._views: dict[str, LoadedModel] = {}  # tiers served by remote engines
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}
        # Bytes promised to loads in flight, counted against the budget with loaded models.
        self._reserved = 0
        self.loads = 0

    # ------------------------------------------------------------------ files

    def materialize(self, ref: ModelRef) -> Path:
        """The verified folder of ``ref`` (built on first use, re-verified on every load)."""
        from release.verify import TierVerificationError, verify_tier

        target = self.directory / ref.manifest_digest
        if not target.is_dir():
            self.directory.mkdir(parents=True, exist_ok=True)
            unique = f"{os.getpid()}-{threading.get_ident()}"
            staging = self.directory / f".tmp-{ref.manifest_digest}-{unique}"
            shutil.rmtree(staging, ignore_errors=True)
            try:
                for file in ref.files:
                    self._write_file(staging, file)
                (staging / SIGNATURE_FILE).write_text(ref.bundle, encoding="utf-8")
                try:
                    staging.rename(target)
                except OSError:
                    if not target.is_dir():  # another thread or process won: keep theirs
                        raise
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        try:
            verify_tier(target, PublicKey.from_pem(ref.public_key_pem.encode("ascii")))
        except TierVerificationError as exc:
            # A corrupted cache must not stay: the next request rebuilds it from the blobs.
            shutil.rmtree(target, ignore_errors=True)
            raise ModelNotVerified(f"{ref.name} failed verification: {exc.message}") from exc
        return target

    def _write_file(self, root: Path, file: TierFile) -> None:
        out = root / _safe_relative(file.path)
        out.parent.mkdir(parents=True, exist_ok=True)
        local = self.blobs.local_path(file.sha256)
        if local is not None:
            try:
                os.link(local, out)
                return
            except OSError:
                shutil.copyfile(local, out)
                return
        chunks = self.blobs.open_range(file.sha256)
        try:
            with out.open("wb") as handle:
                for chunk in chunks:
                    handle.write(chunk)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    # ------------------------------------------------------------------ models

    def get(self, ref: ModelRef) -> LoadedModel:
        key = ref.name
        with self._lock:
            found = self._models.get(key)
            if found is not None:
                self._models.move_to_end(key)
                return found
            loading = self._loading.setdefault(key, threading.Lock())
        with loading:  # one load per model, others wait for it
            with self._lock:
                found = self._models.get(key)
                if found is not None:
                    self._models.move_to_end(key)
                    return found
            loaded, reserved = self._load(ref)
            with self._lock:
                # The reservation becomes the model's own size in the same step.
                self._reserved -= reserved
                self._models[key] = loaded
                self._evict()
                self._loading.pop(key, None)
            return loaded

    def loaded(self, ref: ModelRef) -> LoadedModel | None:
        """``ref``'s model if it is in memory now (never loads)."""
        with self._lock:
            found = self._models.get(ref.name)
            if found is not None and found.ref == ref:
                self._models.move_to_end(ref.name)
                return found
            return None

    def _evict(self) -> None:
        total = sum(m.size_bytes for m in self._models.values())
        while total > self.budget_bytes and len(self._models) > 1:
            _, dropped = self._models.popitem(last=False)
            total -= dropped.size_bytes

    @staticmethod
    def declared_bytes(ref: ModelRef, directory: Path) -> int:
        """Memory ``directory``'s model will take once loaded, from its declared sizes.

        Raises :class:`ModelInvalid` unless its weights are well-formed safetensors that
        store exactly the tensors config.json declares. Reads headers only.
        """
        from release.declared import check_declared_weights
        from release.errors import ReleaseError
        from release.safetensors_check import validate_model_folder

        try:
            declared = check_declared_weights(validate_model_folder(directory))
        except ReleaseError as exc:
            raise ModelInvalid(
                f"{ref.name} cannot be loaded: {exc.message}", extra={"reason": exc.code}
            ) from None
        return declared.load_bytes()

    def _reserve(self, ref: ModelRef, need: int) -> None:
        """Make room for ``need`` bytes (evicting least recently used models) or refuse."""
        if need > self.budget_bytes:
            raise ModelTooLarge(
                f"{ref.name} needs {need:,} bytes of memory; this gateway's model cache "
                f"holds {self.budget_bytes:,}"
            )
        with self._lock:
            held = sum(m.size_bytes for m in self._models.values())
            while self._models and held + self._reserved + need > self.budget_bytes:
                _, dropped = self._models.popitem(last=False)
                held -= dropped.size_bytes
            if held + self._reserved + need > self.budget_bytes:
                raise ModelCacheBusy(f"other models are loading; {ref.name} must wait")
            self._reserved += need

    def _load(self, ref: ModelRef) -> tuple[LoadedModel, int]:
        """The loaded model and the bytes reserved for it (the caller hands them back)."""
        directory = self.materialize(ref)
        need = self.declared_bytes(ref, directory)
        self._reserve(ref, need)
        try:
            model, tokenizer = self._read(ref, directory)
        except BaseException:
            with self._lock:
                self._reserved -= need
            raise
        self.loads += 1
        loaded = LoadedModel(
            ref=ref,
            model=model,
            tokenizer=tokenizer,
            size_bytes=_model_bytes(model),
            vocab_size=int(model.config.vocab_size),
            context_length=context_length_of(model.config),
        )
        return loaded, need

    def _read(self, ref: ModelRef, directory: Path) -> tuple[Any, Any]:
        from safetensors import SafetensorError

        from release.errors import ReleaseError

        try:
            if self._loader is not None:
                model = self._loader(directory)
            else:
                from release.loader import load_model

                model = load_model(directory)
            return model, self._load_tokenizer(directory)
        except (ReleaseError, SafetensorError) as exc:
            # The checks before read headers only; this is the library finding more.
            raise ModelInvalid(f"{ref.name} cannot be loaded: {exc}") from None
        except (OSError, ValueError) as exc:
            raise ModelLoadFailed(f"cannot load {ref.name}: {exc}") from exc

    @staticmethod
    def _load_tokenizer(directory: Path) -> Any:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        # Batched prompts are padded on the left so every row's next token follows its prompt.
        tokenizer.padding_side = "left"
        return tokenizer

    def tokenizer(self, ref: ModelRef) -> Any:
        """Just the tokenizer (for detection): verified folder, no weights loaded."""
        key = ref.name
        with self._lock:
            loaded = self._models.get(key)
            if loaded is not None:
                return loaded.tokenizer
            found = self._tokenizers.get(key)
            if found is not None:
                return found
        tokenizer = self._load_tokenizer(self.materialize(ref))
        with self._lock:
            self._tokenizers[key] = tokenizer
            while len(self._tokenizers) > 64:
                self._tokenizers.popitem(last=False)
        return tokenizer

    def engine_view(self, ref: ModelRef) -> LoadedModel:
        """``ref`` as a remote engine serves it: verified folder, tokenizer and config only.

        The weights stay on disk (``model`` is None): the gateway encodes prompts, counts
        tokens and bounds the context; the engine samples.
        """
        import json

        key = ref.name
        with self._lock:
            found = self._views.get(key)
            if found is not None and found.ref == ref:
                return found
        directory = self.materialize(ref)
        try:
            config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
            vocab_size = int(config["vocab_size"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelInvalid(f"{ref.name} has no readable vocab_size in config.json") from exc
        view = LoadedModel(
            ref=ref,
            model=None,
            tokenizer=self._load_tokenizer(directory),
            size_bytes=0,
            vocab_size=vocab_size,
            context_length=context_length_of(config),
        )
        with self._lock:
            # Another thread may have built it meanwhile: keep the first (its extras matter).
            found = self._views.get(key)
            if found is not None and found.ref == ref:
                return found
            self._views[key] = view
        return view

    def loaded_names(self) -> list[str]:
        with self._lock:
            return list(self._models)


def context_length_of(config: Any) -> int | None:
    """``max_position_embeddings`` of a model config (object or config.json dict), if any."""
    value = (
        config.get("max_position_embeddings")
        if isinstance(config, dict)
        else getattr(config, "max_position_embeddings", None)
    )
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def parse_model_name(name: str) -> tuple[str, str | None, str]:
    """``ORG/NAME[@VERSION][:tier]`` -> (repo_id, version or None for the latest, tier)."""
    match = _MODEL_NAME.fullmatch(name)
    if match is None:
        raise ValidationFailed(f"model must look like ORG/NAME[@VERSION][:tier], got {name!r:.200}")
    return match["repo"], match["version"], match["tier"] or DEFAULT_TIER
