"""`tiergate report`: submit a flaw or bias report, read it, list a model's, move it along."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from gateway.cli._client import api_client, call, gateway_options
from gateway.cli._output import echo_json, echo_table, json_option

__all__ = ["group"]


@click.group(name="report")
def group() -> None:
    """Report flaws and bias in a model; quoted output is verified against the log."""


def _echo_report(report: dict[str, Any]) -> None:
    check = report["verification"]
    click.echo(f"report {report['id']} on {report['model']}: {report['state']}")
    click.echo(check["statement"])
    if report.get("fixed_version"):
        click.echo(f"fixed in {report['fixed_version']}")
    visibility = "public" if report["public"] else f"private until {report['disclose_after']}"
    click.echo(f"{visibility}; logged as entry {report['log_index']}")


@group.command("submit")
@click.argument("model", metavar="ORG/NAME[@VERSION]")
@click.option("--category", required=True, help="bias, toxicity, harmful, factuality, ...")
@click.option("--description", required=True, help="What is wrong.")
@click.option(
    "--quote-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="A file holding the model output, exactly as received (- for none).",
)
@click.option("--call-id", default=None, help="The call that produced the output, if known.")
@json_option
@gateway_options
def submit(
    model: str,
    category: str,
    description: str,
    quote_file: Path | None,
    call_id: str | None,
    as_json: bool,
    gateway: str,
    token: str | None,
) -> None:
    """Submit a report; prints whether the quoted output is a genuine logged output."""
    quote = quote_file.read_text(encoding="utf-8") if quote_file is not None else None
    body = {"model": model, "category": category, "description": description,
            "quoted_output": quote, "call_id": call_id}  # fmt: skip
    with api_client(gateway, token, timeout=120.0) as http:
        report = call(http, "POST", "/api/reports", what="submitting the report", json=body)
    if as_json:
        echo_json(report)
    else:
        _echo_report(report)


@group.command("show")
@click.argument("report_id", type=click.IntRange(min=1))
@json_option
@gateway_options
def show(report_id: int, as_json: bool, gateway: str, token: str | None) -> None:
    """One report (yours, your org's, or any disclosed one)."""
    with api_client(gateway, token) as http:
        report = call(http, "GET", f"/api/reports/{report_id}", what="reading the report")
    if as_json:
        echo_json(report)
    else:
        _echo_report(report)


@group.command("list")
@click.argument("model", metavar="ORG/NAME")
@json_option
@gateway_options
def list_reports(model: str, as_json: bool, gateway: str, token: str | None) -> None:
    """The reports about a model that you may see."""
    with api_client(gateway, token) as http:
        found = call(http, "GET", "/api/reports", params={"model": model}, what="listing")
    if as_json:
        echo_json(found)
        return
    rows = [
        (r["id"], r["category"], r["state"], r["verification"]["status"], r["created_at"])
        for r in found
    ]
    echo_table(("ID", "CATEGORY", "STATE", "QUOTE", "RECEIVED"), rows, empty="no reports")


@group.command("step")
@click.argument("report_id", type=click.IntRange(min=1))
@click.argument(
    "step",
    type=click.Choice(["triaged", "accepted", "rejected", "fixed", "disclosed", "rewarded"]),
)
@click.option("--version", "version", default=None, help="For `fixed`: the fixing version.")
@click.option("--note", default=None, help="Logged as its digest only (the text is not kept).")
@json_option
@gateway_options
def step(
    report_id: int,
    step: str,
    version: str | None,
    note: str | None,
    as_json: bool,
    gateway: str,
    token: str | None,
) -> None:
    """Move a report about your org's model one step along (a logged event)."""
    body = {"step": step, "version": version, "note": note}
    with api_client(gateway, token) as http:
        report = call(
            http, "POST", f"/api/reports/{report_id}/transitions", what="the step", json=body
        )
    if as_json:
        echo_json(report)
    else:
        _echo_report(report)
