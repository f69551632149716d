"""Content Credentials benchmark: what signing a C2PA manifest adds to a completion.

Run: ``.venv/bin/python bench/c2pa_signing.py`` (default: 300 completions of ~300 tokens of
text, one choice each, SQLite in a temporary directory, the local CA's ES256 chain).

Cases, interleaved completion by completion so a load spike hits all alike:

- ``record``: what every completion already pays on the gateway side without credentials:
  one short transaction that reads the call's log entry (the baseline);
- ``sign``: building and signing one manifest (c2pa-rs: JUMBF, COSE ES256, data hash) only;
- ``issue``: the whole hook (:meth:`ProvenanceService.issue_for_call`): log entry read,
  signing, and storing the manifest store in ``content_credentials``.

Prints p50 / p95 in milliseconds for each case and ``issue - record`` (target: <= 2 ms p95
added per completion, issue 18).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.config import Settings
from gateway.db.engine import make_engine, session_scope
from gateway.db.migrate import upgrade
from gateway.db.models import LogEntry
from gateway.db.timeutil import utcnow
from gateway.services.provenance import ProvenanceService, manifest_id_for

WORDS = [
    "the",
    "gateway",
    "signs",
    "each",
    "choice",
    "of",
    "every",
    "completion",
    "and",
    "logs",
    "the",
    "call",
    "it",
    "made",
]


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def _quantiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[int(0.95 * (len(ordered) - 1))] * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--completions", type=int, default=300)
    parser.add_argument("--words", type=int, default=225, help="~300 tokens of text")
    args = parser.parse_args()
    rng = random.Random(18)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp))
        engine = make_engine(settings.resolved_database_url)
        upgrade(engine)
        service = ProvenanceService.for_gateway(
            settings, engine, settings.resolved_keys_dir, now=utcnow()
        )
        record, sign, issue = [], [], []
        for i in range(args.completions):
            text = _text(rng, args.words)
            started = time.perf_counter()
            with session_scope(engine) as session:
                session.get(LogEntry, i)
            record.append(time.perf_counter() - started)
            manifest = service._manifest(
                manifest_id=manifest_id_for(f"bench-sign-{i}", 0),
                call_id=f"bench-sign-{i}",
                choice_index=0,
                log_index=i,
                model="acme/tiny@1.0.0:open",
                release_digest="0" * 64,
                key_id="0123456789abcdef",
                payload=i,
                text_sha256="0" * 64,
                logged_at="2026-12-02T00:00:00.000000Z",
            )
            started = time.perf_counter()
            service.sign_text(manifest, text)
            sign.append(time.perf_counter() - started)
            started = time.perf_counter()
            service.issue_for_call(
                call_id=f"bench-{i}",
                log_index=i,
                model="acme/tiny@1.0.0:open",
                key_id="0123456789abcdef",
                payloads=[i],
                texts=[text],
            )
            issue.append(time.perf_counter() - started)
        engine.dispose()
    print(f"{args.completions} completions, {args.words} words each")
    for name, samples in (("record", record), ("sign", sign), ("issue", issue)):
        p50, p95 = _quantiles(samples)
        print(f"{name:>8}: p50 {p50:6.2f} ms   p95 {p95:6.2f} ms")
    added = [b - a for a, b in zip(record, issue, strict=True)]
    p50, p95 = _quantiles(added)
    print(f"   added: p50 {p50:6.2f} ms   p95 {p95:6.2f} ms  (issue - record; target p95 <= 2 ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
