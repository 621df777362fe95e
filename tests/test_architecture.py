"""The layout's borders (docs/ARCHITECTURE.md): a pure core, a training stack and an analysis
stack, imports flowing one way, no cycles, and the analysis side usable without torch."""

from __future__ import annotations

import ast
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "scaling"
CORE = {
    "scaling",
    "scaling.errors",
    "scaling.counting",
    "scaling.schema",
    "scaling.data_config",
    "scaling.devices",
    "scaling.identity",
    "scaling.hparams_rule",
    "scaling.run_config",
    "scaling.auto",
    "scaling.schedule",
    "scaling.config",
    "scaling.files",
    "scaling.numbers",
}
CORE_PACKAGES = ("scaling.sources",)  # every module below them is core: one file a data source
ENTRY = {"scaling.cli", "scaling.train", "scaling.sweep", "scaling.__main__"}
TRAINING_STACK = ("torch", "lightning", "mlflow")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth (function-level imports included), as absolute
    names; ``from a import b`` counts as ``a`` and, when it is a module of ours, ``a.b``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                if candidate in MODULES:
                    found.add(candidate)
    return found


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}
GRAPH = {name: {m for m in imports(path) if m in MODULES} for name, path in MODULES.items()}


def layer(name: str) -> str:
    if name in CORE or name.startswith(CORE_PACKAGES):
        return "core"
    if name in ENTRY or name.startswith("scaling.cli."):  # the CLI package
        return "entry"
    if name.startswith("scaling.analysis"):
        return "analysis"
    if name.startswith("scaling.training"):
        return "training"
    raise AssertionError(f"{name} belongs to no layer: add it to docs/ARCHITECTURE.md and here")


# Which layer may import which (the picture in docs/ARCHITECTURE.md).
ALLOWED = {
    "core": {"core"},
    "analysis": {"core", "analysis"},
    "training": {"core", "training", "analysis"},
    "entry": {"core", "analysis", "training", "entry"},
}


def test_every_import_flows_one_way() -> None:
    wrong = [
        f"{src} ({layer(src)}) imports {dst} ({layer(dst)})"
        for src, targets in GRAPH.items()
        for dst in targets
        if dst != "scaling" and layer(dst) not in ALLOWED[layer(src)]
    ]
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles() -> None:
    """Not even through imports inside functions: a cycle means two modules do one job."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(GRAPH[node] - {"scaling"}):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(GRAPH):
        if start not in state and (cycle := visit(start)):
            pytest.fail("import cycle: " + " -> ".join(cycle))


def test_core_and_analysis_name_no_training_library() -> None:
    offenders = [
        f"{name} imports {dep}"
        for name, path in MODULES.items()
        if layer(name) in ("core", "analysis")
        for dep in imports(path)
        if dep.split(".")[0] in TRAINING_STACK
    ]
    assert not offenders, "\n".join(offenders)


def test_config_and_analysis_import_where_torch_lightning_mlflow_cannot() -> None:
    """What a laptop without the training stack gets: the config, counting, every analysis
    module and the CLI import and fit, with torch, lightning and mlflow made unimportable."""
    cli = sorted(n for n in MODULES if n == "scaling.cli" or n.startswith("scaling.cli."))
    light = sorted(n for n in MODULES if layer(n) in ("core", "analysis")) + cli
    code = "\n".join(
        [
            "import importlib, sys",
            *(f"sys.modules[{m!r}] = None" for m in TRAINING_STACK),
            f"for name in {light!r}:",
            "    importlib.import_module(name)",
            "from scaling.config import GPTConfig",
            "from scaling.run_config import RunConfig",
            "from scaling.counting import count_params",
            "print(count_params(GPTConfig()).total)",
        ]
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
    # The default model (4 layers, d_model 64 by the aspect rule, byte vocab, seq 128), counted
    # by hand: 4 x 49,984 per block + 128 final norm + 256*64 tokens + 128*64 positions.
    assert out.stdout.split()[-1] == "224640"


def test_the_sweep_driver_validates_and_skips_without_loading_torch(tmp_path: Path) -> None:
    """Validating a run and building its token cache need no torch or Lightning: they are
    imported only when a run actually trains, so checking a grid or rerunning a finished sweep
    (which skips every run) is quick."""
    text = Path(sysconfig.get_paths()["stdlib"]) / "json"
    code = "\n".join(
        [
            "import sys",
            "sys.modules['torch'] = None",
            "sys.modules['lightning'] = None",
            "import scaling.training.sweep",
            "from scaling.training.prepare import prepare",
            "prep = prepare({'model': {'n_layer': 1}, 'train': {'tokens': 4096},",
            f"    'data': {{'source': 'text', 'path': {str(text)!r},",
            f"             'cache_dir': {str(tmp_path)!r}, 'val_tokens': 1000}}}},",
            "    check_tracking=False)",
            "print(prep.name, len(prep.corpus.train))",
        ]
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
    name, n_train = out.stdout.split()
    assert name.startswith("L1-d16-h1-") and int(n_train) > 40_000  # the json package


MAX_LINES = 600


def test_no_module_is_a_warehouse() -> None:
    """A module past MAX_LINES holds more than one job: split it by job as the feature grows
    (docs/ARCHITECTURE.md, "Where things are")."""
    long = {
        name: n
        for name, path in MODULES.items()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, ", ".join(f"{name}: {n} lines" for name, n in sorted(long.items()))


DOC = (PACKAGE.parent / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")


def test_the_documents_picture_names_the_core_this_test_enforces() -> None:
    """The PURE CORE box of docs/ARCHITECTURE.md lists exactly the core modules (and core
    packages) that the layer rules above treat as core."""
    box = DOC[DOC.index("PURE CORE") : DOC.index("(no torch", DOC.index("PURE CORE"))]
    named = {w.strip("/") for w in box.replace("PURE CORE", "").replace("·", " ").split()}
    core = {n.removeprefix("scaling.") for n in CORE if n != "scaling"}
    core |= {p.removeprefix("scaling.") for p in CORE_PACKAGES}
    assert named == core


def test_the_document_lists_every_training_module_that_reads_the_analysis_stack() -> None:
    """The training stack's rule in docs/ARCHITECTURE.md names the places it imports the
    analysis stack; a new one must be added there (and justified) first."""
    rule = DOC[DOC.index("- The **training stack**") : DOC.index("- The **entry points**")]
    readers = {
        src.rsplit(".", 1)[-1]
        for src, targets in GRAPH.items()
        if layer(src) == "training" and any(layer(t) == "analysis" for t in targets)
    }
    assert readers and all(f"`{name}`" in rule for name in readers), sorted(readers)
