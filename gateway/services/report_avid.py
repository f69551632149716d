"""Reports in the AVID report format (the shape of ``avidtools.datamodels.report``).

Built from what the reader may already see (a :class:`~gateway.services.reports.ReportView`),
with the log verification as the report's metric and any links to a yank or a new version as
its references.
"""

from __future__ import annotations

from typing import Any

from gateway.services.reports import ReportView

__all__ = ["avid_report"]

# category -> (AVID risk domain, SEP view entry); names as the AVID taxonomy (v0.2) spells them.
_AVID_TAXONOMY: dict[str, tuple[str, str]] = {
    "bias": ("Ethics", "E0100: Bias/ Discrimination"),
    "toxicity": ("Ethics", "E0301: Toxicity"),
    "factuality": ("Ethics", "E0402: Generative Misinformation"),
    "harmful": ("Performance", "P0400: Safety"),
    "privacy": ("Performance", "P0300: Privacy"),
    "security": ("Security", "S0100: Software Vulnerability"),
}


def _references(view: ReportView, base_url: str) -> list[dict[str, Any]]:
    """One AVID reference per link: the release it names, at this gateway's release API."""
    repo_id = view.model.split("@", 1)[0]
    out = []
    for link in view.links:
        what = "yanked" if link["kind"] == "yank" else "addressed in new version"
        out.append(
            {
                "type": "source",
                "label": f"{what}: {repo_id}@{link['version']} (log entry {link['log_index']})",
                "url": f"{base_url.rstrip('/')}/api/releases/{repo_id}/{link['version']}",
            }
        )
    return out


def avid_report(view: ReportView, base_url: str = "http://localhost") -> dict[str, Any]:
    """The report in the AVID report format (the shape of ``avidtools.datamodels.report``),
    with the log verification as its metric and its links as references (URLs under
    ``base_url``). Built from what the reader may already see."""
    check = view.verification
    metrics = []
    if check["status"] == "verified":
        method = check["method"]
        metrics.append(
            {
                "name": "output verified against the tiergate transparency log",
                "detection_method": {
                    "type": "Significance Test" if method == "watermark" else "Static Threshold",
                    "name": "watermark attribution" if method == "watermark" else "sha256 digest",
                },
                "results": {
                    k: check[k]
                    for k in ("statement", "call_id", "log_index", "p_value", "output_sha256")
                    if k in check
                },
            }
        )
    domain, sep = _AVID_TAXONOMY.get(view.category, (None, None))
    org = view.model.split("/", 1)[0]
    return {
        "data_type": "AVID",
        "data_version": "0.2",
        "metadata": {"report_id": f"tiergate-report-{view.id}"},
        "affects": {
            "developer": [org],
            "deployer": [org],
            "artifacts": [{"type": "Model", "name": view.model}],
        },
        "problemtype": {
            "classof": "LLM Evaluation",
            "type": "Issue",
            "description": {"lang": "eng", "value": f"{view.category}: {check['statement']}"},
        },
        "metrics": metrics,
        "references": _references(view, base_url),
        "description": {"lang": "eng", "value": view.description},
        "impact": {
            "avid": {
                "risk_domain": [domain] if domain else [],
                "sep_view": [sep] if sep else [],
                "lifecycle_view": ["L06: Deployment"],
                "taxonomy_version": "0.2",
            }
        },
        "credit": [{"lang": "eng", "value": view.reporter}] if view.reporter else [],
        "reported_date": view.created_at.date().isoformat(),
    }
