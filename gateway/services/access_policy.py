"""Per-tier access policies: versions, the fields requesters fill in, and automatic decisions.

Version 1 of a tier's policy is the approval policy of the publisher's signed release
statement; the publisher may later change how requests are decided (mode, grant lifetime,
allow/deny lists, a grant cap), each change a new version. The fields themselves stay the
signed ones: requesters attest to exactly what the statement asks.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from gateway.auth.principal import Principal
from gateway.db.engine import begin_write
from gateway.db.models import PolicyVersion, Release
from gateway.errors import Conflict, ValidationFailed
from gateway.ledger.events import Actor, record_event
from licensing.errors import LicensingError
from licensing.statements import ApprovalPolicy, GatedField

Outcome = Literal["approve", "deny", "review"]
MAX_LIST_VALUES = 1000

# ISO 3166-1 alpha-2, the officially assigned codes.
_COUNTRY_TEXT = """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ
    BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM
    DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS
    GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN
    KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ
    MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM
    PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV
    SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI
    VN VU WF WS YE YT ZA ZM ZW
"""
COUNTRY_CODES = frozenset(_COUNTRY_TEXT.split())


class AttestationFieldInvalid(ValidationFailed):
    code = "attestation_field_invalid"
    title = "Attestation field invalid"


class PolicyConflict(Conflict):
    code = "policy_conflict"
    title = "Policy changed concurrently"


@dataclass(frozen=True, slots=True)
class TierPolicy:
    """What decides requests for one gated tier (one stored version)."""

    mode: str
    grant_lifetime_seconds: int
    fields: tuple[GatedField, ...]
    allow: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    deny: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    max_grants: int | None = None

    @property
    def required_fields(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields if f.required)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "grant_lifetime_seconds": self.grant_lifetime_seconds,
            "fields": [f.to_dict() for f in self.fields],
            "allow": {k: list(v) for k, v in sorted(self.allow.items())},
            "deny": {k: list(v) for k, v in sorted(self.deny.items())},
            "max_grants": self.max_grants,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> TierPolicy:
        """Read a stored policy (or the signed approval policy, which lacks the lists)."""
        approval = ApprovalPolicy(
            mode=raw["mode"],
            grant_lifetime_seconds=int(raw["grant_lifetime_seconds"]),
            fields=tuple(
                GatedField(
                    name=f["name"],
                    label=f["label"],
                    type=f["type"],
                    required=bool(f["required"]),
                    options=tuple(f.get("options", ())),
                )
                for f in raw.get("fields", ())
            ),
        )
        return cls(
            mode=approval.mode,
            grant_lifetime_seconds=approval.grant_lifetime_seconds,
            fields=approval.fields,
            allow={k: tuple(v) for k, v in raw.get("allow", {}).items()},
            deny={k: tuple(v) for k, v in raw.get("deny", {}).items()},
            max_grants=raw.get("max_grants"),
        )


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: Outcome
    reason: str | None = None


_INSERT_FIRST = text(
    "INSERT INTO policy_versions (release_id, tier, version, policy_json, created_by, created_at) "
    "VALUES (:release_id, :tier, 1, :policy, NULL, :now) "
    "ON CONFLICT (release_id, tier, version) DO NOTHING"
)


def current_policy(
    session: Session, release: Release, tier: str, *, now: datetime
) -> tuple[PolicyVersion, TierPolicy]:
    """The newest policy version of ``tier``; version 1 is created from the signed statement.

    The first version is inserted with ON CONFLICT DO NOTHING, so two replicas that see a
    tier for the first time at once agree on one row instead of failing.
    """
    row = _latest(session, release, tier)
    if row is None:
        # A write after reads: on SQLite it must not run in a stale (deferred) snapshot.
        begin_write(session)
        initial = TierPolicy.from_dict(json.loads(release.policy_json))
        session.execute(
            _INSERT_FIRST,
            {
                "release_id": release.id,
                "tier": tier,
                "policy": json.dumps(initial.to_dict(), sort_keys=True),
                "now": now,
            },
        )
        row = _latest(session, release, tier)
        assert row is not None
    return row, TierPolicy.from_dict(json.loads(row.policy_json))


def _latest(session: Session, release: Release, tier: str) -> PolicyVersion | None:
    query = (
        select(PolicyVersion)
        .where(PolicyVersion.release_id == release.id, PolicyVersion.tier == tier)
        .order_by(col(PolicyVersion.version).desc())
    )
    return session.exec(query).first()


def policy_history(session: Session, release: Release, tier: str) -> list[PolicyVersion]:
    query = (
        select(PolicyVersion)
        .where(PolicyVersion.release_id == release.id, PolicyVersion.tier == tier)
        .order_by(col(PolicyVersion.version))
    )
    return list(session.exec(query))


def _clean_lists(
    lists: Mapping[str, list[str]], fields: tuple[GatedField, ...], what: str
) -> dict[str, tuple[str, ...]]:
    names = {f.name for f in fields}
    out: dict[str, tuple[str, ...]] = {}
    for name, values in lists.items():
        if name not in names:
            raise ValidationFailed(f"{what}: the tier asks for no field {name!r}")
        if len(values) > MAX_LIST_VALUES:
            raise ValidationFailed(f"{what}.{name}: at most {MAX_LIST_VALUES} values")
        out[name] = tuple(sorted({v.strip() for v in values if v.strip()}))
    return out


def change_policy(
    session: Session,
    principal: Principal,
    release: Release,
    tier: str,
    *,
    mode: str,
    grant_lifetime_seconds: int,
    allow: Mapping[str, list[str]],
    deny: Mapping[str, list[str]],
    max_grants: int | None,
    now: datetime,
) -> PolicyVersion:
    """Store a new policy version for ``tier``; the caller has checked the publisher owns it."""
    begin_write(session)
    previous, policy = current_policy(session, release, tier, now=now)
    try:
        ApprovalPolicy(mode=mode, grant_lifetime_seconds=grant_lifetime_seconds)  # type: ignore[arg-type]
    except LicensingError as exc:
        raise ValidationFailed(exc.message) from exc
    updated = TierPolicy(
        mode=mode,
        grant_lifetime_seconds=grant_lifetime_seconds,
        fields=policy.fields,
        allow=_clean_lists(allow, policy.fields, "allow"),
        deny=_clean_lists(deny, policy.fields, "deny"),
        max_grants=max_grants,
    )
    row = PolicyVersion(
        release_id=release.id,  # type: ignore[arg-type]
        tier=tier,
        version=previous.version + 1,
        policy_json=json.dumps(updated.to_dict(), sort_keys=True),
        created_by=principal.user_id,
        created_at=now,
    )
    session.add(row)
    try:
        session.flush()
    except IntegrityError as exc:
        raise PolicyConflict("the policy was changed at the same time; read it and retry") from exc
    record_event(
        session,
        action="policy.changed",
        actor=Actor.of(principal),
        resource=f"release:{release.repo_id}@{release.version}#{tier}",
        now=now,
        org_id=release.org_id,
        fields={"version": row.version, "policy": updated.to_dict()},
    )
    return row


def check_fields(policy: TierPolicy, values: Mapping[str, str]) -> None:
    """Every field is one the tier asks for, and each value fits its type."""
    known = {f.name: f for f in policy.fields}
    for name in values:
        if name not in known:
            raise AttestationFieldInvalid(f"the tier asks for no field {name[:64]!r}")
    for spec in policy.fields:
        value = values.get(spec.name)
        if value is None or not value.strip():
            if spec.required:
                raise AttestationFieldInvalid(f"field {spec.name!r} is required")
            continue
        if spec.type == "select" and value not in spec.options:
            raise AttestationFieldInvalid(
                f"field {spec.name!r} must be one of: {', '.join(spec.options)}"
            )
        if spec.type == "checkbox" and value not in ("true", "false"):
            raise AttestationFieldInvalid(f"field {spec.name!r} must be 'true' or 'false'")
        if spec.type == "checkbox" and spec.required and value != "true":
            raise AttestationFieldInvalid(f"field {spec.name!r} must be checked ('true')")
        if spec.type == "country" and value not in COUNTRY_CODES:
            raise AttestationFieldInvalid(
                f"field {spec.name!r} must be an ISO 3166-1 alpha-2 code such as FR or US"
            )


def evaluate(policy: TierPolicy, values: Mapping[str, str], active_grants: int) -> Decision:
    """Deny lists win, then allow lists, then the mode and the grant cap."""
    for name, listed in sorted(policy.deny.items()):
        if values.get(name, "").strip().casefold() in {v.casefold() for v in listed}:
            return Decision("deny", f"{name} {values.get(name)!r} is not accepted for this tier")
    for name, listed in sorted(policy.allow.items()):
        if values.get(name, "").strip().casefold() not in {v.casefold() for v in listed}:
            return Decision("deny", f"{name} {values.get(name)!r} is not on the list of accepted")
    if policy.mode != "auto":
        return Decision("review")
    if policy.max_grants is not None and active_grants >= policy.max_grants:
        return Decision("review", "the tier's grant limit is reached; the publisher decides")
    return Decision("approve")
