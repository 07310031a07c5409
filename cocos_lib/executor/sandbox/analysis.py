"""A static look at a test before the judge runs it (in W, trusted; cached by source).

Per test a Plan:
  code      the compiled statement, or the SyntaxError (that test errors alone)
  free      the names it reads and never binds, in any scope: builtins, names setup defines,
            or names the candidate must define (the judge tells which once setup ran)
  values    of those, the ones also read as a value, not only called (`X == 1`,
            `sorted(key=f)`): the judge fetches those from the candidate when first read
  touched   free names the test reaches into: `NAME.attr` (read, call or assignment),
            `NAME[k] = v`, `del NAME[k]`, `NAME += ...`; a candidate's object used this way may
            be changed by the test (`X.append(1)`, `math.pi = 3`), which a copy in the judge
            would not show the candidate
  gives     free names the test calls with a function as an argument (a lambda, a generator
            expression, a builtin function: `apply(lambda v: v, 1)`, `f(abs, -3)`): data the
            judge cannot send, known from the text before the test runs
  local_ok  False when the test changes or inspects state the judge cannot stand in for:
            assigning or deleting an attribute (`math.pi = 3`, `builtins.len = f`),
            `global` / `nonlocal`, a namespace or code-from-text builtin (globals, locals,
            vars, dir, eval, exec, compile, __import__, breakpoint)
The judge runs a test itself ("trusted") when local_ok and no name in `touched` or `gives` is
the candidate's, and the test reads no builtin the program's text defines a function or class
of (but the task's entry point): the candidate's names are only called with data (`f(x)`) or read whole
(`X == 1`, `sorted(xs, key=f)`); any other test runs inside the candidate as before
("untrusted", TestReport.trusted says so). The texts decide this, never what the candidate
returns (at run time only a non-plain value the test itself built, `f(iter(xs))`, still sends
a test there).
"""
import ast, builtins

# builtin functions a test may hand the candidate (not data); the plain types travel (codec.TYPES)
CALLABLE_BUILTINS = frozenset(n for n in dir(builtins) if callable(getattr(builtins, n))) - {
    "int", "float", "complex", "str", "bytes", "bool", "list", "tuple", "dict", "set", "frozenset"}
INTROSPECTION = frozenset({"globals", "locals", "vars", "dir", "eval", "exec", "compile", "__import__", "breakpoint"})
CACHE_MAX = 16384
_plans = {}
_setups = {}
_codes = {}
_defs = {}


class Plan:
    __slots__ = ("code", "free", "values", "touched", "local_ok", "gives")

    def __init__(self, code, free=frozenset(), values=frozenset(), touched=frozenset(), local_ok=True,
                 gives=frozenset()):
        self.code = code
        self.free = free
        self.values = values
        self.touched = touched
        self.local_ok = local_ok
        self.gives = gives


_BINDS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_IMPORTS = (ast.Import, ast.ImportFrom)
_NAMED = (ast.ExceptHandler, ast.MatchAs, ast.MatchStar)
_CODE = (ast.Lambda, ast.GeneratorExp)


def _scan(tree):
    """(free names, names read as values, names reached into, local_ok) of a parsed module.
    One breadth-first walk: a node's parent comes before it, so a Call is seen before its
    func and an AugAssign before its target."""
    called, augmented = set(), set()
    bound, loads, values, touched, gives = set(), set(), set(), set(), set()
    ok = True
    Name, Load, Call, Attribute, Subscript = ast.Name, ast.Load, ast.Call, ast.Attribute, ast.Subscript
    for n in ast.walk(tree):
        t = type(n)
        if t is Name:
            if type(n.ctx) is Load or id(n) in augmented:
                loads.add(n.id)
                if id(n) not in called:
                    values.add(n.id)
                if id(n) in augmented:
                    touched.add(n.id)
            else:
                bound.add(n.id)
        elif t is Call:
            if type(n.func) is Name:
                called.add(id(n.func))
                if any(type(a) in _CODE or (type(a) is Name and a.id in CALLABLE_BUILTINS)
                       for a in n.args + [k.value for k in n.keywords]):
                    gives.add(n.func.id)
        elif t is Attribute:
            if type(n.ctx) is not Load:
                ok = False
            if type(n.value) is Name:
                touched.add(n.value.id)
        elif t is ast.AugAssign:
            augmented.add(id(n.target))
        elif t is ast.arg:
            bound.add(n.arg)
        elif t is Subscript:
            if type(n.ctx) is not Load:
                base = n.value
                while type(base) in (Subscript, Attribute):
                    base = base.value
                if type(base) is Name:
                    touched.add(base.id)
        elif t in _BINDS:
            bound.add(n.name)
        elif t in _IMPORTS:
            bound.update((a.asname or a.name).split(".")[0] for a in n.names if a.name != "*")
        elif t in _NAMED:
            if n.name:
                bound.add(n.name)
        elif t is ast.MatchMapping:
            if n.rest:
                bound.add(n.rest)
        elif t is ast.Global or t is ast.Nonlocal:
            ok = False
    free = loads - bound
    if free & INTROSPECTION:
        ok = False
    return frozenset(free), frozenset(values & free), frozenset(touched & free), ok, frozenset(gives & free)


def _cached(cache, key, make):
    """cache[key], made by make() on a miss; a full cache (CACHE_MAX entries) is emptied first."""
    got = cache.get(key)
    if got is None:
        if len(cache) >= CACHE_MAX:
            cache.clear()
        got = cache[key] = make()
    return got


def plan(source, index):
    """The Plan of test `index` (its source); compile errors are kept, not raised."""
    def make():
        try:
            tree = ast.parse(source, f"<test {index}>")
            return Plan(compile(tree, f"<test {index}>", "exec"), *_scan(tree))
        except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
            return Plan(e)
    return _cached(_plans, (index, source), make)


def setup_code(source):
    """The compiled setup (cached); a compile error is raised when it runs, as in the program."""
    def make():
        try:
            return compile(source, "<setup>", "exec")
        except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
            return compile(f"raise {type(e).__name__}({str(e)!r})", "<setup>", "exec")
    return _cached(_codes, source, make)


def top_level(source):
    """(names a program binds at its top level by def or class, by assignment, {name: module}
    of its top-level `import m` / `import m as name`). Cached; empty if it does not parse. The
    judge imports such a module itself (the same module a fresh interpreter gives): a test's
    `math.isclose(...)` on the program's `import math` is judged, not run inside the candidate."""
    return _cached(_defs, source, lambda: _top_level(source))


def _top_level(source):
    """top_level, uncached."""
    names, assigned, modules = set(), set(), {}
    try:
        body = ast.parse(source).body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        body = []
    for n in body:
        if type(n) in _BINDS:
            names.add(n.name)
        elif type(n) in (ast.Assign, ast.AugAssign, ast.AnnAssign):
            for target in (n.targets if type(n) is ast.Assign else [n.target]):
                assigned.update(x.id for x in ast.walk(target) if type(x) is ast.Name and type(x.ctx) is ast.Store)
        elif type(n) is ast.Import:
            for a in n.names:
                if a.asname:
                    modules[a.asname] = a.name
                else:
                    modules[a.name.split(".")[0]] = a.name.split(".")[0]
    return frozenset(names), frozenset(assigned), modules


def setup_reads(source):
    """Names setup reads but does not bind (what its functions may look up at call time)."""
    def make():
        try:
            return _scan(ast.parse(source))[0]
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            return frozenset()
    return _cached(_setups, source, make)
