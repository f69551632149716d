"""Dependency check: every third-party distribution the code imports is declared in pyproject.

Usage: ``python -m gateway.tools.check_deps [ROOT]`` (ROOT defaults to the current directory).

Imports are read with :mod:`ast` (every form, nested and type-only ones too, and
``importlib.import_module`` with a literal name) and mapped to distributions with
:func:`importlib.metadata.packages_distributions`, so run it in an environment where the
project and its extras are installed (``make test`` does). Each part may only use the
dependency groups its install promises:

- ``licensing``: the base install; ``release`` and ``watermark``: base, or ``[engine]``
  (torch and transformers, imported lazily); ``release`` also ``[aibom]`` (the AI BOM
  models, imported lazily) and ``[llamacpp]`` (llama.cpp's quantizer for the k-quants, and
  a GGUF artifact's speed measured in llama.cpp when it imports, recorded as not measured
  when it does not) and ``[eval]`` (lm-evaluation-harness, imported lazily by
  ``release.evals.lmeval``, a clear error before any call when it is missing);
- ``gateway``: every group but ``[dev]`` and ``[llamacpp]``; ``tests`` and ``bench``: every
  group.

``[llamacpp]`` (llama-cpp-python) is published as source only and compiled by its own make
target (``make llamacpp``), so a plain install lacks it: its import is checked by the
distribution's declared name (:data:`SOURCE_BUILT`) when it is not installed.

Exit status: 0 clean, 1 problems, 2 bad ROOT or unreadable pyproject.
"""

from __future__ import annotations

import argparse
import ast
import importlib.metadata
import re
import sys
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "BASE",
    "HOST_PROVIDED",
    "SOURCE_BUILT",
    "PART_GROUPS",
    "Problem",
    "declared_groups",
    "find_problems",
    "main",
]

BASE = ""
"""The group name of ``[project] dependencies``."""

_ALL_BUT_DEV = frozenset({BASE, "engine", "cli", "server", "s3", "aibom", "safety", "eval"})
PART_GROUPS: Mapping[str, frozenset[str]] = {
    "licensing": frozenset({BASE}),
    # [llamacpp], lazily and where optional: llama.cpp's quantizer for the GGUF k-quants
    # (release.gguf_kquant) and a GGUF's speed record (release.engine_measure).
    # [eval]: lm-evaluation-harness, lazily (release.evals.lmeval).
    "release": frozenset({BASE, "engine", "aibom", "llamacpp", "eval"}),
    "watermark": frozenset({BASE, "engine"}),
    "safety": frozenset({BASE, "engine", "safety"}),
    "gateway": _ALL_BUT_DEV,
    "tests": _ALL_BUT_DEV | {"dev", "llamacpp"},
    "bench": _ALL_BUT_DEV | {"dev", "llamacpp"},
}
"""Which dependency groups each top-level directory may import from."""

HOST_PROVIDED: Mapping[str, str] = {
    # A plugin module runs inside its host's own environment, which provides the host.
    "vllm": "the vLLM logits-processor plugin is loaded by vLLM, in vLLM's environment",
}
"""Imports that no tiergate install provides, with the reason."""

SOURCE_BUILT: Mapping[str, str] = {
    "llama_cpp": "llama-cpp-python",
}
"""Import name -> distribution of the optional engines built from source by their own make
target; when absent here they are checked by this name instead of reported as uncheckable."""

_OWN = frozenset(PART_GROUPS)
_REQ_NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?")
_DYNAMIC_IMPORTERS = frozenset({"import_module", "__import__"})


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True, slots=True)
class Problem:
    """One import the declared dependencies do not cover."""

    path: Path
    line: int
    module: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: import {self.module}: {self.reason}"


def declared_groups(pyproject: Mapping[str, object]) -> dict[str, set[str]]:
    """Normalized distribution name -> the groups (``""`` = base, else the extra) declaring it.

    An extra that names the project itself (``tiergate[server]``) inherits those extras.
    """
    project = pyproject.get("project")
    if not isinstance(project, dict):
        raise ValueError("pyproject.toml has no [project] table")
    own = _normalize(str(project.get("name", "")))
    extras = project.get("optional-dependencies") or {}
    groups: dict[str, list[str]] = {BASE: list(project.get("dependencies") or [])}
    groups.update({str(k): list(v) for k, v in dict(extras).items()})

    def expand(group: str, seen: frozenset[str]) -> Iterator[str]:
        for requirement in groups.get(group, []):
            match = _REQ_NAME.match(requirement)
            if match is None:
                continue
            name = _normalize(match[1])
            if name == own:
                for extra in (match[2] or "").split(","):
                    extra = extra.strip()
                    if extra and extra not in seen:
                        yield from expand(extra, seen | {extra})
            else:
                yield name

    out: dict[str, set[str]] = {}
    for group in groups:
        for name in expand(group, frozenset({group})):
            out.setdefault(name, set()).add(group)
    return out


def _imports(tree: ast.AST) -> Iterator[tuple[str, int]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module, node.lineno
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            callee = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            first = node.args[0]
            if (
                callee in _DYNAMIC_IMPORTERS
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
                and not first.value.startswith(".")
            ):
                yield first.value, node.lineno


def _python_files(directory: Path) -> Iterator[Path]:
    for path in sorted(directory.rglob("*.py")):
        relative = path.relative_to(directory).parts
        if any(p == "__pycache__" or p.startswith(".") for p in relative):
            continue
        yield path


def find_problems(
    root: Path,
    *,
    distributions: Mapping[str, Sequence[str]] | None = None,
) -> tuple[list[Problem], int]:
    """Every undeclared (or wrongly grouped) import under ``root``, and the files checked."""
    pyproject = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    declared = declared_groups(pyproject)
    dists = distributions
    if dists is None:
        dists = importlib.metadata.packages_distributions()
    stdlib = sys.stdlib_module_names
    # The repository's own build scripts (packaging/*.py), which tests and benchmarks import by
    # putting that folder on sys.path: first-party, like a sibling module.
    scripts = {p.stem for p in (root / "packaging").glob("*.py")}
    problems: list[Problem] = []
    checked = 0
    for part, allowed in PART_GROUPS.items():
        directory = root / part
        if not directory.is_dir():
            continue
        for path in _python_files(directory):
            checked += 1
            display = path.relative_to(root)
            # Scripts in tests/ and bench/ import their siblings by name.
            local = (
                scripts
                | {p.stem for p in path.parent.glob("*.py")}
                | {p.name for p in path.parent.iterdir() if (p / "__init__.py").is_file()}
            )
            try:
                tree = ast.parse(path.read_bytes(), filename=str(path))
            except (SyntaxError, ValueError) as exc:
                problems.append(Problem(display, 0, "?", f"cannot parse: {exc}"))
                continue
            for module, line in _imports(tree):
                top = module.split(".", 1)[0]
                if top in stdlib or top in _OWN or top == "__future__" or top in local:
                    continue
                if top in HOST_PROVIDED:
                    continue
                names = dists.get(top)
                if not names and top in SOURCE_BUILT:
                    names = [SOURCE_BUILT[top]]
                if not names:
                    problems.append(
                        Problem(display, line, top, "not installed here, so not checkable")
                    )
                    continue
                groups = set().union(*(declared.get(_normalize(n), set()) for n in names))
                if not groups:
                    problems.append(
                        Problem(display, line, top, f"{names[0]} is not declared in pyproject")
                    )
                elif not groups & allowed:
                    shown = ", ".join(sorted(f"[{g}]" if g else "base" for g in groups))
                    problems.append(
                        Problem(
                            display,
                            line,
                            top,
                            f"{names[0]} is declared only in {shown}, which a {part} "
                            "install does not promise",
                        )
                    )
    problems.sort(key=lambda p: (str(p.path), p.line))
    return problems, checked


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gateway.tools.check_deps",
        description="Check that every imported third-party distribution is declared.",
    )
    parser.add_argument("root", nargs="?", default=".", type=Path, help="repository root")
    args = parser.parse_args(argv)
    root: Path = args.root
    try:
        problems, checked = find_problems(root)
    except (OSError, ValueError, tomllib.TOMLDecodeError) as exc:
        print(f"check_deps: {exc}", file=sys.stderr)
        return 2
    if problems:
        for problem in problems:
            print(problem)
        print(f"check_deps: {len(problems)} problem(s) in {checked} files", file=sys.stderr)
        return 1
    print(f"check_deps: OK, {checked} files; every import is declared")
    return 0


if __name__ == "__main__":
    sys.exit(main())
