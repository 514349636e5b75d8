"""Every resource in infra/*.bicep against Microsoft's ARM template schema for its api-version.

No Bicep compiler runs here, so each resource's body (as pycep parses it) is turned into what the
compiled template would carry: literals stay, and any expression (a function, an operator, a
parameter or variable name) becomes an ARM expression string, which the schemas accept wherever a
value may be computed. Then the body is validated with the official schema (tests/specs/arm-schemas)
and, to prove the check can fail, once more with one of its literal values replaced by a wrong type.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from .bicep import BICEP_FILES, INFRA, REPO, parsed

SCHEMAS = REPO / "tests" / "specs" / "arm-schemas"
NO_SCHEMA_HERE = {"Microsoft.Logic/workflows@2019-05-01", "Microsoft.Insights/workbooks@2023-06-01"}
BICEP_ONLY = {
    "parent",
    "dependsOn",
    "depends_on",
}  # resolved by the compiler; the template carries name and scope instead
EXPRESSION = "[bicep()]"


def registry() -> tuple[Registry, dict[tuple[str, str], str]]:
    """Every schema file by its id, and (api-version, resource type) -> the URL of its definition."""
    resources, definitions = [], {}
    for path in sorted(SCHEMAS.rglob("*.json")):
        document = json.loads(path.read_text())
        uri = document["id"].rstrip("#")
        resources.append((uri, Resource.from_contents(document, default_specification=DRAFT4)))
        for key, definition in (document.get("resourceDefinitions") or {}).items():
            definitions[(path.parent.name, definition["description"].lower())] = f"{uri}#/resourceDefinitions/{key}"
    return Registry().with_resources(resources), definitions


REGISTRY, DEFINITIONS = registry()


def names(template: dict) -> set[str]:
    """What a bare word in pycep's output refers to: a parameter, variable, resource, module or loop item."""
    found = set(template.get("parameters", {})) | set(template.get("variables", {}))
    found |= set(template.get("resources", {})) | set(template.get("modules", {}))
    for resource in template.get("resources", {}).values():
        loop = (resource.get("config") or {}).get("loop_type")
        if loop:
            found.add(loop["detail"]["item_name"])
    return found


def to_template(node, known: set[str]):
    if isinstance(node, dict):
        if (node and set(node) <= {"function", "operator"}) or node.get("type") == "lambda_expression":
            return EXPRESSION
        return {
            (EXPRESSION if "${" in str(k) else str(k).strip("'")): to_template(v, known)
            for k, v in node.items()
            if k not in BICEP_ONLY
        }
    if isinstance(node, list):
        return [to_template(item, known) for item in node]
    if isinstance(node, str) and (node in known or node.split(".")[0] in known or "${" in node):
        return EXPRESSION  # a reference, or an interpolation (compiled to format())
    return node


def bodies():
    for path in BICEP_FILES:
        if path.parent.name == "broken":
            continue
        template = parsed(path)
        known = names(template)
        for name, resource in template.get("resources", {}).items():
            config = resource["config"]
            while "config" in config and ("condition" in config or "loop_type" in config):
                config = config["config"]  # behind an `if` or a `for`
            body = to_template(config, known)
            if "parent" in config or "__" in name:  # a child (by `parent:`, or declared inside its parent)
                # the compiler writes '<parent name>/<name>': a literal child name keeps its last segment,
                # which the schemas use to tell child kinds apart (sites/config: appsettings, authsettingsV2)
                own = body.get("name")
                body["name"] = f"parent/{own}" if isinstance(own, str) and own != EXPRESSION else EXPRESSION
            if "scope" in body:
                body["scope"] = EXPRESSION  # extension resources: the compiler writes the scope's id
            body.update(type=resource["type"], apiVersion=resource["api_version"])
            yield f"{path.relative_to(INFRA)}:{name}", body


BODIES = dict(bodies())


# In these schemas `oneOf` means "a typed value, or an expression": an expression string can satisfy
# both a plain string and the expression branch, which ARM accepts. Read it as anyOf.
ArmValidator = jsonschema.validators.extend(
    jsonschema.Draft4Validator, {"oneOf": jsonschema.Draft4Validator.VALIDATORS["anyOf"]}
)


def validator(body: dict):
    url = DEFINITIONS[(body["apiVersion"], body["type"].lower())]
    return ArmValidator({"$ref": url}, registry=REGISTRY)


def checked() -> list[str]:
    return [key for key, body in BODIES.items() if f"{body['type']}@{body['apiVersion']}" not in NO_SCHEMA_HERE]


def test_every_resource_type_has_its_schema_here_or_is_named_as_without_one():
    for key, body in BODIES.items():
        kind = f"{body['type']}@{body['apiVersion']}"
        assert kind in NO_SCHEMA_HERE or (body["apiVersion"], body["type"].lower()) in DEFINITIONS, (key, kind)
    assert len(checked()) >= 20


@pytest.mark.parametrize("key", checked())
def test_the_resource_matches_its_official_schema(key):
    errors = sorted(validator(BODIES[key]).iter_errors(BODIES[key]), key=lambda e: list(e.path))
    assert not errors, [f"{'/'.join(map(str, e.path))}: {e.message[:300]}" for e in errors]


def literal_leaves(node, path=()):
    """Paths to literal values under ``properties`` (the ones a mutation can make wrong)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from literal_leaves(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from literal_leaves(value, (*path, index))
    elif isinstance(node, (bool, int, float)) or (isinstance(node, str) and node != EXPRESSION):
        yield path


def mutations(body: dict):
    """Each literal under `properties` in turn made an object where the schema wants a value; then the
    resource's own name, for a type whose properties are all computed."""
    for path in literal_leaves(body.get("properties", {}), ("properties",)):
        yield path
    yield ("name",)


@pytest.mark.parametrize("kind", sorted({f"{BODIES[k]['type']}@{BODIES[k]['apiVersion']}" for k in checked()}))
def test_a_wrong_value_of_each_resource_type_is_refused(kind):
    """The first mutation the schema types must be refused: the validation above really looks at it."""
    for key in (k for k in checked() if f"{BODIES[k]['type']}@{BODIES[k]['apiVersion']}" == kind):
        body = BODIES[key]
        for path in mutations(body):
            mutated = copy.deepcopy(body)
            node = mutated
            for step in path[:-1]:
                node = node[step]
            node[path[-1]] = {"mutated": ["not", "a", "value"]}
            if not validator(mutated).is_valid(mutated):
                return
    pytest.fail(f"no mutation was refused for {kind}")


def test_the_bodies_read_the_real_files():
    """The conversion keeps what matters: a known literal of main.bicep arrives as it is written."""
    storage = next(b for k, b in BODIES.items() if k.endswith(":backupStorage"))
    assert storage["properties"]["minimumTlsVersion"] == "TLS1_2" and storage["kind"] == "StorageV2"
    assert Path(INFRA / "main.bicep").exists()
