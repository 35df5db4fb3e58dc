"""Host-context readers: document context, session and profile (outputs as in SPEC §4)."""

from __future__ import annotations

from typing import Any

from brickrun import BrickContext, BusinessError, PageVisit, brick, iso_millis

__all__ = ["BRICKS"]


def _page(ctx: BrickContext, brick_id: str) -> PageVisit:
    page: PageVisit | None = ctx.host.page
    if page is None:
        raise BusinessError(
            f"{brick_id} needs a page visit, and the host has not started one "
            "(runtime.host.visit(url), or --url on the command line)"
        )
    return page


@brick(
    id="@pixiebrix/document-context",
    name="Context Reader",
    kind="reader",
    description="The current page visit: URL, title, the current time, and whether it is a frame.",
    input_schema={},
    output_schema={
        "type": "object",
        "properties": {
            "url": {"type": "string"},
            "title": {"type": "string"},
            "timestamp": {"type": "string"},
            "isFrame": {"type": "boolean"},
        },
        "required": ["url", "title", "timestamp", "isFrame"],
    },
    default_output_key="context",
)
def document_context(args: Any, ctx: BrickContext) -> dict[str, Any]:
    page = _page(ctx, "@pixiebrix/document-context")
    return {
        "url": page.url,
        "title": page.title,
        "timestamp": iso_millis(ctx.now()),
        "isFrame": page.is_frame,
    }


@brick(
    id="@pixiebrix/session",
    name="Session Reader",
    kind="reader",
    description="The page session (per visit) and navigation ids and times, and the signed-in "
    "user's id and email (null without a user).",
    input_schema={},
    default_output_key="session",
)
def session(args: Any, ctx: BrickContext) -> dict[str, Any]:
    page = _page(ctx, "@pixiebrix/session")
    user = ctx.host.user
    return {
        "sessionId": page.session_id,
        "navigationId": page.navigation_id,
        "sessionTimestamp": page.session_timestamp,
        "navigationTimestamp": page.navigation_timestamp,
        "user": user.user_id if user else None,
        "email": user.email if user else None,
        "hostname": ctx.host.hostname if user else None,
    }


@brick(
    id="@pixiebrix/profile",
    name="PixieBrix Profile Reader",
    kind="reader",
    description="The signed-in user: id, email, organizations and groups ({id, name} each).",
    input_schema={},
    default_output_key="profile",
)
def profile(args: Any, ctx: BrickContext) -> dict[str, Any]:
    user = ctx.host.user
    if user is None:
        raise BusinessError("User is not authenticated")
    return {
        "user": user.user_id,
        "email": user.email or "",
        "organizations": [dict(o) for o in user.organizations],
        "groups": [dict(g) for g in user.groups],
    }


BRICKS = [document_context, session, profile]
