"""The `tiergate` command root: lazily loaded command groups and the one error handler."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Any

import click

from gateway import __version__

# name -> (module, attribute, one-line help). Groups are imported only when used so that
# `tiergate --help` never pays for torch, transformers or the web stack.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "serve": ("gateway.cli.serve", "command", "Run the gateway HTTP server."),
    "admin": ("gateway.cli.admin", "group", "Manage users, API tokens and OAuth clients."),
    "db": ("gateway.cli.db", "group", "Database migrations."),
    "keys": ("gateway.cli.keys", "group", "Generate and register signing keys."),
    "release": ("gateway.cli.release", "group", "Build, verify, publish and manage releases."),
    "access": ("gateway.cli.access", "group", "Request and review access to gated tiers."),
    "pull": ("gateway.cli.pull", "command", "Download and verify a release tier."),
    "watermark": ("gateway.cli.watermark", "group", "Detect watermarks in text."),
    "log": ("gateway.cli.log", "group", "Read and audit the transparency log."),
    "report": ("gateway.cli.report", "group", "Report flaws and bias; verified against the log."),
    "auditor": ("gateway.cli.auditor", "group", "Auditor keys; open sealed reasoning traces."),
    "engine": ("gateway.cli.engine", "group", "Serve a verified release tier on vLLM."),
    "eval": ("gateway.cli.eval", "group", "Run and verify evaluations as logged evidence."),
    "audit": ("gateway.cli.audit", "group", "Audit a release's safety record from the log."),
    "provenance": (
        "gateway.cli.provenance",
        "group",
        "Verify C2PA Content Credentials offline.",
    ),
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name in COMMANDS if _module_exists(COMMANDS[name][0])]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        spec = COMMANDS.get(cmd_name)
        if spec is None or not _module_exists(spec[0]):
            return None
        module = importlib.import_module(spec[0])
        command = getattr(module, spec[1])
        if not isinstance(command, click.Command):
            raise TypeError(f"{spec[0]}.{spec[1]} is not a click command")
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Help text comes from COMMANDS so listing the groups imports none of them.
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _module_exists(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tiergate")
@click.option("--verbose", "-v", is_flag=True, help="Show tracebacks on errors.")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """tiergate: tiered model releases, gated access, watermarking and call logs.

    Publishers build and publish signed two-tier releases; developers pull the open
    tier and request the gated one; detectors check text for watermarks.
    Run `tiergate COMMAND --help` for each command.
    """
    ctx.ensure_object(dict)
    ctx.obj["verbose"] = verbose


def _wants_verbose(args: list[str]) -> bool:
    """``--verbose`` is a root option: only the words before the command name count (a value
    such as ``--use "-v"`` further on is not the flag)."""
    for arg in args:
        if arg in COMMANDS:
            return False
        if arg in ("--verbose", "-v"):
            return True
    return False


def _project_errors() -> tuple[type[Exception], ...]:
    # Evaluated only when an exception is being matched, so `--help` never imports the roots.
    from gateway.errors import error_roots

    return error_roots()


def main(argv: list[str] | None = None) -> Any:
    """Entry point of the console script: run the CLI, turning our errors into one clear line.

    The project's errors (the four roots of :func:`gateway.errors.error_roots`) are caught
    once, here: one line with their code, the traceback too with ``--verbose``. Any other
    exception is a bug and always shows its traceback.
    """
    verbose = _wants_verbose(sys.argv[1:] if argv is None else argv)
    try:
        return cli.main(args=argv, prog_name="tiergate", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except _project_errors() as exc:
        from gateway.cli._errors import report_project_error

        sys.exit(report_project_error(exc, verbose=verbose))
    except Exception as exc:
        from gateway.cli._errors import report_internal_error

        sys.exit(report_internal_error(exc))


if __name__ == "__main__":
    main()
