"""The layers stay where the architecture draws them (checked on the source, by import).

smartchat/cli  ──►  tasks, schemas, smartchat core       (never Prefect: start-up time)
flows          ──►  tasks, schemas, smartchat core       (never the CLI)
tasks, schemas ──►  smartchat core (errors, settings)     (never the CLI; no environment)
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def imports(path: Path) -> set[str]:
    """Every module a file imports, at any depth (inside functions too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


def files(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


@pytest.mark.parametrize("path", files("tasks", "schemas", "flows"), ids=str)
def test_the_library_and_the_flows_never_import_the_cli(path: Path):
    assert not [m for m in imports(path) if under(m, "smartchat.cli") or under(m, "typer")]


@pytest.mark.parametrize("path", files("smartchat"), ids=str)
def test_the_cli_and_the_core_never_import_prefect(path: Path):
    assert not [m for m in imports(path) if under(m, "prefect")]


CORE = [p for p in files("smartchat") if "cli" not in p.relative_to(ROOT).parts]


@pytest.mark.parametrize("path", CORE, ids=str)
def test_the_core_never_imports_the_layers_above_it(path: Path):
    above = ("smartchat.cli", "tasks", "flows", "schemas")
    assert not [m for m in imports(path) if any(under(m, a) for a in above)]


@pytest.mark.parametrize("path", files("tasks", "schemas"), ids=str)
def test_no_library_module_reads_the_environment(path: Path):
    """Settings are read at entry points (a command, a flow, a server start) and passed down."""
    assert not environment_reads(path)
    assert "load_settings" not in path.read_text(encoding="utf-8")


def environment_reads(path: Path) -> list[str]:
    """`os.environ[...]`, `os.environ.get(...)` or `os.getenv(...)` of a SMARTCHAT_* variable
    (passing the environment on to a child process is not reading a setting)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        key = None
        if isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
            key = node.slice
        elif isinstance(node, ast.Call) and ast.unparse(node.func) in (
            "os.environ.get",
            "os.getenv",
        ):
            key = node.args[0] if node.args else None
        if isinstance(key, ast.Constant) and str(key.value).startswith("SMARTCHAT_"):
            found.append(str(key.value))
    return found


def test_the_checks_above_can_fail(tmp_path: Path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import os\n"
        "def f():\n"
        "    from smartchat.cli.console import print_json\n"
        "    return os.environ.get('SMARTCHAT_DB'), os.environ['SMARTCHAT_SENDER']\n"
    )
    assert "smartchat.cli.console" in imports(bad)
    assert environment_reads(bad) == ["SMARTCHAT_DB", "SMARTCHAT_SENDER"]
