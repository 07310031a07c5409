"""The import graph: data flows one way inside cocos_lib, and the sandbox stands alone.

Every import counts, function-level (lazy) ones too: a lazy import hides a circle, it does not remove it."""
import ast
import sys
from pathlib import Path

LIB = Path(__file__).resolve().parent.parent / "cocos_lib"


def imports(path: Path) -> set[str]:
    """Dotted names `path` imports anywhere in its body, relative imports resolved against its package."""
    package = ".".join(path.relative_to(LIB.parent).with_suffix("").parts[:-1])
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]) if node.level else ""
            module = ".".join(part for part in (base, node.module) if part)
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def module_graph() -> dict[str, set[str]]:
    """cocos_lib module -> the cocos_lib modules it imports (a package stands for its __init__)."""
    files = {".".join(f.relative_to(LIB.parent).with_suffix("").parts).removesuffix(".__init__"): f
             for f in LIB.rglob("*.py")}
    return {m: {n for n in imports(f) if n in files and n != m} for m, f in files.items()}


def test_no_import_circle_in_cocos_lib():
    graph = module_graph()
    state: dict[str, str] = {}  # module -> "open" while on the DFS path, "done" after
    circles = []

    def visit(module, path):
        state[module] = "open"
        for other in sorted(graph[module]):
            if state.get(other) == "open":
                circles.append(" -> ".join(path[path.index(other):] + [other]))
            elif other not in state:
                visit(other, path + [other])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert circles == []


def test_sandbox_imports_only_itself_and_the_stdlib():
    for path in (LIB / "executor" / "sandbox").glob("*.py"):
        for name in imports(path):
            top = name.split(".")[0]
            assert top in sys.stdlib_module_names or name.startswith("cocos_lib.executor.sandbox") or top == "sandbox", \
                f"{path.name} imports {name}"


def test_no_module_is_absurdly_long():
    """The rule is one concept a file (README, "Library map"), not a line count; 600 lines is only a sanity
    bound that says a file has grown a second concept."""
    long = {str(f.relative_to(LIB)): n for f in LIB.rglob("*.py") if (n := len(f.read_text().splitlines())) > 600}
    assert long == {}
