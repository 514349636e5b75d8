"""Parsed infra/*.bicep for the infra tests, with pycep-parser 0.7.1 (no Bicep compiler installs offline)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from pycep import BicepParser

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
BICEP_FILES = sorted(INFRA.rglob("*.bicep"))


@cache
def parsed(path: Path) -> dict[str, Any]:
    return BicepParser().parse(file_path=path)


def main() -> dict[str, Any]:
    return parsed(INFRA / "main.bicep")


def resource_config(template: dict[str, Any], name: str) -> dict[str, Any]:
    """A resource's body; for a conditional resource, the body behind its `if`."""
    config = template["resources"][name]["config"]
    return config.get("config", config) if "condition" in config else config


def module_config(template: dict[str, Any], name: str) -> dict[str, Any]:
    config = template["modules"][name]["config"]
    return config.get("config", config) if "condition" in config else config
