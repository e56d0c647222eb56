"""The import arrow: bot/ uses model/, never the reverse; only bot/store/ speaks SQL."""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@functools.cache
def source(path: Path) -> str:
    """``path``'s text, read once for all the tests here (each reads every module of bot/)."""
    return path.read_text(encoding="utf-8")


@functools.cache
def parsed(path: Path) -> ast.Module:
    """``path``'s syntax tree, parsed once for all the tests here (they only read it): four of
    them parsed every module of bot/ anew, about a second each on a busy machine. CPython
    3.11's AST constructor can raise a spurious SystemError ("recursion depth mismatch",
    python/cpython#106905: its depth count is shared by the interpreter's threads, and this
    process runs servers' threads): seen once in the suite under load; the parse is tried
    again."""
    for attempt in range(3):
        try:
            return ast.parse(source(path))
        except SystemError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def statements(node: ast.AST) -> Iterator[ast.AST]:
    """``node`` and every statement inside it, at any depth (the bodies of functions, classes,
    branches, loops, handlers and cases), without the expressions: an import is a statement,
    so this finds every one ``ast.walk`` finds, in a fraction of the nodes."""
    yield node
    for _field, value in ast.iter_fields(node):
        if isinstance(value, list):
            for child in value:
                if isinstance(child, (ast.stmt, ast.excepthandler, ast.match_case)):
                    yield from statements(child)


@functools.cache
def import_statements(path: Path) -> tuple[ast.Import | ast.ImportFrom, ...]:
    """``path``'s import statements, at the top or inside a function, found once."""
    return tuple(
        node for node in statements(parsed(path)) if isinstance(node, (ast.Import, ast.ImportFrom))
    )


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in import_statements(path):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_only_the_store_imports_sqlite():
    offenders = [
        str(path.relative_to(ROOT))
        for package in ("bot", "model")
        for path in (ROOT / package).rglob("*.py")
        if (
            {"sqlite_utils", "sqlite3"} & imported_modules(path)
            or 'find_library("sqlite3")' in source(path)  # through ctypes
        )
        and ROOT / "bot" / "store" not in path.parents
    ]
    assert offenders == []


def test_only_the_store_runs_sql():
    """README's "How it works": the store is the only package that speaks SQL. A module
    elsewhere that runs a statement through ``store.db`` (importing nothing) counts too."""
    import re

    offenders = [
        f"{path.relative_to(ROOT)} line {source(path)[: m.start()].count(chr(10)) + 1}"
        for package in ("bot", "model")
        for path in sorted((ROOT / package).rglob("*.py"))
        if ROOT / "bot" / "store" not in path.parents
        for m in re.finditer(r"\.(execute|executemany|executescript)\(", source(path))
    ]
    assert offenders == []


def test_model_knows_nothing_of_bot_slack_or_sqlite():
    banned = {"bot", "slack_bolt", "slack_sdk", "sqlite_utils", "sqlite3", "aiohttp"}
    offenders = {
        str(path.relative_to(ROOT)): sorted(banned & imported_modules(path))
        for path in (ROOT / "model").rglob("*.py")
        if banned & imported_modules(path)
    }
    assert offenders == {}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@functools.cache  # built once per kind for the tests below, which only read it
def bot_import_graph(*, with_type_checking: bool = False) -> dict[str, set[str]]:
    """Module → the bot modules it imports, at the top or inside a function. Imports under
    ``if TYPE_CHECKING:`` are left out unless ``with_type_checking``: they never run, so they
    cannot make a circle at run time (a layer rule counts them: a type is a dependency too).
    ``from bot.x import y`` counts as an import of ``bot.x.y`` when that is a module."""
    paths = {_module_name(path): path for path in (ROOT / "bot").rglob("*.py")}

    def known(name: str) -> str | None:
        while name and name not in paths:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        tree = parsed(path)
        type_checking = {
            id(node)
            for branch in statements(tree)
            if isinstance(branch, ast.If) and _is_type_checking(branch.test)
            for statement in branch.body
            for node in statements(statement)
        }
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str | None] = set()
        for node in import_statements(path):
            if id(node) in type_checking and not with_type_checking:
                continue
            if isinstance(node, ast.Import):
                targets.update(known(a.name) for a in node.names if a.name.split(".")[0] == "bot")
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, *([node.module] if node.module else [])])
                if base.split(".")[0] != "bot":
                    continue
                targets.update(known(f"{base}.{a.name}") or known(base) for a in node.names)
        graph[name] = {t for t in targets if t is not None and t != name}
    return graph


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every group of modules that import one another, round and round (Tarjan's SCCs)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while (member := stack.pop()) != node:
                group.append(member)
            group.append(node)
            if len(group) > 1:
                circles.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return circles


def test_import_circles_are_found():
    graph = {"bot.a": {"bot.b"}, "bot.b": {"bot.c"}, "bot.c": {"bot.a"}, "bot.d": {"bot.a"}}
    assert import_circles(graph) == [["bot.a", "bot.b", "bot.c"]]


def test_no_import_circle_among_bot_modules():
    graph = bot_import_graph()
    assert (
        "bot.appkeys" in graph["bot.api.routes"] and "bot.api.routes" in graph["bot.server"]
    )  # it sees
    assert import_circles(graph) == []


def test_no_import_circle_even_counting_imports_made_only_for_types():
    graph = bot_import_graph(with_type_checking=True)
    assert "bot.store" in graph["bot.api.metrics"]  # it sees (a type-only import)
    assert import_circles(graph) == []


def _in(module: str, *packages: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


EDGES = ("bot.slack", "bot.api", "bot.learning")
COMPOSERS = ("bot.cli", "bot.cli_labels", "bot.server", "bot.demo")
CORE = (
    "bot.runtime",
    "bot.appkeys",
    "bot.store",
    "bot.config",
    "bot.ingest",
    "bot.errors",
    "bot.labelnames",
    "bot.logs",
    "bot.eventloop",
)


def all_but(*allowed: str) -> tuple[str, ...]:
    """Every top-level module and package of ``bot`` except ``allowed``."""
    names = {p.stem for p in (ROOT / "bot").glob("*.py")} | {
        p.parent.name for p in (ROOT / "bot").glob("*/__init__.py")
    }
    return tuple(f"bot.{n}" for n in sorted(names) if f"bot.{n}" not in allowed and n != "__init__")


LAYER_RULES = [  # (these modules, never import these), each name with its submodules
    (EDGES, COMPOSERS),
    (CORE, (*EDGES, *COMPOSERS)),  # the core holds the edges' owners only as Protocols
    (("bot.learning",), ("bot.slack", "bot.api")),  # the learning loop serves both edges
    (("bot.api",), ("bot.slack",)),
    # the ground floor; the event loop's fast lane is a leaf (an fsync that acks wait for)
    (("bot.store",), all_but("bot.store", "bot.errors", "bot.eventloop", "bot.labelnames")),
    (("bot.eventloop",), all_but("bot.eventloop")),
    (("bot.sandbox",), all_but("bot.sandbox")),  # it talks to the bot over HTTP only
    (("bot.ingest",), all_but("bot.ingest", "bot.store", "bot.errors", "bot.labelnames")),
    (("bot.labelnames",), all_but("bot.labelnames")),  # a label's name rules: a leaf
]


def test_the_layers_import_only_downwards():
    graph = bot_import_graph(with_type_checking=True)
    assert {"bot.slack.dispatch", "bot.api.routes", "bot.learning.retrain"} <= set(graph)
    assert "bot.learning.scoring" in graph["bot.slack.dispatch"]  # it sees
    broken = sorted(
        f"{module} imports {target}"
        for importers, banned in LAYER_RULES
        for module, targets in graph.items()
        if _in(module, *importers)
        for target in targets
        if _in(target, *banned)
    )
    assert broken == []


def test_the_fork_server_starts_before_numpy_or_scikit_learn_is_imported():
    """`hitl serve` and `hitl demo` start the fork server first, so that its imports run
    beside their own (bot/learning/children.py): its module must stay that light."""
    import subprocess
    import sys

    heavy = ("numpy", "scipy", "sklearn", "model")
    code = f"import sys, bot.learning.children; print([m for m in {heavy} if m in sys.modules])"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert result.stdout.strip() == "[]", result.stdout
    cli = (ROOT / "bot" / "cli.py").read_text(encoding="utf-8")
    for command, heavy_import in (
        ("def serve_command", "from bot.server import"),
        ("def demo_command", "from bot.demo import"),
    ):
        body = cli[cli.index(command) :]
        assert body.index("start_fork_server()") < body.index(heavy_import), command


def test_the_cli_imports_no_server_code_until_a_command_needs_it():
    """`hitl import`, `hitl stats`, `hitl --help` and the other commands that never talk to
    Slack do not import the server's half (aiohttp, Slack's SDK, the retrain and scoring code
    that bring them): that was 0.2 s of CPU of each command's 0.4 s start (a `hitl` command in
    a cron job, and the test suite's hundred). The commands that need it import it where they
    run (``hitl serve``, ``hitl retrain``, ``hitl people anonymise``)."""
    import subprocess
    import sys

    server_half = ("aiohttp", "slack_sdk", "slack_bolt", "bot.learning.retrain", "bot.runtime")
    # bot.learning.reports: `hitl stats` and `hitl accuracy` build their text with it (it took
    # the retrain's Outcome for its annotations: 0.12 s of each such command's CPU)
    for modules in ("bot.cli", "bot.cli, bot.learning.reports"):
        code = f"import sys, {modules}; print([m for m in {server_half} if m in sys.modules])"
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
        )
        assert result.stdout.strip() == "[]", (modules, result.stdout)


def test_the_commands_that_read_import_no_server_code(tmp_path: Path):
    """`hitl stats`, `hitl accuracy` and `hitl restore`'s models note read the models folder
    with the registry alone: `hitl accuracy` imported the retrain (and with it aiohttp and
    Slack's SDK) for its ``registry_for``, 0.14 s of CPU a start."""
    import subprocess
    import sys

    from bot.store import Store

    db = tmp_path / "hitl.db"
    Store.open(db).close()
    (tmp_path / "hitl.db.models").mkdir()
    server_half = ("aiohttp", "slack_sdk", "slack_bolt", "bot.learning.retrain", "bot.runtime")
    for command in ("stats", "accuracy"):
        code = (
            "import atexit, sys\n"
            f"atexit.register(lambda: print([m for m in {server_half} if m in sys.modules]))\n"
            f"sys.argv = ['hitl', '--db', {str(db)!r}, {command!r}]\n"
            "from bot.cli import main\n"
            "main()\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120
        )
        assert result.returncode == 0, (command, result.stderr)
        assert result.stdout.strip().splitlines()[-1] == "[]", (command, result.stdout)
