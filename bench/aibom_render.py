"""Cost of rendering a release's AI BOMs (both documents), against parsing its statement.

The gateway renders them once per release and process (then serves from its cache), on the
first Hub listing or download that needs them; this measures that cold render for releases
of a few and of many files. Baseline in the same run: parsing the signed statement payload,
which every such request already does once.

    PYTHONPATH=. python bench/aibom_render.py [FILES_PER_TIER ...]

Prints one JSON line per size: files, bytes of each document, seconds, ratio to baseline.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(sizes: list[int]) -> None:
    from licensing.layout import TierFile
    from licensing.statements import (
        ApprovalPolicy,
        ReleaseStatement,
        parse_release_statement,
        release_digest,
        tier_record,
    )
    from release.aibom import render_release_bom

    card = "---\nlicense: apache-2.0\npipeline_tag: text-generation\n---\n# demo\n"
    for per_tier in sizes:

        def files(tag: str, n: int = per_tier) -> tuple[TierFile, ...]:
            return tuple(
                TierFile(f"model-{i:05d}.safetensors", hashlib.sha256(f"{tag}{i}".encode())
                         .hexdigest(), 1 << 20)
                for i in range(n)
            )  # fmt: skip

        statement = ReleaseStatement(
            repo_id="acme/bench",
            version="1.0.0",
            tiers=(
                tier_record("open", files("o"), gated=False),
                tier_record("optimized", files("q"), gated=True),
                tier_record("optimized_bf16", files("b"), gated=True),
            ),
            license="apache-2.0",
            terms_digest=None,
            approval=ApprovalPolicy(),
            created_at=datetime(2026, 1, 1, tzinfo=UTC),
            optimization={"method": "int8", "tiers": "optimized,optimized_bf16"},
            fidelity={"top1_agreement": "0.99", "optimized_bf16.top1_agreement": "1"},
        )
        payload = statement.to_payload()
        digest = release_digest(payload)

        def timed(work: object, repeat: int = 3) -> float:
            runs = []
            for _ in range(repeat):
                start = time.perf_counter()
                work()  # type: ignore[operator]
                runs.append(time.perf_counter() - start)
            return statistics.median(runs)

        base = timed(lambda: parse_release_statement(payload))  # noqa: B023
        render = timed(
            lambda: render_release_bom(statement, statement_digest=digest, model_card=card)  # noqa: B023
            .files()
        )  # fmt: skip
        out = render_release_bom(statement, statement_digest=digest, model_card=card).files()
        print(
            json.dumps(
                {
                    "files": 3 * per_tier,
                    "spdx_bytes": len(out["aibom.spdx.json"]),
                    "cdx_bytes": len(out["aibom.cdx.json"]),
                    "parse_statement_s": round(base, 4),
                    "render_both_s": round(render, 4),
                    "ratio_to_parse": round(render / base, 1),
                }
            )
        )


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [4, 300, 3000])
