"""The .pxd of each Cython-compiled module, generated from its .py at build time (setup.py),
so that a class's annotations in the .py are its one declaration.

Cython compiles a .py in pure-Python mode as it is; what makes a class an extension type (C
struct fields, C method calls, typed access from the other compiled modules) is an
augmenting .pxd beside it. Written by hand it would be a second place to edit for every field;
here it is derived:

- a top-level class whose body annotates its attributes (`key: object`,
  `retransmissions: cython.int`) and has `__slots__` (kept for the interpreted run, listing
  exactly those names) becomes `cdef class` with a `cdef public TYPE name` for each;
- its methods become `cpdef` (public names) or `cdef` (`_private` names: C calls only,
  invisible from Python once compiled); properties, static/class methods and dunders stay
  Python methods. Types (of fields and of arguments) come from the annotations: `cython.int`
  -> `int` (and the other C types of TYPES), a compiled class (`txn: Transaction`,
  `Call | None`) -> that type, `str`/`dict`/`tuple`... -> the same, a name Cython treats as a
  Python object (none, `object`, `X | None`, a class it does not know, such as `SipHead`) ->
  object (untyped). `int`, `float` and `bool` have no .pxd spelling of what Cython makes of
  them (a checked Python int, a C double, ...): the generator stops on them, naming the line,
  rather than emit a declaration Cython rejects or that changes what None does;
- `from .x import A` of a compiled class of a sibling compiled module -> `from pkg.x cimport A`;
- a top-level `NAME: cython.Py_ssize_t = value` (any C type of TYPES) -> `cdef Py_ssize_t NAME`,
  a C global: a tuple index read from it is a C index, not a module-dict lookup and a Python
  int converted at each use.
- a top-level function decorated `@cython.ccall` -> `cpdef RTYPE name(ARGS)` (argument types as
  for methods; the return type a cython.* C type or a builtin of OBJECT_TYPES, else object),
  and `from .x import f` of such a function of a sibling compiled module -> `from pkg.x cimport
  f`: a C call across modules instead of a Python call with its arguments boxed.

Generated files are build products (.gitignore), never edited.

    python native/pxdgen.py sip_dissect/transaction.py ...   # prints them, for a look
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

# cython.X annotations and what they are called in a .pxd
TYPES = {"int": "int", "long": "long", "longlong": "long long", "double": "double",
         "float": "float", "bint": "bint", "Py_ssize_t": "Py_ssize_t", "size_t": "size_t",
         "uint": "unsigned int", "ulong": "unsigned long", "void": "void"}
# types a .pxd can name as Cython does in the .py
OBJECT_TYPES = {"object": "object", "dict": "dict", "list": "list", "tuple": "tuple",
                "set": "set", "str": "str", "bytes": "bytes"}
# builtins Cython maps to something of its own when they annotate an argument
REFUSED = {"int", "float", "bool", "complex"}


class PxdError(Exception):
    pass


def _module_of(path: Path, root: Path) -> str:
    return ".".join(path.relative_to(root).with_suffix("").parts)


def _annotation(node: ast.expr | None) -> ast.expr | None:
    """The annotation as an expression; `from __future__ import annotations` keeps them as
    code, and a quoted one is parsed."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return ast.parse(node.value, mode="eval").body
    return node


def _without_none(node: ast.expr) -> ast.expr | None:
    """`X | None` -> X; None when the union has more than X."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        parts = [node.left, node.right]
        rest = [p for p in parts if not (isinstance(p, ast.Constant) and p.value is None)]
        return rest[0] if len(rest) == 1 else None
    return node


class Generator:
    def __init__(self, root: Path, modules: list[str]):
        self.root = root
        self.modules = modules
        self.trees = {m: ast.parse(self.path(m).read_text(), str(self.path(m))) for m in modules}
        # first pass: which classes become extension types, module by module
        self.cclasses = {m: {c.name for c in self._classes(t)} for m, t in self.trees.items()}
        # and which top-level functions are cpdef (@cython.ccall)
        self.cfunctions = {m: {f.name for f in self._ccalls(t)} for m, t in self.trees.items()}

    def path(self, module: str) -> Path:
        return self.root.joinpath(*module.split(".")).with_suffix(".py")

    @staticmethod
    def _classes(tree: ast.Module) -> list[ast.ClassDef]:
        """Classes that become extension types: __slots__ and annotated fields (a dataclass,
        say, has no __slots__ and stays a Python class)."""
        return [n for n in tree.body if isinstance(n, ast.ClassDef)
                and any(isinstance(s, ast.AnnAssign) for s in n.body)
                and any(isinstance(s, ast.Assign) and any(getattr(t, "id", "") == "__slots__"
                                                          for t in s.targets) for s in n.body)]

    @staticmethod
    def _ccalls(tree: ast.Module) -> list[ast.FunctionDef]:
        """Top-level functions decorated @cython.ccall (cpdef)."""
        return [n for n in tree.body if isinstance(n, ast.FunctionDef)
                and "cython.ccall" in {ast.unparse(d) for d in n.decorator_list}]

    def _imported_functions(self, module: str) -> dict[str, list[str]]:
        """cpdef functions of sibling compiled modules that `module` imports, by module."""
        out: dict[str, list[str]] = {}
        package = module.rpartition(".")[0]
        for node in self.trees[module].body:
            if isinstance(node, ast.ImportFrom):
                source = self._resolve(package, node)
                for alias in node.names:
                    if alias.asname is None and alias.name in self.cfunctions.get(source, ()):
                        out.setdefault(source, []).append(alias.name)
        return out

    def fail(self, module: str, node: ast.AST, why: str) -> PxdError:
        return PxdError(f"{self.path(module)}:{node.lineno}: {why}")

    def _known(self, module: str) -> dict[str, str]:
        """Names of compiled classes visible in `module`: its own and those it imports."""
        known = {c: module for c in self.cclasses[module]}
        package = module.rpartition(".")[0]
        for node in self.trees[module].body:
            if isinstance(node, ast.ImportFrom):
                source = self._resolve(package, node)
                for alias in node.names:
                    if alias.name in self.cclasses.get(source, ()):
                        known[alias.asname or alias.name] = source
        return known

    @staticmethod
    def _resolve(package: str, node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        base = package.split(".") if package else []
        base = base[:len(base) - (node.level - 1)] if node.level > 1 else base
        return ".".join(base + ([node.module] if node.module else []))

    def _type(self, module: str, node: ast.expr | None, known: dict[str, str], *,
              attribute: bool) -> str:
        """The .pxd type of an annotation; "" for an untyped argument."""
        node = _annotation(node)
        if node is None:
            return "object" if attribute else ""
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id == "cython":
            if node.attr not in TYPES:
                raise self.fail(module, node, f"cython.{node.attr}: no .pxd type for it in "
                                "native/pxdgen.py TYPES")
            return TYPES[node.attr]
        inner = _without_none(node)
        if isinstance(inner, ast.Name):
            if inner.id in known:
                return inner.id
            if inner.id in REFUSED and inner is node:  # `int | None` is an object
                raise self.fail(module, node, f"`{ast.unparse(node)}`: Cython gives it a type "
                                "of its own that a .pxd cannot spell; use a cython.* C type "
                                "(None never occurs), or object / no annotation")
            if inner is node and inner.id in OBJECT_TYPES:
                return OBJECT_TYPES[inner.id]
        if attribute:
            return "object"
        return ""  # X | None of a plain class, generics, names Cython does not know: objects

    def _method(self, module: str, fn: ast.FunctionDef, known: dict[str, str]) -> str | None:
        decorators = {ast.unparse(d) for d in fn.decorator_list}
        if fn.name.startswith("__") or decorators & {"property", "staticmethod", "classmethod"} \
                or any(d.endswith((".setter", ".deleter")) for d in decorators):
            return None
        a = fn.args
        if a.vararg or a.kwarg or a.posonlyargs:
            raise self.fail(module, fn, f"{fn.name}: *args, **kwargs and / have no cpdef form")
        params = a.args + a.kwonlyargs
        defaults = [None] * (len(a.args) - len(a.defaults)) + list(a.defaults) + list(a.kw_defaults)
        out = []
        for i, (arg, default) in enumerate(zip(params, defaults)):
            if i == 0:
                out.append(arg.arg)  # self
                continue
            if arg in a.kwonlyargs and arg is a.kwonlyargs[0]:
                out.append("*")
            t = self._type(module, arg.annotation, known, attribute=False)
            out.append((f"{t} " if t else "") + arg.arg + ("=*" if default is not None else ""))
        kind = "cdef" if fn.name.startswith("_") else "cpdef"
        rtype = self._return_type(module, fn, known)
        return f"    {kind} {rtype}{fn.name}({', '.join(out)})"

    def _return_type(self, module: str, fn: ast.FunctionDef, known: dict[str, str],
                     objects: bool = False) -> str:
        """`fn`'s C return type and a space, from a `cython.*` annotation (and, with
        `objects`, a builtin type's name); '' for an object."""
        ret = _annotation(fn.returns)
        if isinstance(ret, ast.Attribute) and isinstance(ret.value, ast.Name) \
                and ret.value.id == "cython":
            return self._type(module, ret, known, attribute=False) + " "
        if objects and isinstance(ret, ast.Name) and ret.id in OBJECT_TYPES:
            return OBJECT_TYPES[ret.id] + " "
        return ""

    def _function(self, module: str, fn: ast.FunctionDef, known: dict[str, str]) -> str:
        """The cpdef declaration of a top-level @cython.ccall function."""
        a = fn.args
        if a.vararg or a.kwarg or a.posonlyargs or a.kwonlyargs:
            raise self.fail(module, fn, f"{fn.name}: *args, **kwargs, / and * have no cpdef "
                            "form here")
        defaults = [None] * (len(a.args) - len(a.defaults)) + list(a.defaults)
        out = []
        for arg, default in zip(a.args, defaults):
            t = self._type(module, arg.annotation, known, attribute=False)
            out.append((f"{t} " if t else "") + arg.arg + ("=*" if default is not None else ""))
        rtype = self._return_type(module, fn, known, objects=True)
        return f"cpdef {rtype}{fn.name}({', '.join(out)})"

    def pxd(self, module: str) -> str:
        known = self._known(module)
        lines = [f"# generated from {self.path(module).relative_to(self.root)} by "
                 "native/pxdgen.py at build time: edit the .py"]
        cimports: dict[str, list[str]] = {}
        for name, source in known.items():
            if source != module:
                cimports.setdefault(source, []).append(name)
        for source, names in self._imported_functions(module).items():
            cimports.setdefault(source, []).extend(names)
        for source, names in cimports.items():
            lines.append(f"from {source} cimport {', '.join(names)}")
        for stmt in self.trees[module].body:
            # `NAME: cython.Py_ssize_t = ...` at top level: a C global (without the .pxd
            # Cython keeps it a Python object, looked up in the module dict at each use)
            if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                ann = _annotation(stmt.annotation)
                if isinstance(ann, ast.Attribute) and getattr(ann.value, "id", "") == "cython":
                    t = self._type(module, ann, known, attribute=True)
                    lines.append(f"cdef {t} {stmt.target.id}")
        for fn in self._ccalls(self.trees[module]):
            lines.append(self._function(module, fn, known))
        for cls in self._classes(self.trees[module]):
            lines += ["", f"cdef class {cls.name}:"]
            fields, slots = [], None
            for stmt in cls.body:
                if isinstance(stmt, ast.AnnAssign):
                    if not isinstance(stmt.target, ast.Name) or stmt.value is not None:
                        raise self.fail(module, stmt, "class-level annotations declare fields: "
                                        "a bare `name: type`, the value set in __init__")
                    fields.append(stmt.target.id)
                    t = self._type(module, stmt.annotation, known, attribute=True)
                    lines.append(f"    cdef public {t} {stmt.target.id}")
                elif isinstance(stmt, ast.Assign) and any(
                        isinstance(t, ast.Name) and t.id == "__slots__" for t in stmt.targets):
                    slots = ast.literal_eval(stmt.value)
            if slots is None or list(slots) != fields:
                raise self.fail(module, cls, f"{cls.name}.__slots__ must list the annotated "
                                f"fields, in order: {tuple(fields)}")
            for stmt in cls.body:
                if isinstance(stmt, ast.FunctionDef):
                    decl = self._method(module, stmt, known)
                    if decl is not None:
                        lines.append(decl)
        return "\n".join(lines) + "\n"

    def write(self) -> list[Path]:
        """Write each module's .pxd beside it, only when its text changes (a rewrite would
        make Cython recompile everything that cimports it)."""
        written = []
        for module in self.modules:
            target = self.path(module).with_suffix(".pxd")
            text = self.pxd(module)
            if not target.exists() or target.read_text() != text:
                target.write_text(text)
            written.append(target)
        return written


def generate(root: Path, modules: list[str]) -> list[Path]:
    return Generator(Path(root), list(modules)).write()


if __name__ == "__main__":
    here = Path.cwd()
    paths = [Path(p).resolve() for p in sys.argv[1:]]
    gen = Generator(here, [_module_of(p, here) for p in paths])
    for m in gen.modules:
        print(f"## {m}\n{gen.pxd(m)}")
