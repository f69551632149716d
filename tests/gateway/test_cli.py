"""The `tiergate` CLI root, `admin` and `db` groups, and its one error handler."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from gateway.cli.main import COMMANDS, cli, main


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli.main", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
        check=False,
    )


def test_help_lists_command_groups() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in ("serve", "admin", "db"):
        assert name in result.output
    assert set(cli.list_commands(None)) <= set(COMMANDS)  # type: ignore[arg-type]


def test_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert "tiergate" in result.output


def test_help_does_not_import_heavy_modules() -> None:
    code = (
        "import sys; from gateway.cli.main import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "names = ('torch', 'transformers', 'fastapi', 'sqlalchemy')\n"
        "heavy = [m for m in names if m in sys.modules]\n"
        "print('HEAVY', heavy)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert "HEAVY []" in out


def test_admin_create_user_token_and_revoke(tmp_path: Path, database_url: str) -> None:
    env = {"TIERGATE_DATA_DIR": str(tmp_path), "TIERGATE_DATABASE_URL": database_url}
    created = run(["admin", "create-user", "alice", "--role", "publisher", "--org", "acme"], env)
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip().splitlines()[-1]
    assert token.startswith("tg_")
    listing = run(["admin", "list-users"], env)
    assert "alice" in listing.stdout
    assert "acme" in listing.stdout
    tokens = run(["admin", "list-tokens", "alice"], env)
    assert "active" in tokens.stdout
    assert token not in tokens.stdout
    revoked = run(["admin", "revoke-token", token], env)
    assert revoked.returncode == 0, revoked.stderr
    assert "revoked" in run(["admin", "list-tokens", "alice"], env).stdout

    # Scripts read --json; people read aligned tables with durations.
    (user,) = json.loads(run(["admin", "list-users", "--json"], env).stdout)
    assert (user["username"], user["role"], user["org"]) == ("alice", "publisher", "acme")
    (row,) = json.loads(run(["admin", "list-tokens", "alice", "--json"], env).stdout)
    assert row["state"] == "revoked"
    assert token not in json.dumps(row)
    assert "in 89d" in tokens.stdout  # expires in 90 days, shown as a duration

    # Setting a password is a logged event (it was a silent write from the CLI).
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli.main", "admin", "set-password", "alice", "--stdin"],
        input="correct horse battery staple\n", capture_output=True, text=True,
        env={**os.environ, **env}, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    engine = sa.create_engine(database_url)
    with engine.connect() as connection:
        actions = connection.execute(sa.text("SELECT entry FROM log_entries")).scalars().all()
    engine.dispose()
    (logged,) = [json.loads(e) for e in actions if "account.password_set" in e]
    assert logged["resource"] == "user:alice"
    assert logged["actor"] == {"kind": "operator"}
    assert "correct horse" not in "".join(actions)


def test_errors_are_one_clear_line_without_traceback(tmp_path: Path, database_url: str) -> None:
    env = {"TIERGATE_DATA_DIR": str(tmp_path), "TIERGATE_DATABASE_URL": database_url}
    assert run(["admin", "create-user", "bob", "--role", "developer"], env).returncode == 0
    again = run(["admin", "create-user", "bob", "--role", "developer"], env)
    assert again.returncode == 1
    assert again.stderr.strip() == "error [conflict]: user 'bob' already exists"
    verbose = run(["--verbose", "admin", "create-user", "bob", "--role", "developer"], env)
    assert verbose.returncode == 1
    assert "Traceback" in verbose.stderr
    bad_name = run(["admin", "create-user", "Bad Name", "--role", "developer"], env)
    assert bad_name.returncode == 1
    assert "invalid user name" in bad_name.stderr
    no_org = run(["admin", "create-user", "carl", "--role", "publisher"], env)
    assert "--org" in no_org.stderr


def test_admin_commands_refuse_a_data_dir_without_a_database(tmp_path: Path) -> None:
    """Regression: create-user against the wrong data dir made a new, unused database."""
    env = {"TIERGATE_DATA_DIR": str(tmp_path / "elsewhere")}
    refused = run(["admin", "create-user", "alice", "--role", "developer"], env)
    assert refused.returncode == 1
    assert "no gateway database at" in refused.stderr
    assert "tiergate db upgrade" in refused.stderr
    assert not (tmp_path / "elsewhere" / "tiergate.db").exists()
    assert run(["db", "upgrade"], env).returncode == 0
    assert run(["admin", "create-user", "alice", "--role", "developer"], env).returncode == 0


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    result = run(
        ["admin", "create-user", "x", "--role", "wizard"], {"TIERGATE_DATA_DIR": str(tmp_path)}
    )
    assert result.returncode == 2
    assert "Invalid value for '--role'" in result.stderr


def test_db_upgrade_and_current(tmp_path: Path) -> None:
    env = {"TIERGATE_DATA_DIR": str(tmp_path)}
    first = run(["db", "upgrade"], env)
    assert first.returncode == 0, first.stderr
    assert "upgraded" in first.stdout
    assert "already at" in run(["db", "upgrade"], env).stdout
    current = run(["db", "current"], env).stdout
    assert current.splitlines()[0].split()[-1] == current.splitlines()[1].split()[-1]


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_data_dir_nonroot(tmp_path: Path) -> None:  # pragma: no cover - CI is root
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    result = run(["serve"], {"TIERGATE_DATA_DIR": str(locked / "data")})
    assert result.returncode == 1


def test_data_dir_that_is_a_file_is_a_clear_error(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    result = run(["serve", "--port", "0"], {"TIERGATE_DATA_DIR": str(not_a_dir)})
    assert result.returncode == 1
    assert "error [configuration_error]" in result.stderr
    assert "data directory" in result.stderr
    assert "Traceback" not in result.stderr


def test_main_returns_cleanly_for_help(capsys: pytest.CaptureFixture[str]) -> None:
    main(["--help"])
    assert "Commands" in capsys.readouterr().out


def test_replicas_starting_together_bootstrap_one_admin(app: Any) -> None:
    """Regression: replicas starting at once on one empty database crashed on a duplicate admin."""
    import threading

    from gateway.cli.serve import _bootstrap_admin

    state = app.state.gateway
    barrier = threading.Barrier(4)
    results: list[object] = []

    def start() -> None:
        barrier.wait()
        try:
            results.append(_bootstrap_admin(state))
        except Exception as exc:  # the bug: an IntegrityError escaped and killed the replica
            results.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not [r for r in results if isinstance(r, Exception)], results
    assert len([r for r in results if isinstance(r, str)]) == 1
