"""Browser-test helpers shared by the browser journeys: Chromium, axe-core, page checks.

The `browser` fixture itself lives in `tests/e2e/conftest.py`: one Playwright instance per
test session (two sync Playwright instances in one process refuse to start).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path(os.environ.get("TIERGATE_CHROMIUM", "/usr/bin/chromium"))
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "web"
AXE_DIR = ROOT / "test-artifacts" / "axe"
AXE_JS = AXE_DIR / "node_modules" / "axe-core" / "axe.min.js"
PASSWORD = "correct horse battery"


def missing_browser(why: str) -> None:
    if os.environ.get("TIERGATE_REQUIRE_BROWSER") == "1":
        pytest.fail(f"browser tests are required here but {why}")
    pytest.skip(why)


def axe_source() -> str | None:
    """axe-core from the npm registry, installed once into the (gitignored) artifacts dir."""
    if not AXE_JS.exists() and shutil.which("npm"):
        AXE_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(AXE_DIR), "axe-core"],
            capture_output=True,
            timeout=120,
            check=False,
        )
    return AXE_JS.read_text() if AXE_JS.exists() else None


# Used when npm is unavailable: labels, alt text, language and landmark checks.
FALLBACK_CHECK = """() => {
  const problems = [];
  if (!document.documentElement.lang) problems.push("html has no lang");
  if (!document.querySelector("main")) problems.push("no main landmark");
  for (const el of document.querySelectorAll("input:not([type=hidden]), select, textarea")) {
    const labelled = (el.id && document.querySelector(`label[for="${el.id}"]`))
      || el.closest("label") || el.getAttribute("aria-label");
    if (!labelled) problems.push(`unlabelled ${el.tagName} ${el.name}`);
  }
  for (const img of document.querySelectorAll("img:not([alt])")) problems.push("img without alt");
  for (const b of document.querySelectorAll("button, a[href]")) {
    if (!(b.textContent.trim() || b.getAttribute("aria-label"))) problems.push("empty control");
  }
  return problems;
}"""


class Pages:
    """Screenshots and accessibility checks of every page the journey visits."""

    def __init__(self, axe: str | None) -> None:
        self.axe = axe

    def check(self, page: Any, name: str) -> None:
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        if self.axe is not None:
            if not page.evaluate("() => typeof window.axe !== 'undefined'"):
                page.add_script_tag(content=self.axe)
            result = page.evaluate(
                "() => axe.run(document, {runOnly: {type: 'tag', values: "
                "['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})"
            )
            problems = [
                f"{v['id']}: {v['help']} ({[n['target'] for n in v['nodes']][:3]})"
                for v in result["violations"]
            ]
        else:
            problems = page.evaluate(FALLBACK_CHECK)
        assert problems == [], f"accessibility problems on {name}: {problems}"
        overflow = page.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 1, f"{name} scrolls sideways by {overflow}px"


def tiergate(*args: str, env: dict[str, str], stdin: str | None = None) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli.main", *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=120,
        check=False,
        env={**os.environ, **env},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture
def database_url(tmp_path: Path, sqlite_template: Path) -> str:
    """SQLite only: the browser journey is about the interface, not the database."""
    target = tmp_path / "tiergate.db"
    shutil.copyfile(sqlite_template, target)
    return f"sqlite:///{target}"


def sign_in(page: Any, base: str, username: str) -> None:
    page.goto(f"{base}/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base}/")
