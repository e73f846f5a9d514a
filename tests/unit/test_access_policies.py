"""mail.access's pure policies: who may read an email and send from an account."""

from __future__ import annotations

from collections.abc import Callable
from uuid import UUID, uuid4

import pytest

from mail.access import OwnedResource, can_read_email, can_send_from_account
from models.tenancy import Principal, Role

Policy = Callable[[Principal, OwnedResource], bool]
POLICIES: list[Policy] = [can_read_email, can_send_from_account]

WORKSPACE = uuid4()
OTHER_WORKSPACE = uuid4()
OWNER_OF_RESOURCE = uuid4()
SOMEONE_ELSE = uuid4()


def _principal(workspace_id: UUID, user_id: UUID, role: Role) -> Principal:
    return Principal(workspace_id=workspace_id, user_id=user_id, role=role, api_key_id=uuid4())


RESOURCE = OwnedResource(workspace_id=WORKSPACE, owner_user_id=OWNER_OF_RESOURCE)


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p.__name__)
@pytest.mark.parametrize(
    ("caller", "allowed"),
    [
        # The resource's owner, whatever their role.
        (_principal(WORKSPACE, OWNER_OF_RESOURCE, "member"), True),
        (_principal(WORKSPACE, OWNER_OF_RESOURCE, "admin"), True),
        (_principal(WORKSPACE, OWNER_OF_RESOURCE, "owner"), True),
        # Admins and owners of the same workspace.
        (_principal(WORKSPACE, SOMEONE_ELSE, "admin"), True),
        (_principal(WORKSPACE, SOMEONE_ELSE, "owner"), True),
        # Another member of the same workspace.
        (_principal(WORKSPACE, SOMEONE_ELSE, "member"), False),
        # Anyone of another workspace, admins included.
        (_principal(OTHER_WORKSPACE, SOMEONE_ELSE, "admin"), False),
        (_principal(OTHER_WORKSPACE, SOMEONE_ELSE, "owner"), False),
        (_principal(OTHER_WORKSPACE, SOMEONE_ELSE, "member"), False),
        # Even with the owner's user id, another workspace is another workspace.
        (_principal(OTHER_WORKSPACE, OWNER_OF_RESOURCE, "member"), False),
        (_principal(OTHER_WORKSPACE, OWNER_OF_RESOURCE, "owner"), False),
    ],
    ids=[
        "owner-member",
        "owner-admin",
        "owner-owner",
        "same-ws-admin",
        "same-ws-owner-role",
        "same-ws-other-member",
        "other-ws-admin",
        "other-ws-owner-role",
        "other-ws-member",
        "other-ws-same-user-id-member",
        "other-ws-same-user-id-owner",
    ],
)
def test_truth_table(policy: Policy, caller: Principal, allowed: bool) -> None:
    assert policy(caller, RESOURCE) is allowed


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p.__name__)
def test_admin_rights_do_not_depend_on_the_api_key(policy: Policy) -> None:
    admin = Principal(workspace_id=WORKSPACE, user_id=SOMEONE_ELSE, role="admin", api_key_id=None)
    member = Principal(workspace_id=WORKSPACE, user_id=SOMEONE_ELSE, role="member", api_key_id=None)
    assert policy(admin, RESOURCE) is True
    assert policy(member, RESOURCE) is False
