"""The test tree can be collected in any subset of its folders (``pytest tests/report tests/surgery``).

pytest imports every folder's ``conftest.py`` under the one module name ``conftest`` and puts
each test folder on ``sys.path``; so ``from conftest import X`` gets whichever conftest came
first, and two helper modules of the same name in two folders shadow each other. Both broke
collection of ``tests/report`` together with ``tests/studies`` or ``tests/surgery`` once.
"""

import ast
from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def _modules():
    return [p for p in TESTS.rglob("*.py") if "__pycache__" not in p.parts]


def test_no_test_imports_from_a_conftest():
    offenders = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module] if isinstance(node, ast.ImportFrom) else []
            if "conftest" in names:
                offenders.append(f"{path.relative_to(TESTS)}:{node.lineno}")
    assert not offenders, f"import shared helpers from a uniquely named module instead: {offenders}"


def test_module_names_are_unique_across_test_folders():
    counts = Counter(p.name for p in _modules() if p.name != "conftest.py")
    assert [name for name, n in counts.items() if n > 1] == []
