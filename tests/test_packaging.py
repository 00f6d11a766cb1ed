"""The wheel users install holds everything the package reads at run time, and works on its own.

Builds a wheel with pip (as `pip install .` or `pip install git+…` would), then checks it
against the checkout: every module, the JSON Schemas (top-level ``schemas/``) and the default
policies (``deploy/policies``), both mapped into ``monitor/bundled`` by pyproject.toml. Then runs
``sla-monitor check`` from the unpacked wheel, away from the checkout, so nothing can be found
there by accident.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    (built,) = out.glob("sla_monitor-*.whl")
    return built


def test_the_wheel_holds_every_module_schema_and_policy(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {p.relative_to(ROOT).as_posix() for p in (ROOT / "monitor").rglob("*.py")}
    expected |= {p.relative_to(ROOT).as_posix() for p in (ROOT / "monitor" / "data").iterdir()}
    expected |= {
        "monitor/bundled/schemas/" + p.relative_to(ROOT / "schemas").as_posix()
        for p in (ROOT / "schemas").rglob("*.json")
    }
    expected |= {
        "monitor/bundled/policies/" + p.name for p in (ROOT / "deploy" / "policies").glob("*.yaml")
    }
    assert expected - names == set()


def test_the_unpacked_wheel_validates_its_default_policies(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    done = subprocess.run(
        [sys.executable, "-c", "from monitor.cli import main; raise SystemExit(main())", "check"],
        check=False, cwd=tmp_path, env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert str(site / "monitor" / "bundled" / "policies") in done.stdout
    assert "online-chat" in done.stdout


def test_the_unpacked_wheel_replays_the_sample_day(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    sample = site / "monitor" / "data" / "sample-day.jsonl"
    done = subprocess.run(
        [sys.executable, "-c", "from monitor.cli import main; raise SystemExit(main())",
         "replay", "--until", "2026-10-09T00:00:00+08:00", str(sample)],
        check=False, cwd=tmp_path, env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert '"kind":"breach"' in done.stdout
