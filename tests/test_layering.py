"""The packages' layers: a package imports only those below it, read from the source with ast.

From the bottom: contract (the serving contract, dependency-free); pipeline (the models' logic)
and client; export; launcher (a tritonserver supervisor, beside them on contract alone); deploy
(the deployments' settings and preflight, over export and launcher); then the programs on top
(runpod_worker, gateway, bench). An import inside a function counts as much as one at the top:
it is only later, not lighter.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = sorted(p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file())

pytestmark = pytest.mark.unit

# package -> the project's packages it must not import
FORBIDDEN = {
    "contract": set(PACKAGES) - {"contract"},
    "pipeline": {"export", "gateway", "client", "runpod_worker", "launcher", "deploy", "bench"},
    "client": {"pipeline", "export", "gateway", "launcher", "deploy", "runpod_worker", "bench"},
    "export": {"launcher", "deploy", "gateway", "client", "runpod_worker", "bench"},
    "launcher": set(PACKAGES) - {"launcher", "contract"},
    "deploy": {"runpod_worker", "gateway", "client", "bench"},
}


def imported_packages(package: str) -> dict[str, set[str]]:
    """The project's packages that `package` imports -> the files importing each."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue  # relative imports stay inside the package
            for name in names:
                top = name.split(".")[0]
                if top in PACKAGES and top != package:
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def test_the_packages_are_the_ones_the_layers_name():
    assert set(FORBIDDEN) <= set(PACKAGES)
    assert {"contract", "pipeline", "client", "export", "launcher", "deploy"} <= set(PACKAGES)


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_package_imports_a_layer_above_it(package):
    wrong = {name: files for name, files in imported_packages(package).items() if name in FORBIDDEN[package]}
    assert not wrong, f"{package} imports {sorted(wrong)} (from {sorted(set().union(*wrong.values()))})"


def test_the_launcher_imports_only_contract():
    """The launcher supervises tritonserver: the export and the deployments sit above it."""
    assert set(imported_packages("launcher")) <= {"contract"}


def test_the_check_sees_imports_wherever_they_are(tmp_path, monkeypatch):
    """A function-level import and an `import a.b` count; a relative one does not."""
    package = tmp_path / "launcher"
    package.mkdir()
    (package / "__init__.py").write_text("from . import server\n")
    (package / "mod.py").write_text("import contract.errors\n\ndef f():\n    from export.api import x\n")
    for other in ("contract", "export"):
        (tmp_path / other).mkdir()
        (tmp_path / other / "__init__.py").write_text("")
    this = sys.modules[__name__]
    monkeypatch.setattr(this, "ROOT", tmp_path)
    monkeypatch.setattr(this, "PACKAGES", ["contract", "export", "launcher"])
    assert imported_packages("launcher") == {"contract": {"launcher/mod.py"}, "export": {"launcher/mod.py"}}
