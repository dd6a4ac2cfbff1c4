"""Who may do what: instance, organization and application membership roles as rules an authorization table calls.

Losant's roles (schemas ``instanceMember``, ``orgMemberPatch``/``orgRoleInfo``; docs.losant.com/
organizations/overview: Editor or higher creates applications and dashboards in an organization,
Administrator manages it). The rules here decide for a *user* token; scope checks of API tokens
stay where the route's scopes are checked. ``refusal`` answers None (allowed) or why not.

An authorization table plugs it in as one row for user tokens whose ``allows`` is
``refusal(store.docs, owner_from(store.applications), user_id, route.full_name, route.method,
params) is None``; it replaces "owns or is a member" checks of applications and organizations.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["INSTANCE_ROLES", "ORG_ROLES", "AppOwner", "Need", "app_role", "instance_role", "may_create_in_org", "need_of", "org_role", "owner_from", "refusal"]

INSTANCE_ROLES = ("admin", "view")
ORG_ROLES = ("admin", "edit", "collaborate", "view", "none")

# what each role may do, from the most to the least
_RANK = {"admin": 4, "edit": 3, "collaborate": 2, "view": 1, "none": 0}


@dataclass(frozen=True, slots=True)
class Need:
    """The least role an action needs where it acts: ``view`` reads, ``collaborate`` changes what is
    inside an application, ``edit`` creates or removes applications and dashboards, ``admin`` manages."""

    level: str


# Organization actions only an organization administrator may take (docs: "If you have
# Administrator permissions within an organization, several administrative options are available").
_ORG_ADMIN = {
    "org.patch", "org.delete", "org.invite_member", "org.revoke_invite", "org.pending_invites",
    "org.modify_member", "org.remove_member", "org.transfer_resources",
}
# Application actions that create, remove or move the application itself: Editor or higher.
_APP_EDIT = {
    "application.delete", "application.clone", "application.apply_template", "application.api_import",
}


def need_of(full_name: str, method: str) -> Need:
    """The least role the action needs (the table in docs/emulator.md)."""
    if full_name in _ORG_ADMIN or (full_name.startswith(("instance_member", "instance_api_token")) and method != "GET"):
        return Need("admin")
    if method == "GET":
        return Need("view")
    if full_name in _APP_EDIT or (full_name.startswith("application_dashboard") and method in ("POST", "DELETE")):
        return Need("edit")
    if full_name.startswith("instance"):
        return Need("admin")  # instance view members read; every instance change is an administrator's
    return Need("collaborate")


def _members(doc: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    if doc is None:
        return []
    return [m for m in doc.get("members") or () if isinstance(m, Mapping)]


def org_role(docs: Mapping[str, Mapping[str, Any]], org_id: str, user_id: str) -> str | None:
    """The user's role in the organization, or None for a non-member."""
    for member in _members(docs.get("orgs", {}).get(org_id)):
        if member.get("userId") == user_id:
            role = member.get("role", "view")
            return role if role in _RANK else "view"
    return None


def instance_role(docs: Mapping[str, Mapping[str, Any]], instance_id: str, user_id: str) -> str | None:
    """The user's role in the enterprise instance (``admin`` or ``view``), or None for a non-member."""
    for member in docs.get("instance_members", {}).values():
        if member.get("instanceId") == instance_id and member.get("userId") == user_id:
            role = member.get("role", "view")
            return role if role in INSTANCE_ROLES else "view"
    return None


AppOwner = Callable[[str], "tuple[bool, str | None]"]
"""application id -> (exists, owner id: a user id, an organization id, or None when unowned)."""


def owner_from(applications: Mapping[str, Any]) -> AppOwner:
    """``AppOwner`` over the store's application records (anything with ``owner_id``)."""

    def owner(application_id: str) -> tuple[bool, str | None]:
        app = applications.get(application_id)
        return (app is not None, getattr(app, "owner_id", None))

    return owner


def app_role(docs: Mapping[str, Mapping[str, Any]], owner_of: AppOwner, application_id: str, user_id: str) -> str | None:
    """The user's role on the application: its owner is ``admin``; in an organization, the member's
    role, which ``applicationRoles`` may set per application for a ``none`` member; an application
    created without an owner (a test convenience) is everyone's."""
    exists, owner = owner_of(application_id)
    if not exists:
        return None
    if owner is None or owner == user_id:
        return "admin"
    role = org_role(docs, owner, user_id)
    if role is None:
        return None
    member = next(m for m in _members(docs.get("orgs", {}).get(owner)) if m.get("userId") == user_id)
    for entry in member.get("applicationRoles") or ():
        if isinstance(entry, Mapping) and entry.get("resourceId") == application_id and role == "none":
            return str(entry.get("role", "none"))
    return role


def _enough(role: str | None, need: Need) -> bool:
    return role is not None and _RANK.get(role, -1) >= _RANK[need.level]


def refusal(
    docs: Mapping[str, Mapping[str, Any]],
    owner_of: AppOwner,
    user_id: str,
    full_name: str,
    method: str,
    params: Mapping[str, str],
) -> str | None:
    """None when the user's memberships allow the action on the objects its path names, else why not."""
    need = need_of(full_name, method)
    instance_id = params.get("instanceId")
    if instance_id is not None:
        role = instance_role(docs, instance_id, user_id)
        if role is None:
            return "This user is not a member of the instance"
        if role != "admin" and need.level != "view":
            return f"{full_name} needs an instance administrator"
        return None  # instance administrators manage the instance's organizations through these routes
    app_id = params.get("applicationId")
    if app_id is not None:
        role = app_role(docs, owner_of, app_id, user_id)
        if role is None:
            return "This user has no access to the application"
        if not _enough(role, need):
            return f"{full_name} needs the {need.level} role on the application (the user's is {role})"
        return None
    org_id = params.get("orgId")
    if org_id is not None:
        role = org_role(docs, org_id, user_id)
        if role is None:
            return "This user is not a member of the organization"
        if full_name in _ORG_ADMIN and role != "admin":
            return f"{full_name} needs an organization administrator (the user's role is {role})"
    return None


def may_create_in_org(docs: Mapping[str, Mapping[str, Any]], org_id: str, user_id: str) -> bool:
    """Editor or higher creates applications and dashboards owned by the organization."""
    role = org_role(docs, org_id, user_id)
    return role is not None and _RANK[role] >= _RANK["edit"]
