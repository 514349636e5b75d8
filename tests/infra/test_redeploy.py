"""A second `azd provision` after a target is removed: the role's assignable scopes must not drop a scope
that still holds an assignment (ARM refuses: RoleScopeBeingRemovedContainsAssignments), and a stray
comma in MCCF_TARGETS must not make an empty ID.

No Bicep compiler runs here, so main.bicep's own expressions (as pycep parses them) are evaluated by a
small interpreter of the functions they use, for two parameter sets.
"""

from __future__ import annotations

import re

import pytest

from .bicep import INFRA, main, module_config, parsed

SUBSCRIPTION = "/subscriptions/00000000-0000-4000-8000-000000000001"
PROD = "/subscriptions/11111111-1111-4111-8111-111111111111/resourceGroups/rg-ledger-prod/providers/Microsoft.ConfidentialLedger/managedCCFs/contoso"
AUDIT = "/subscriptions/11111111-1111-4111-8111-111111111111/resourceGroups/rg-ledger-audit/providers/Microsoft.ConfidentialLedger/managedCCFs/fabrikam"
OTHER = "/subscriptions/22222222-2222-4222-8222-222222222222/resourceGroups/rg-x/providers/Microsoft.ConfidentialLedger/ledgers/ledger1"
INTERPOLATION = re.compile(r"\$\{split\((\w+), '/'\)\[(\d+)\]\}")
NAME = re.compile(r"\$\{(\w+)\}")


def evaluate(node, scope: dict):
    """The subset of Bicep's expression language main.bicep uses for its targets."""
    if isinstance(node, list):
        return [evaluate(item, scope) for item in node]
    if isinstance(node, str):
        if node in scope:
            return scope[node]
        node = INTERPOLATION.sub(lambda m: str(scope[m.group(1)]).split("/")[int(m.group(2))], node)
        return NAME.sub(lambda m: str(scope[m.group(1)]), node)
    if "operator" in node:
        operator = node["operator"]
        if operator["type"] == "not":
            return not evaluate(operator["operands"]["bool_value"], scope)
        if operator["type"] == "index_accessor":
            return evaluate(operator["operands"]["operand_1"], scope)[operator["operands"]["operand_2"]]
        if operator["type"] == "property_accessor":
            return evaluate(operator["operands"]["operand_1"], scope)[operator["operands"]["operand_2"]]
        raise NotImplementedError(operator["type"])
    function = node["function"]
    kind, args = function["type"], list((function.get("parameters") or {}).values())

    def call(lam, value):
        return evaluate(lam["detail"]["expression"], {**scope, lam["detail"]["var_1"]: value})

    if kind == "filter":
        return [item for item in evaluate(args[0], scope) if call(args[1], item)]
    if kind == "map":
        return [call(args[1], item) for item in evaluate(args[0], scope)]
    if kind == "split":
        return evaluate(args[0], scope).split(evaluate(args[1], scope))
    if kind == "replace":
        old = evaluate(args[1], scope).replace("\\n", "\n")
        return evaluate(args[0], scope).replace(old, evaluate(args[2], scope))
    if kind == "trim":
        return evaluate(args[0], scope).strip()
    if kind == "empty":
        return not evaluate(args[0], scope)
    if kind == "union":
        merged: list = []
        for value in (evaluate(arg, scope) for arg in args):
            merged += [item for item in value if item not in merged]
        return merged
    if kind == "subscription":
        return {"id": SUBSCRIPTION}
    raise NotImplementedError(kind)


def deployment(mccf_targets: str) -> dict:
    """The targets, their resource groups, and each role (by subscription) with its assignable scopes."""
    template = main()
    scope: dict = {"mccfTargets": mccf_targets}
    for name in ("targetIds", "targetResourceGroupIds", "targetSubscriptionIds"):
        scope[name] = evaluate(template["variables"][name]["value"], scope)
    scopes_expression = module_config(template, "mccfRoles")["params"]["assignableScopes"]
    scope["roles"] = {
        sub: evaluate(scopes_expression, {**scope, "sub": sub}) for sub in evaluate("targetSubscriptionIds", scope)
    }
    return scope


def within(resource_group: str, scopes: list[str]) -> bool:
    return any(
        resource_group.lower() == s.lower() or resource_group.lower().startswith(s.lower() + "/") for s in scopes
    )


def test_the_roles_loop_over_the_subscriptions_and_the_assignments_over_the_resource_groups():
    roles, assignments = (main()["modules"][name]["config"] for name in ("mccfRoles", "mccfRoleAssignments"))
    assert roles["loop_type"]["detail"] == {"item_name": "sub", "array_name": "targetSubscriptionIds"}
    assert assignments["loop_type"]["detail"] == {"item_name": "rgId", "array_name": "targetResourceGroupIds"}
    role_of_assignment = str(assignments["config"]["params"]["roleDefinitionId"])
    assert "'mccfRoles'" in role_of_assignment and "'index_of'" in role_of_assignment  # its subscription's role


@pytest.mark.parametrize("separator", [",", ", ", "\n", ",\n"])
def test_ids_come_out_clean_whatever_separates_them_and_a_trailing_comma_adds_nothing(separator):
    first = deployment(separator.join([PROD, AUDIT, OTHER]) + ",")
    assert first["targetIds"] == [PROD, AUDIT, OTHER]
    assert first["targetResourceGroupIds"] == [
        "/subscriptions/11111111-1111-4111-8111-111111111111/resourceGroups/rg-ledger-prod",
        "/subscriptions/11111111-1111-4111-8111-111111111111/resourceGroups/rg-ledger-audit",
        "/subscriptions/22222222-2222-4222-8222-222222222222/resourceGroups/rg-x",
    ]
    assert deployment("")["targetIds"] == [] and deployment(" , ,")["targetResourceGroupIds"] == []


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ([PROD, AUDIT], [PROD]),  # a resource group dropped
        ([PROD, AUDIT, OTHER], [PROD]),  # a whole subscription dropped too
        ([PROD], [PROD, AUDIT, OTHER]),  # targets added
    ],
)
def test_a_second_deployment_keeps_every_scope_that_holds_an_assignment(before, after):
    first, second = deployment(",".join(before)), deployment(",".join(after))
    for sub, scopes in first["roles"].items():
        if sub in second["roles"]:  # a role the second deployment updates: its scopes must not shrink
            assert set(scopes) <= set(second["roles"][sub]), (sub, scopes, second["roles"][sub])
        # a role it no longer deploys is left as it is, assignments and all
    for resource_group in second["targetResourceGroupIds"]:  # each assignment is inside its role's scopes
        sub = resource_group.split("/")[2]
        assert within(resource_group, second["roles"][sub])
    assert all(len(scopes) == 1 for scopes in second["roles"].values())


def test_the_per_subscription_role_is_a_new_role_not_the_earlier_one_with_its_scopes_shrunk():
    """Before 03060c4 one role, named from the seed 'mccf-backup-operator', had resource-group scopes;
    reusing its id for the per-subscription role would remove scopes its assignments still use."""
    name = str(parsed(INFRA / "modules" / "mccf-role.bicep")["resources"]["role"]["config"]["name"])
    assert "mccf-backup-operator-per-subscription" in name
