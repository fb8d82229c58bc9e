"""Kernel eras, one module each, chosen by name."""

from __future__ import annotations

import importlib

from .base import Era

#: era name -> module holding its ``ERA``
ERA_MODULES = {
    "linux-2.6.10": "linux_2_6_10",
    "linux-2.6.11": "linux_2_6_11",
    "linux-2.6.12-rc": "linux_2_6_12_rc",
    "linux-2.6.12": "linux_2_6_12",
    "linux-6.18": "linux_6_18",
}
DEFAULT_ERA = "linux-6.18"


def get_era(name: "str | Era") -> Era:
    """The era called ``name`` (an Era is returned as it is)."""
    if isinstance(name, Era):
        return name
    try:
        module = ERA_MODULES[name]
    except KeyError:
        raise ValueError(f"unknown era {name!r}; known: {', '.join(ERA_MODULES)}") from None
    return importlib.import_module(f".{module}", __name__).ERA


def era_names() -> list[str]:
    return list(ERA_MODULES)
