"""Import-layer check: the pure parts keep to their layers, and so does the gateway inside.

Usage: ``python -m gateway.tools.check_layers [ROOT]`` (ROOT defaults to the current directory).

Two sets of rules:

- the pure parts (``release``, ``licensing``, ``watermark``, ``safety``) never import the web
  stack or the gateway, and ``licensing`` / ``watermark`` / ``safety`` import no other part;
- the gateway's internal contracts (:data:`GATEWAY_CONTRACTS`): drivers (``routes``, ``web``,
  ``cli``) -> ``services`` -> ``db`` / ``storage`` / ``ledger`` / ``generation``. No driver
  imports another driver module (shared HTTP helpers live below them), no layer below the
  drivers reaches back up into them, ``generation`` sits below ``services`` and never calls
  them, and drivers build no SQL (no ``select``/``insert``/``update``/``delete``/``text``):
  every rule and query lives in a service.

Files are parsed with :mod:`ast`, never imported, so the check runs without the heavy
dependencies and cannot be fooled by import-time side effects. Every import form counts:
``import x.y``, ``from x import y``, relative imports, imports nested in functions or under
``if TYPE_CHECKING:`` (a type-only import still couples the layers), and
``importlib.import_module("x")`` / ``__import__("x")`` with a literal name.

Exit status: 0 clean, 1 violations (or a file that does not parse), 2 bad ROOT.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "FORBIDDEN",
    "GATEWAY_CONTRACTS",
    "PARTS",
    "Contract",
    "Violation",
    "find_gateway_violations",
    "find_violations",
    "main",
]

_WEB_STACK = frozenset({"gateway", "fastapi", "sqlmodel", "sqlalchemy", "starlette", "uvicorn"})

PARTS = ("release", "licensing", "watermark", "safety")

FORBIDDEN: Mapping[str, frozenset[str]] = {
    # release builds on licensing and watermark, but never on the service around it.
    "release": _WEB_STACK,
    # licensing and watermark are leaves: usable on their own, so no other tiergate part.
    "licensing": _WEB_STACK | {"release", "watermark"},
    "watermark": _WEB_STACK | {"release", "licensing"},
    # safety (output checks and the policy a release signs) is a leaf too: the gateway
    # verifies and loads a guard model and hands it over.
    "safety": _WEB_STACK | {"release", "licensing", "watermark"},
}
"""Top-level module names each part must not import."""

_DYNAMIC_IMPORTERS = frozenset({"import_module", "__import__"})

_DRIVERS = ("gateway.routes", "gateway.web", "gateway.cli")
_BELOW_DRIVERS = (
    "gateway.services",
    "gateway.generation",
    "gateway.db",
    "gateway.storage",
    "gateway.ledger",
    "gateway.auth",
    "gateway.schemas",
    "gateway.witness",
)
_SQL_BUILDERS = frozenset({"select", "insert", "update", "delete", "text"})
# Driver modules that are plumbing every page, route or command of their driver uses (no
# route, page or command of their own). Private modules (``_name``) count as plumbing too.
_DRIVER_PLUMBING = frozenset(
    {
        "gateway.web.common",
        "gateway.web.render",
        "gateway.web.sessions",
        "gateway.web.csrf",
        "gateway.web.markdown",
        "gateway.web.chart",
    }
)
# Modules that assemble a driver from its parts: the app's page wiring, the CLI root, and
# command groups that attach subcommands kept in modules of their own.
_COMPOSITION = {
    "gateway.web.routes": ("gateway.web",),
    "gateway.web": ("gateway.web",),
    "gateway.cli.main": ("gateway.cli",),
    "gateway.cli.access": ("gateway.cli.links",),
    "gateway.cli.release": (
        "gateway.cli.release_publish",
        "gateway.cli.release_rebuild",
        "gateway.cli.release_card",
    ),
    "gateway.cli.log": ("gateway.cli.log_witness",),
}


@dataclass(frozen=True, slots=True)
class Contract:
    """Modules under any of ``within`` must not import modules under any of ``forbidden``.

    ``same_package_only``: the forbidden prefix is the module's own driver package, and only
    other modules of it are refused (a route module importing another route module).
    """

    name: str
    within: tuple[str, ...]
    forbidden: tuple[str, ...]
    same_package_only: bool = False


GATEWAY_CONTRACTS: tuple[Contract, ...] = (
    Contract("a driver module never imports another one", _DRIVERS, _DRIVERS, True),
    Contract(
        "the CLI never imports the web layer or the routes",
        ("gateway.cli",),
        ("gateway.web", "gateway.routes"),
    ),
    Contract(
        "the web layer never imports the routes or the CLI",
        ("gateway.web",),
        ("gateway.routes", "gateway.cli"),
    ),
    Contract(
        "the routes never import the web layer or the CLI",
        ("gateway.routes",),
        ("gateway.web", "gateway.cli"),
    ),
    Contract("layers below the drivers never reach back up", _BELOW_DRIVERS, _DRIVERS),
    Contract("generation sits below the services", ("gateway.generation",), ("gateway.services",)),
)
"""The gateway's internal import contracts (module-name prefixes)."""


@dataclass(frozen=True, slots=True)
class Violation:
    """One forbidden import: where it is, which part it is in, what it reaches."""

    path: Path
    line: int
    part: str
    imported: str
    statement: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}"
        return f"{where}: {self.part} must not import {self.imported}: {self.statement}"


def _package_of(path: Path, root: Path) -> list[str]:
    """Dotted package a module belongs to: its directory (for ``__init__.py`` too)."""
    return list(path.relative_to(root).parent.parts)


def _imported_modules(node: ast.AST, package: list[str]) -> Iterator[tuple[str, bool]]:
    """(absolute dotted name, escapes the top-level package) for each module ``node`` imports."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name, False
    elif isinstance(node, ast.ImportFrom):
        if node.level == 0:
            yield node.module or "", False
        elif node.level > len(package):
            # `from .. import x` above the top-level package fails at run time; we name what it
            # reaches for and refuse it rather than guess what the author meant.
            names = [node.module] if node.module else [alias.name for alias in node.names]
            for name in names:
                yield name, True
        else:
            base = package[: len(package) - node.level + 1]
            yield ".".join([*base, node.module] if node.module else base), False
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
            yield first.value, False


def _check_file(path: Path, root: Path, part: str) -> Iterator[Violation]:
    display = path.relative_to(root)
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError) as exc:
        line = exc.lineno if isinstance(exc, SyntaxError) and exc.lineno else 0
        # Fail closed: a file we cannot parse is a file we cannot vouch for.
        yield Violation(display, line, part, "?", f"cannot parse: {exc}")
        return
    package = _package_of(path, root)
    forbidden = FORBIDDEN[part]
    for node in ast.walk(tree):
        for module, escapes in _imported_modules(node, package):
            top = module.split(".", 1)[0]
            if escapes:
                top = f"{top} (relative import beyond the top-level package)"
            elif top not in forbidden:
                continue
            lineno = node.lineno if isinstance(node, ast.stmt | ast.expr) else 0
            yield Violation(display, lineno, part, top, ast.unparse(node))


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def _is_plumbing(module: str) -> bool:
    return module in _DRIVER_PLUMBING or module.rsplit(".", 1)[-1].startswith("_")


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _contract_violations(path: Path, root: Path, tree: ast.AST) -> Iterator[Violation]:
    display = path.relative_to(root)
    name = _module_name(path, root)
    package = _package_of(path, root)
    for node in ast.walk(tree):
        lineno = node.lineno if isinstance(node, ast.stmt | ast.expr) else 0
        if (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and (node.module or "").split(".", 1)[0] in ("sqlmodel", "sqlalchemy")
            and any(_under(name, driver) for driver in _DRIVERS)
        ):
            built = sorted({alias.name for alias in node.names} & _SQL_BUILDERS)
            if built:
                yield Violation(
                    display,
                    lineno,
                    "drivers build no SQL (a service does)",
                    ", ".join(built),
                    ast.unparse(node),
                )
        for module, _ in _imported_modules(node, package):
            for contract in GATEWAY_CONTRACTS:
                if not any(_under(name, w) for w in contract.within):
                    continue
                for forbidden in contract.forbidden:
                    if not _under(module, forbidden):
                        continue
                    if contract.same_package_only and (
                        not _under(name, forbidden)
                        or module == name
                        or _is_plumbing(module)
                        or any(_under(module, c) for c in _COMPOSITION.get(name, ()))
                    ):
                        continue
                    yield Violation(display, lineno, contract.name, module, ast.unparse(node))


def find_gateway_violations(root: Path) -> tuple[list[Violation], int]:
    """Breaches of :data:`GATEWAY_CONTRACTS` under ``root/gateway``, and files checked."""
    directory = root / "gateway"
    if not directory.is_dir():
        return [], 0  # a tree of the pure parts alone: nothing of the gateway to check
    violations: list[Violation] = []
    checked = 0
    for path in _python_files(directory):
        checked += 1
        try:
            tree = ast.parse(path.read_bytes(), filename=str(path))
        except (SyntaxError, ValueError) as exc:
            line = exc.lineno if isinstance(exc, SyntaxError) and exc.lineno else 0
            violations.append(
                Violation(path.relative_to(root), line, "gateway", "?", f"cannot parse: {exc}")
            )
            continue
        violations.extend(_contract_violations(path, root, tree))
    violations.sort(key=lambda v: (str(v.path), v.line))
    return violations, checked


def _python_files(directory: Path) -> Iterator[Path]:
    for path in sorted(directory.rglob("*.py")):
        relative = path.relative_to(directory).parts
        if any(p == "__pycache__" or p.startswith(".") for p in relative):
            continue
        yield path


def find_violations(root: Path) -> tuple[list[Violation], int]:
    """All forbidden imports under ``root``'s parts, and how many files were checked.

    Raises ``FileNotFoundError`` if one of :data:`PARTS` is not a directory under ``root``:
    checking nothing must not look like success.
    """
    missing = [part for part in PARTS if not (root / part).is_dir()]
    if missing:
        raise FileNotFoundError(f"{root}: no {', '.join(missing)} directory to check")
    violations: list[Violation] = []
    checked = 0
    for part in PARTS:
        for path in _python_files(root / part):
            checked += 1
            violations.extend(_check_file(path, root, part))
    violations.sort(key=lambda v: (str(v.path), v.line))
    return violations, checked


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gateway.tools.check_layers",
        description="Check that release/, licensing/ and watermark/ keep to their import layers.",
    )
    parser.add_argument("root", nargs="?", default=".", type=Path, help="repository root")
    args = parser.parse_args(argv)
    root: Path = args.root
    try:
        violations, checked = find_violations(root)
        internal, gateway_checked = find_gateway_violations(root)
    except FileNotFoundError as exc:
        print(f"check_layers: {exc}", file=sys.stderr)
        return 2
    violations += internal
    if violations:
        for violation in violations:
            print(violation)
        print(
            f"check_layers: {len(violations)} forbidden import(s) in "
            f"{checked + gateway_checked} files",
            file=sys.stderr,
        )
        return 1
    print(
        f"check_layers: OK, {checked} files in {', '.join(PARTS)} and {gateway_checked} in "
        "gateway; no forbidden imports"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
