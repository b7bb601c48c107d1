"""Who may do what (CONTRACT 9.1): the roles, what each role may do, and which permission each
operation of `swagger.yml` needs, as data in one table.

A caller is a `Principal`: the name of its token (as the audit log writes it), its roles and,
optionally, the namespaces it may operate in. With auth off every caller is `ANONYMOUS`, who may do
everything. The HTTP layer checks `OPERATION_PERMISSIONS` before a request reaches a handler; the
namespace rule needs the workflow's namespace, so the workflow service checks it
(`require_namespace`).

Pitfall: an operation missing from `OPERATION_PERMISSIONS` is refused to everyone (deny by default),
and tests/test_auth.py fails for every operation of the spec that is not in the table.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from workflow_manager.domain.errors import Forbidden


class Role(StrEnum):
    READER = "reader"
    OPERATOR = "operator"
    AUTHOR = "author"
    ADMIN = "admin"


class Permission(StrEnum):
    """What an operation does: read anything, run workflows, or write definitions and resources."""

    READ = "read"
    OPERATE = "operate"
    AUTHOR = "author"


# reader: every GET; operator: reader + start, cancel, resume, redrive, resolve, approve;
# author: reader + create/update definitions and state resources; admin: all of them.
ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.READER: frozenset({Permission.READ}),
    Role.OPERATOR: frozenset({Permission.READ, Permission.OPERATE}),
    Role.AUTHOR: frozenset({Permission.READ, Permission.AUTHOR}),
    Role.ADMIN: frozenset(Permission),
}

# operationId (swagger.yml) -> the permission it needs; None: open to anyone, with or without a
# token (the health routes, for load balancers and probes).
OPERATION_PERMISSIONS: dict[str, Permission | None] = {
    "healthCheck": None,
    "liveCheck": None,
    "readyCheck": None,
    # Metrics name workflow definitions and operations: readers only, like every other read.
    "getMetrics": Permission.READ,
    "getWorkflowDefinitions": Permission.READ,
    "getWorkflowDefinitionVersionsByName": Permission.READ,
    "getWorkflowDefinitionByNameAndVersion": Permission.READ,
    "newWorkflowDefinition": Permission.AUTHOR,
    "updateWorkflowDefinition": Permission.AUTHOR,
    "startWorkflow": Permission.OPERATE,
    "startJob": Permission.OPERATE,
    "getWorkflows": Permission.READ,
    "getWorkflowByID": Permission.READ,
    "CancelWorkflow": Permission.OPERATE,
    "resumeWorkflowByID": Permission.OPERATE,
    "resolveWorkflowByID": Permission.OPERATE,
    "postStateResource": Permission.AUTHOR,
    "getStateResource": Permission.READ,
    "putStateResource": Permission.AUTHOR,
    "deleteStateResource": Permission.AUTHOR,
}


@dataclass(frozen=True)
class Principal:
    """Who is calling. `namespaces` None: every namespace."""

    name: str
    roles: frozenset[Role]
    namespaces: frozenset[str] | None = None

    @property
    def permissions(self) -> frozenset[Permission]:
        return frozenset().union(*(ROLE_PERMISSIONS[role] for role in self.roles))

    def may(self, operation_id: str) -> bool:
        """Whether this caller may call the operation (unknown operations: nobody may)."""
        if operation_id not in OPERATION_PERMISSIONS:
            return False
        needed = OPERATION_PERMISSIONS[operation_id]
        return needed is None or needed in self.permissions

    def may_operate_in(self, namespace: str) -> bool:
        return self.namespaces is None or namespace in self.namespaces


ANONYMOUS = Principal("anonymous", frozenset({Role.ADMIN}))


def parse_roles(values: Iterable[object]) -> frozenset[Role]:
    """Roles from their names; ValueError naming the first unknown one."""
    roles = set()
    for value in values:
        try:
            roles.add(Role(value))
        except ValueError:
            known = ", ".join(role.value for role in Role)
            raise ValueError(f"unknown role {value!r} (roles: {known})") from None
    return frozenset(roles)


def require_operation(principal: Principal, operation_id: str) -> None:
    """Raise Forbidden unless the principal may call the operation."""
    if not principal.may(operation_id):
        needed = OPERATION_PERMISSIONS.get(operation_id)
        roles = sorted(role.value for role, perms in ROLE_PERMISSIONS.items() if needed in perms)
        raise Forbidden(
            f"token '{principal.name}' may not call {operation_id}: it needs one of the roles"
            f" {', '.join(roles) or '(none)'}"
        )


def require_namespace(principal: Principal, namespace: str) -> None:
    """Raise Forbidden unless the principal may start or change workflows in the namespace."""
    if not principal.may_operate_in(namespace):
        allowed = ", ".join(sorted(principal.namespaces or ()))
        raise Forbidden(
            f"token '{principal.name}' may not operate in namespace '{namespace}' (only in: {allowed})"
        )
