"""Can a program's functions leave state behind? A conservative static check (in W, trusted; cached).

"test" isolation gives every test the program as if just run: C forks T_i, which serves test i's calls and
dies with whatever they changed. A fork per test is most of that mode's cost (benchmarks/executor_breakdown.py).
It buys nothing for a program whose calls cannot change anything a later call could see: then C serves the
judge's calls for all its trusted tests itself, and the verdicts are those of a fresh process per test.

`stateless(program)` is True only when every construct of the program is in the small set below, for which
that holds by construction; anything else (a class, a decorator, `global`, an attribute assignment, a name or
module outside the lists, a string holding "__", ...) answers False and the program keeps its forks.

  module level  a docstring; `import M` / `from M import n` of the modules below; `def` without decorators,
                whose defaults are immutable literals; NAME = an immutable literal (numbers, strings, bytes,
                None, booleans, tuples of those). So every module-level object is immutable, a function,
                or a module (or a name imported from one) of the list: nothing a call could mutate in place,
                except by assigning its attributes, which is refused. NAME = a list, set or dict display of
                such literals (HumanEval's `METADATA = {...}`) is allowed when no function reads NAME.
  in functions  names that resolve to the function's own (or an enclosing function's) locals, to module-level
                names, or to the builtins below; subscript assignment and `del` only on those locals; no
                attribute assignment or deletion, no `global` / `nonlocal`, no class, no `with`, no `async`;
                attributes read by name, never one starting with "_"; a module's attribute only from its
                list (`functools.update_wrapper`, `random.seed`, `sys.setrecursionlimit`,
                `decimal.setcontext` are not on it).
A local can alias a module-level object, but those cannot be changed through item assignment (immutable,
functions, modules, classes: TypeError), and attribute assignment is refused everywhere; so every object a
call can mutate was made during that call (or is an argument, which the judge sends afresh each call).
What stays shared is invisible to the verdicts: interpreter caches (`re`'s patterns, interned strings) and
freed memory (W ends the incarnation when C's resident memory has grown by MEMORY_GROWTH_MB). Not covered:
results that depend on object addresses (the order of a set of functions or generators, hashed by identity),
which are arbitrary in any mode, a fresh fork's and the release's fresh interpreter included.
"""
import ast, builtins, sys, warnings

from .analysis import _cached

MEMORY_GROWTH_MB = 64

# module -> attributes a program may use (None: any public name)
MODULES = {
    "math": None, "cmath": None, "itertools": None, "heapq": None, "bisect": None,  # (no module, no container)
    "statistics": frozenset({"mean", "fmean", "geometric_mean", "harmonic_mean", "median", "median_low",
                             "median_high", "median_grouped", "mode", "multimode", "pstdev", "pvariance", "stdev",
                             "variance", "quantiles", "correlation", "covariance", "linear_regression",
                             "NormalDist", "StatisticsError"}),  # (not its `sys`, `random`, `math` attributes)
    "string": frozenset({"ascii_letters", "ascii_lowercase", "ascii_uppercase", "digits", "hexdigits",
                         "octdigits", "punctuation", "printable", "whitespace", "capwords"}),
    "operator": frozenset({"add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "neg", "pos", "abs",
                           "and_", "or_", "xor", "not_", "inv", "invert", "lshift", "rshift", "eq", "ne", "lt",
                           "le", "gt", "ge", "contains", "countOf", "indexOf", "itemgetter", "concat",
                           "truth", "index", "matmul"}),
    "typing": frozenset({"List", "Dict", "Set", "FrozenSet", "Tuple", "Optional", "Union", "Any", "Callable",
                         "Iterable", "Iterator", "Sequence", "Generator", "Mapping", "Deque", "DefaultDict", "cast"}),
    "collections": frozenset({"Counter", "defaultdict", "deque", "OrderedDict", "namedtuple"}),
    "functools": frozenset({"reduce", "partial", "cmp_to_key"}),
    "re": frozenset({"match", "search", "fullmatch", "findall", "finditer", "sub", "subn", "split", "compile",
                     "escape", "IGNORECASE", "I", "MULTILINE", "M", "DOTALL", "S", "VERBOSE", "X", "ASCII", "A"}),
    "fractions": frozenset({"Fraction"}),
    "copy": frozenset({"copy", "deepcopy"}),
}
_EXCEPTIONS = {n for n in dir(builtins) if isinstance(getattr(builtins, n), type)
               and issubclass(getattr(builtins, n), BaseException)}
BUILTINS = frozenset({
    "abs", "all", "any", "ascii", "bin", "bool", "bytearray", "bytes", "callable", "chr", "complex", "dict",
    "divmod", "enumerate", "filter", "float", "format", "frozenset", "hash", "hex", "int", "isinstance",
    "issubclass", "iter", "len", "list", "map", "max", "min", "next", "oct", "ord", "pow", "print",
    "range", "repr", "reversed", "round", "set", "slice", "sorted", "str", "sum", "tuple", "type", "zip",
    "True", "False", "None", "NotImplemented", "Ellipsis"} | _EXCEPTIONS)
# attributes that reach interpreter frames, code or tracebacks (and through them any namespace): refused
FRAMES = ("gi_", "cr_", "ag_", "f_", "tb_", "co_")
# statement and expression nodes a function body may hold (anything else: not stateless)
_FUNCTION_NODES = (
    ast.FunctionDef, ast.Lambda, ast.arguments, ast.arg, ast.Return, ast.Assign, ast.AugAssign, ast.AnnAssign,
    ast.Delete, ast.For, ast.While, ast.If, ast.Raise, ast.Try, ast.ExceptHandler, ast.Assert, ast.Import,
    ast.ImportFrom, ast.alias, ast.Expr, ast.Pass, ast.Break, ast.Continue, ast.BoolOp, ast.NamedExpr, ast.BinOp,
    ast.UnaryOp, ast.IfExp, ast.Dict, ast.Set, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp,
    ast.comprehension, ast.Yield, ast.YieldFrom, ast.Compare, ast.Call, ast.keyword, ast.FormattedValue,
    ast.JoinedStr, ast.Constant, ast.Attribute, ast.Subscript, ast.Starred, ast.Name, ast.List, ast.Tuple,
    ast.Slice, ast.expr_context, ast.boolop, ast.operator, ast.unaryop, ast.cmpop)
# what a module-level value may call (module -> names; None: the builtins), and what it may be made of
INERT_CALLS = {None: frozenset({"range", "list", "dict", "set", "tuple", "str", "int", "float", "frozenset",
                                "sorted", "len", "abs", "min", "max", "sum", "bool", "chr", "ord", "zip",
                                "enumerate", "reversed"}),
               "random": frozenset({"Random"}), "re": frozenset({"compile"}), "fractions": frozenset({"Fraction"}),
               "collections": frozenset({"Counter", "defaultdict", "deque", "OrderedDict"})}
_INERT_NODES = (ast.Constant, ast.Name, ast.Attribute, ast.Subscript, ast.Slice, ast.BinOp, ast.UnaryOp,
                ast.BoolOp, ast.Compare, ast.IfExp, ast.Tuple, ast.List, ast.Set, ast.Dict, ast.keyword,
                ast.Starred, ast.expr_context, ast.boolop, ast.operator, ast.unaryop, ast.cmpop)
# stdlib modules whose import or use can leave something running between calls (hooks, threads, signals)
HOOKS = frozenset({"threading", "_thread", "signal", "atexit", "faulthandler", "tracemalloc", "sys", "gc",
                   "multiprocessing", "concurrent", "asyncio", "subprocess", "ctypes", "os", "posix", "pty",
                   "antigravity", "this", "turtle", "turtledemo", "idlelib", "tkinter", "webbrowser", "readline",
                   "rlcompleter", "pdb", "bdb", "cProfile", "profile", "trace", "site", "code", "codeop",
                   "importlib", "builtins", "socket", "selectors", "sched", "weakref", "inspect"})
_cache = {}


def stateless(program):
    """True when no call into `program` can leave state a later call would see (see the module docstring);
    cached by text, as analysis.py caches its plans."""
    def make():
        try:
            with warnings.catch_warnings():  # (a program's invalid escapes: its own run says so, not this check)
                warnings.simplefilter("ignore")
                return _check(ast.parse(program))
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            return False
    return _cached(_cache, program, make)


def _dunder(node):
    """A string constant holding "__" (a dunder name spelled out)."""
    return isinstance(node, ast.Constant) and isinstance(node.value, str) and "__" in node.value


def _immutable(node):
    """An immutable literal: a constant, a negated number, or a tuple of those."""
    if isinstance(node, ast.Constant):
        return not _dunder(node)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        return isinstance(node.operand, ast.Constant) and isinstance(node.operand.value, (int, float, complex))
    return isinstance(node, ast.Tuple) and all(_immutable(e) for e in node.elts)


def _data(node):
    """A literal of plain data: an immutable literal, or a list, set or dict display of such data."""
    if isinstance(node, (ast.List, ast.Set, ast.Tuple)):
        return all(_data(e) for e in node.elts)
    if isinstance(node, ast.Dict):
        return all(k is not None and _data(k) for k in node.keys) and all(_data(v) for v in node.values)
    return _immutable(node)


def _import_ok(node, modules):
    """Record what an import binds in `modules` (name -> (module, attribute or None)); False if not allowed."""
    if isinstance(node, ast.Import):
        for a in node.names:
            if a.name not in MODULES or (a.asname is None and "." in a.name):
                return False
            modules[a.asname or a.name] = (a.name, None)
        return True
    if node.level or node.module not in MODULES:
        return False
    allowed = MODULES[node.module]
    for a in node.names:
        if a.name == "*" or a.name.startswith("_") or (allowed is not None and a.name not in allowed):
            return False
        modules[a.asname or a.name] = (node.module, a.name)
    return True


def _defaults_ok(args):
    return all(_immutable(d) for d in args.defaults + [d for d in args.kw_defaults if d is not None])


def _check(tree):
    """The module-level rules, then every function against them."""
    module_names, opaque, modules, inert, functions = set(), set(), {}, {}, []
    defined = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    rebound = {t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets
               if isinstance(t, ast.Name)}
    rebound |= {(a.asname or a.name).split(".")[0] for node in tree.body
                if isinstance(node, (ast.Import, ast.ImportFrom)) for a in node.names}
    if defined & rebound:
        return False  # a module-level call of `f` must call the program's checked function
    for node in tree.body:
        if _main_guard(node):
            continue  # `if __name__ == "__main__":` never runs here (the program is `__candidate__`)
        if isinstance(node, (ast.Expr, ast.Assert)):
            if not all(_inert(e, modules, inert, module_names | opaque, defined) for e in ast.iter_child_nodes(node)):
                return False
            continue  # a docstring, `assert f(1) == 2`, HumanEval's `assert True, "..."`
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            if not _import_ok(node, modules) and not _inert_import(node, opaque, inert):
                return False
        elif isinstance(node, ast.FunctionDef):
            if node.decorator_list or not _defaults_ok(node.args):
                return False
            module_names.add(node.name)
            functions.append(node)
        elif isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) for t in node.targets):
            if not _inert(node.value, modules, inert, module_names | opaque, defined):
                return False  # (it runs once, before every test, but must leave no hook behind)
            (module_names if _immutable(node.value) else opaque).update(t.id for t in node.targets)
        elif isinstance(node, ast.Pass):
            continue
        else:
            return False
    module_names = (module_names | set(modules)) - opaque  # a name bound to anything mutable is never read
    modules = {k: v for k, v in modules.items() if k not in opaque}
    return all(_function_ok(f, module_names, modules, frozenset()) for f in functions)


def _inert_import(node, opaque, inert):
    """`import M` of a stdlib module not listed (HumanEval's `import random` for its tests), bound as opaque:
    a function may not read the name. Modules whose import or use installs hooks are refused."""
    if not isinstance(node, ast.Import):
        return False
    for a in node.names:
        top = a.name.split(".")[0]
        if top not in sys.stdlib_module_names or top in HOOKS or (a.asname is None and "." in a.name):
            return False
        opaque.add(a.asname or a.name)
        inert[a.asname or a.name] = a.name
    return True


def _main_guard(node):
    """`if __name__ == "__main__":` (no else)."""
    t = node.test if isinstance(node, ast.If) else None
    return (isinstance(t, ast.Compare) and isinstance(t.left, ast.Name) and t.left.id == "__name__"
            and len(t.comparators) == 1 and isinstance(t.comparators[0], ast.Constant)
            and t.comparators[0].value == "__main__" and isinstance(t.ops[0], ast.Eq) and not node.orelse)


def _inert(node, modules, inert, bound, defined):
    """A module-level expression (it runs once, before any test, in every mode) that installs nothing: data,
    names, attribute and item reads, operators, and calls of the program's own functions (each checked like
    any other) or of INERT_CALLS (a builtin the program does not rebind, or a listed constructor of an
    imported module)."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call):
            f = sub.func
            if isinstance(f, ast.Name):
                ok = f.id in defined or (f.id in INERT_CALLS[None] and f.id not in bound and f.id not in modules)
            else:
                owner = f.value.id if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else None
                if owner in modules and modules[owner][1] is None:
                    module = modules[owner][0]
                else:
                    module = inert.get(owner)  # (a name that is no module calls nothing here)
                ok = module is not None and f.attr in INERT_CALLS.get(module, ())
            if not ok:
                return False
        elif not isinstance(sub, _INERT_NODES):
            return False
        elif isinstance(sub, ast.Attribute) and sub.attr.startswith(("_",) + FRAMES):
            return False
        elif isinstance(sub, ast.Name) and not (sub.id in bound or sub.id in defined or sub.id in modules
                                                 or sub.id in inert or sub.id in BUILTINS):
            return False  # (`globals`, `getattr`, `open` ... handed to the program's functions)
        elif _dunder(sub):
            return False
    return True


def _bindings(fn):
    """(names the function binds other than by import, {name: binding} of its imports) over its own body,
    comprehensions included, nested functions' names but not their insides; None when it declares `global` /
    `nonlocal`, imports a module not on the list, or binds one name both ways."""
    names = {a.arg for a in fn.args.posonlyargs + fn.args.args + fn.args.kwonlyargs}
    names |= {a.arg for a in (fn.args.vararg, fn.args.kwarg) if a is not None}
    imports = {}
    stack = list(fn.body) if isinstance(fn.body, list) else [fn.body]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Global, ast.Nonlocal)):
            return None
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)) and not _import_ok(node, imports):
            return None
        if isinstance(node, (ast.FunctionDef, ast.Lambda)):
            if isinstance(node, ast.FunctionDef):
                names.add(node.name)
            continue  # its insides are its own scope
        stack.extend(ast.iter_child_nodes(node))
    return (names, imports) if not names & imports.keys() else None


def _base(node):
    """The Name an attribute/subscript chain starts from, or None."""
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _function_ok(fn, module_names, modules, outer):
    """The in-function rules for `fn` (a FunctionDef or Lambda). `modules`: the imported names in scope
    ({name: (module, attribute or None)}); `outer`: the names its enclosing functions bind."""
    got = _bindings(fn)
    if got is None:
        return False
    own, imports = got
    writable = outer | own  # item assignment and `del` only on these (never a module-level or imported name)
    local = writable | imports.keys()
    scope = {k: v for k, v in modules.items() if k not in own}
    scope.update(imports)
    owners = set()  # Name nodes that are a module's `module.attr` owner (a module is never used bare)
    stack = list(fn.body) if isinstance(fn.body, list) else [fn.body]
    while stack:
        node = stack.pop()
        if not isinstance(node, _FUNCTION_NODES):
            return False
        if isinstance(node, (ast.FunctionDef, ast.Lambda)):
            if isinstance(node, ast.FunctionDef) and node.decorator_list:
                return False
            if not _defaults_ok(node.args) or not _function_ok(node, module_names, scope, local):
                return False
            continue
        if _dunder(node):
            return False
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            if node.id not in local and node.id not in module_names and node.id not in BUILTINS:
                return False
            if node.id in scope and scope[node.id][1] is None and id(node) not in owners:
                return False  # a module as a value: its attributes would escape the lists
        if isinstance(node, ast.Attribute):
            if node.attr.startswith(("_",) + FRAMES) or isinstance(node.ctx, (ast.Store, ast.Del)):
                return False
            owner = node.value.id if isinstance(node.value, ast.Name) else None
            if owner in scope and scope[owner][1] is None:  # a module's attribute: from its list only
                allowed = MODULES[scope[owner][0]]
                if allowed is not None and node.attr not in allowed:
                    return False
                owners.add(id(node.value))
        if isinstance(node, ast.Subscript) and isinstance(node.ctx, (ast.Store, ast.Del)):
            if _base(node) not in writable:
                return False
        stack.extend(ast.iter_child_nodes(node))
    return True
