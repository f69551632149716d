"""Run the real `model_signing` CLI on a signed tier folder, as a user who trusts it would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def model_signing_verify(folder: Path, public_key: Path) -> subprocess.CompletedProcess[str]:
    """``model_signing verify key FOLDER --signature FOLDER/model.sig ...``, unchanged."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "model_signing",
            "verify",
            "key",
            str(folder),
            "--signature",
            str(folder / "model.sig"),
            "--public_key",
            str(public_key),
            "--ignore_unsigned_files",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
