"""Hub routes for discovering revisions and the caller: `list_repo_refs` and `whoami`.

`HfApi(endpoint=GATEWAY).list_repo_refs("acme/tiny")` shows which revisions exist (`main`,
`optimized`, `1.0.0`, `1.0.0-optimized`...), so a developer can find the optimized tier
without reading our docs; `HfApi.whoami(token=...)` answers who a token belongs to.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from gateway.deps import CurrentPrincipal, OptionalPrincipal, SessionDep
from gateway.problems import problem_responses
from gateway.services import downloads

router = APIRouter(tags=["hub"], responses=problem_responses(401, 404, 503))


class HubGitRef(BaseModel):
    name: str
    ref: str
    targetCommit: str


class HubRefs(BaseModel):
    branches: list[HubGitRef]
    converts: list[HubGitRef] = Field(default_factory=list)
    tags: list[HubGitRef]
    pullRequests: list[HubGitRef] = Field(default_factory=list)


def _refs(items: list[downloads.GitRef]) -> list[HubGitRef]:
    return [HubGitRef(name=r.name, ref=r.ref, targetCommit=r.target_commit) for r in items]


@router.get(
    "/api/models/{org}/{name}/refs",
    summary="Hub: a repository's branches (moving tier names) and tags (versions).",
)
def list_repo_refs(org: str, name: str, viewer: OptionalPrincipal, session: SessionDep) -> HubRefs:
    branches, tags = downloads.repo_refs(session, f"{org}/{name}", viewer=viewer)
    return HubRefs(branches=_refs(branches), tags=_refs(tags))


@router.get("/api/whoami-v2", summary="Hub: who the presented token belongs to.")
def whoami_v2(principal: CurrentPrincipal) -> dict[str, Any]:
    """The fields `huggingface_hub` reads from its `whoami` (name, type, orgs, auth)."""
    return {
        "type": "user",
        "name": principal.username,
        "fullname": principal.username,
        "orgs": [{"type": "org", "name": principal.org}] if principal.org else [],
        "auth": {
            "type": "access_token",
            "accessToken": {
                "displayName": "tiergate token",
                "role": "write" if "publish" in principal.scopes else "read",
            },
        },
        "tiergate": {"role": str(principal.role), "scopes": sorted(principal.scopes)},
    }
