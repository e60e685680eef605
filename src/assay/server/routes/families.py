"""The routes of Family members.

=======  ==============================  =========  ==================================
Method   Path                            Function   Answer
=======  ==============================  =========  ==================================
PATCH    /families/{id}/members          edit       the Family
=======  ==============================  =========  ==================================

The body is ``{"members": {"<tag>": {"entity": {"kind", "id"}, "description"?} | null}}``
(JSON Merge Patch: null removes a tag, tags left out are kept). The route needs ``edit`` on
the Family, as its labels edit does; a member the caller cannot see gets the answer of a
member that does not exist (422), so other accounts' ids cannot be probed.

(No ``from __future__ import annotations``: FastAPI reads the route's annotations.)
"""

from typing import Annotated

from fastapi import APIRouter, Body
from fastapi.responses import Response

from assay.schema.platform import Family
from assay.schema.requests import FamilyMembersEditRequest
from assay.server.access import acting_as, entity_for
from assay.server.routes.entities import ENTITY_ID
from assay.server.state import Caller, State, json_response

__all__ = ["add_family_routes"]

R = "families"


def add_family_routes(router: APIRouter) -> None:
    """Add the Family member routes to ``router``."""

    def edit_members(
        id: ENTITY_ID,
        body: Annotated[FamilyMembersEditRequest, Body()],
        principal: Caller,
        state: State,
    ) -> Response:
        core = state.core
        entity_for(principal, core.families, R, "edit", id)
        with acting_as(principal):  # a member the caller may not use: as a missing one
            return json_response(core.families.edit_members(id, body))

    router.add_api_route(
        f"/{R}/{{id}}/members",
        edit_members,
        methods=["PATCH"],
        operation_id=f"{R}_edit_members",
        summary="Family members edit",
        description=(
            "Set tagged members (a value of null removes the tag); other tags are kept. Each "
            "member must exist, be visible to the token and be of the Family's memberKind. "
            "Needs `edit` on the Family."
        ),
        tags=[R],
        responses={200: {"model": Family, "description": "The Family."}},
    )
