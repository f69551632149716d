"""Unpack ``npm pack`` tarballs and export JavaScript word lists as JSON (the safety sources).

The packages are JavaScript modules, so Node evaluates each list once at fetch time and writes
it as ``<key>.json`` beside the tarballs; the evaluation then reads plain JSON.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path


def unpack_and_export(npm: Path, folders: Mapping[str, str], exports: Mapping[str, str]) -> None:
    """Unpack each ``<prefix><version>.tgz`` in ``npm`` into ``npm/<folder>`` (``folders``:
    folder -> tarball prefix), then run each export expression (``out(value)`` writes
    ``<key>.json``) with Node in ``npm``."""
    for name, prefix in folders.items():
        for tgz in npm.glob(f"{prefix}[0-9]*.tgz"):
            (npm / name).mkdir(exist_ok=True)
            subprocess.run(["tar", "xzf", tgz.name, "-C", name], cwd=npm, check=True)
    for key, expression in exports.items():
        script = (
            f"const fs = require('fs'); const out = v => fs.writeFileSync('{key}.json',"
            f" JSON.stringify(v)); {expression};"
        )
        subprocess.run(["node", "-e", script], cwd=npm, check=True)
