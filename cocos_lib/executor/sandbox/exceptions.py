"""The candidate's exceptions as the judge sees them, and the two the judge raises itself.

A candidate exception comes back (child.exc_info) as an exception of the most derived class of
its MRO the judge has too (a stdlib class of a module the judge imported, e.g.
json.JSONDecodeError, or the builtin one), under the candidate's class name, with its args, its
plain attributes, and str() = the candidate's message: `except json.JSONDecodeError` catches it,
`except Exception` does not catch a SystemExit. A candidate process that ends mid-test makes the
call raise CandidateEnded, which no `except` of the test can turn into a pass: the test is an
"error" whatever it catches (as when a real process ends). Untrustable: the test handed the
candidate something that is not plain data (the test falls back, judge.py).
"""
import builtins, sys

_SKIP_MODULES = ("sandbox", "__candidate__", "__main__", "candidate")


class Untrustable(BaseException):
    """The test passed the candidate something that is not plain data (not an Exception: a
    test's `except Exception` must not swallow it)."""


class CandidateEnded(BaseException):
    """The candidate's process ended (or sent garbage) while the test waited for it (a
    BaseException, as a process's end is nothing a test can catch; the verdict says "error"
    even if the test catches it)."""


def describe(exc):
    """First line of an exception as 'Type: message', at most 300 characters."""
    given = getattr(exc, "_cocos_text", None)
    if type(given) is str:
        return given
    try:
        text = str(exc).strip()
        line = f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__
        return line[:300]
    except BaseException:
        return "exception (unprintable)"


def _candidate_str(self):
    return self._cocos_message


def _resolve(mro):
    """The most derived exception class in the candidate's MRO [(module, qualname), ...] that
    exists here: a builtin, or a class of a module the judge has imported (never the judge's own)."""
    if type(mro) is not tuple:
        return BaseException
    for item in mro:
        if type(item) is not tuple or len(item) != 2 or not all(type(x) is str for x in item):
            continue
        mod, qual = item
        if mod.startswith(_SKIP_MODULES) or "<" in qual or mod not in sys.modules:
            continue
        obj = sys.modules[mod]
        for part in qual.split("."):
            obj = getattr(obj, part, None)
        if isinstance(obj, type) and issubclass(obj, BaseException) and obj not in (Untrustable, CandidateEnded):
            return obj
    return BaseException


_classes = {}


def candidate_exception(info):
    """A judge-side exception standing for the candidate's (info: see child.exc_info)."""
    name, base, text, mro, message, args, attrs = info
    cls = _resolve(mro)
    if cls is BaseException:
        got = getattr(builtins, base, None)
        cls = got if isinstance(got, type) and issubclass(got, BaseException) else BaseException
    name = name if name.isidentifier() and len(name) <= 100 else cls.__name__
    key = (name, cls)
    sub = _classes.get(key)
    if sub is None:
        if len(_classes) > 1024:
            _classes.clear()
        sub = _classes[key] = type(name, (cls,), {"__module__": cls.__module__, "__str__": _candidate_str})
    args = args if type(args) is tuple else (message,)
    try:
        exc = sub(*args)
    except Exception:
        exc = sub.__new__(sub)
        exc.args = args
    for k, v in (attrs.items() if type(attrs) is dict else ()):
        try:
            setattr(exc, k, v)
        except Exception:
            pass
    exc._cocos_message = message
    exc._cocos_text = text[:300]
    return exc

