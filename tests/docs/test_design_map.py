"""The map matches the house: every module, folder and dotted name docs/DESIGN.md and README.md cite exists.

A rename that forgets the docs fails here, with the stale reference and the file that holds it.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("prescale", "models", "tasks", "flows", "cli")
DOCS = ("docs/DESIGN.md", "README.md")
# `models/train.py`, `prescale/replay/`, `cli/commands/rule.py` (a path in one of the layers' packages)
ANY = "|".join(PACKAGES)
PATH = re.compile(rf"(?<![\w./-])((?:{ANY})/[\w/]*\w(?:\.\w+)?/?)")
# `prescale.decision.decide`, `tasks.orchestrate` (a dotted name inside backticks)
DOTTED = re.compile(rf"`((?:{ANY})(?:\.\w+)+)`")
# MLflow tag keys (`prescale.inputs`, ...) look dotted too: the registry adapter's string literals name them.
TAGS = set(re.findall(r'"(prescale\.[\w.]+)"', (ROOT / "models/registry.py").read_text()))


def _references(pattern: re.Pattern[str]) -> list[tuple[str, str]]:
    found = {(doc, m.group(1)) for doc in DOCS for m in pattern.finditer((ROOT / doc).read_text())}
    return sorted((doc, name) for doc, name in found if name not in TAGS)


@pytest.mark.parametrize("doc, path", _references(PATH), ids=lambda v: str(v))
def test_every_path_the_docs_name_exists(doc, path):
    assert (ROOT / path.rstrip("/")).exists(), f"{doc} names {path}, which does not exist"


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


@pytest.mark.parametrize("doc, dotted", _references(DOTTED), ids=lambda v: str(v))
def test_every_dotted_name_the_docs_cite_resolves(doc, dotted):
    assert _resolves(dotted), f"{doc} cites `{dotted}`, which no module defines"


def test_the_design_opens_with_the_layers_and_an_orchestrate_cycle():
    text = (ROOT / "docs/DESIGN.md").read_text()
    headings = re.findall(r"^## (.+)$", text, flags=re.MULTILINE)
    assert headings[:2] == ["Layers", "An orchestrate cycle"], headings[:3]
