"""Where the JSON Schemas and the default policies are, in a checkout and in an installed wheel.

The repository keeps them at the top level (``schemas/``, ``deploy/policies/``: the layout
users expect, and what the Docker image and Kubernetes manifests mount). A wheel has no
repository around it, so ``pyproject.toml`` maps those two directories into this package
(``monitor/bundled/schemas``, ``monitor/bundled/policies``) when it builds one. Both lookups
prefer the checkout, so an edit there is seen without reinstalling.
"""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent
_ROOT = _HERE.parents[1]  # the checkout, or site-packages in a wheel install
# site-packages may hold some other project's top-level "schemas": trust the root only when it
# is this project's checkout.
_IN_CHECKOUT = (_ROOT / "pyproject.toml").is_file() and (_ROOT / "monitor" / "bundled").is_dir()


def schemas_dir() -> Path:
    """The JSON Schema directory: the checkout's ``schemas/``, else the wheel's copy."""
    return _ROOT / "schemas" if _IN_CHECKOUT else _HERE / "schemas"


def policies_dir() -> Path:
    """The default policy directory: the checkout's ``deploy/policies``, else the wheel's."""
    return _ROOT / "deploy" / "policies" if _IN_CHECKOUT else _HERE / "policies"


def kafka_dir() -> Path:
    """The Maven project that names the Kafka broker's jars: ``deploy/kafka``, else the wheel's."""
    return _ROOT / "deploy" / "kafka" if _IN_CHECKOUT else _HERE / "kafka"
