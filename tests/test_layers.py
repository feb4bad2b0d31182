"""The package's layers run one way: a module imports only from its own layer's lower parts
or from lower layers, read from the source (every import, function-level ones included)."""
from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "valueharms"

# Lowest first. Within the first two layers modules may import each other (they have their
# own order); from layer 2 up, parts of the same layer stay apart (generation never imports
# scoring, nor the other way round).
LAYERS = [
    {"errors", "values", "records", "measures", "files", "io", "config", "remote", "profile",
     "console", "bootstrap"},
    {"sources", "fetch", "targets", "chat", "benchmarks", "holisticbiasr", "models", "systems", "prompts",
     "provenance"},
    {"generate", "score"},
    {"analyze"},  # statistics of results; the alignment check takes its bootstrap intervals
    {"align"},
    {"report"},
    {"study"},
    {"commands"},
    {"cli", "__main__", "__init__"},
]
SHARED_LAYERS = 2
# Backends are reached through valueharms.generate (make_backend, the Backend protocol).
PRIVATE = {"generate.hf", "generate.vllm", "generate.openai_compat"}
# Known crossings waiting for their fix; remove an entry with the fix.
KNOWN = {("study", "generate.vllm")}  # the study reads a vLLM engine default at load


def _part(dotted: str) -> str:
    """``valueharms.score.judges`` -> ``score``; ``valueharms`` -> ``__init__``."""
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every valueharms import in ``path``."""
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [target] if node.module else [f"{target}.{a.name}" for a in node.names]
            found += [(node.lineno, n) for n in names if n.startswith("valueharms")]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names
                      if a.name.startswith("valueharms")]
    return found


def _layer(part: str) -> int:
    for rank, members in enumerate(LAYERS):
        if part.removesuffix(".py") in members:
            return rank
    raise AssertionError(f"valueharms.{part} is in no layer: add it to LAYERS")


def crossings() -> list[str]:
    """Every import that goes up a layer, sideways above the shared layers, or into a
    backend module from outside ``generate``."""
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        source = rel.parts[0].removesuffix(".py") if len(rel.parts) > 1 or rel.name != \
            "__init__.py" else "__init__"
        here = _layer(source)
        for line, target in _imports(path):
            part = _part(target)
            inner = ".".join(target.split(".")[1:3])
            if part == source or (source, inner) in KNOWN:
                continue
            there = _layer(part)
            upward = there > here or (there == here and here >= SHARED_LAYERS)
            if upward or inner in PRIVATE:
                bad.append(f"{rel}:{line}: imports {target}")
    return bad


def test_no_layer_imports_a_higher_one():
    assert crossings() == []


def test_the_walk_sees_function_level_imports(tmp_path, monkeypatch):
    # A scorer that reaches into generation from inside a function is still caught.
    fake = tmp_path / "valueharms"
    (fake / "score").mkdir(parents=True)
    (fake / "generate").mkdir()
    (fake / "score" / "x.py").write_text("def f():\n    from ..generate import run\n")
    (fake / "generate" / "__init__.py").write_text("")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    assert crossings() == ["score/x.py:2: imports valueharms.generate"]
