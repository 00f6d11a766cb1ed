"""Finds, loads and compiles the JSON Schemas in the repository's top-level ``schemas/``.

The schema files are the single source of truth for the JSON the monitor reads and writes:
:mod:`monitor.validation` compiles its fast path from ``schemas/events/`` and explains
rejections with the full validators from here; tests validate published SLA facts against
``schemas/sla-event.schema.json``.

The directory is ``schemas/`` next to the ``monitor`` package (a source checkout or an
editable install), the copy inside the package in a wheel install (:mod:`monitor.bundled`), or
the directory named by the environment variable ``SLA_MONITOR_SCHEMAS`` (a deployment that
ships the schemas elsewhere). Schemas refer to each other by relative
``$ref`` against their ``$id``; the registry built here resolves those from the directory,
never from the network.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from monitor.bundled import schemas_dir
from monitor.errors import ConfigError

SCHEMA_DIR = schemas_dir()
"""The default schema directory: the repository's top-level ``schemas/`` (a wheel's copy of it
when installed from one: :mod:`monitor.bundled`)."""

ENV_VAR = "SLA_MONITOR_SCHEMAS"
ENVELOPE = "events/event.schema.json"
"""Any input event, discriminated on ``type``."""
COMMON = "events/common.schema.json"
SLA_EVENT = "sla-event.schema.json"
"""The published SLA fact (``SlaEvent.to_dict``)."""


def schema_dir() -> Path:
    """The schema directory in effect: ``$SLA_MONITOR_SCHEMAS`` if set, else :data:`SCHEMA_DIR`.

    Read on every call (it is cheap) so tests and tools can point it elsewhere; the compiled
    results are cached per directory.
    """
    override = os.environ.get(ENV_VAR)
    return Path(override).resolve() if override else SCHEMA_DIR


def event_schema_name(event_type: str) -> str:
    """The file of one input event type, relative to the schema directory."""
    return f"events/{event_type}.schema.json"


def load_schema(name: str) -> dict[str, Any]:
    """The parsed schema ``name`` (a path relative to the schema directory), cached.

    Raises :class:`ConfigError` if the file is missing or is not a JSON object.
    """
    return _load(schema_dir(), name)


def validator(name: str) -> Draft202012Validator:
    """A compiled draft 2020-12 validator for schema ``name``, with every ``$ref`` resolvable.

    Cached per directory and name; callers may hold on to it.
    """
    return _validator(schema_dir(), name)


def registry() -> Registry[Any]:
    """Every ``*.schema.json`` under the schema directory, keyed by its ``$id``."""
    return _registry(schema_dir())


def clear_cache() -> None:
    """Forgets loaded schemas, for tests that rewrite schema files or change the directory."""
    _load.cache_clear()
    _registry.cache_clear()
    _validator.cache_clear()


@functools.cache
def _load(directory: Path, name: str) -> dict[str, Any]:
    path = directory / name
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"schema {path} not found (schema directory: {directory}; set {ENV_VAR} to override)"
        ) from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"schema {path} is unreadable: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"schema {path} is not a JSON object")
    return data


@functools.cache
def _registry(directory: Path) -> Registry[Any]:
    resources = []
    for path in sorted(directory.rglob("*.schema.json")):
        schema = _load(directory, path.relative_to(directory).as_posix())
        uri = schema.get("$id")
        if not isinstance(uri, str):
            raise ConfigError(f"schema {path} has no $id")
        resources.append((uri, Resource.from_contents(schema, default_specification=DRAFT202012)))
    # Registry.with_resources returns a new, immutable registry; the cache keeps it.
    return Registry().with_resources(resources)


@functools.cache
def _validator(directory: Path, name: str) -> Draft202012Validator:
    schema = _load(directory, name)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, registry=_registry(directory))
