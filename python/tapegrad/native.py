"""Native code for a traced Function: ``F.compile()``.

The program's one-point forward and reverse sweeps are written out as C++
(``_core.native_source``: every op slot one call of the kernels the interpreter runs,
from the one op table, ops.def; every run of ``F.structure()`` a ``for`` loop), built
with the system's C++ compiler into a shared library, cached on disk by a hash of what
went into it, and loaded into the process. Values and gradients are bit for bit the
interpreter's: the same kernels on the same operands, every adjoint summed in the same
order, compiled without FMA contraction or reassociation.

Where things live:

- the compiler: ``$TAPEGRAD_CXX``, else ``$CXX``, else the first of ``c++``, ``g++``,
  ``clang++`` on ``PATH`` (a command line, split like a shell's);
- the cache: ``$TAPEGRAD_CACHE_DIR``, else ``$XDG_CACHE_HOME/tapegrad``, else
  ``~/.cache/tapegrad``; a library is ``tg_<hash>.so`` next to its source ``tg_<hash>.cpp``,
  the hash over the source, the compiler (its resolved path, size and mtime), the flags
  and the headers the source includes. Delete the directory to clear it. With GCC it also
  holds ``pch_<hash>/``, those headers precompiled (built by the first compile).
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

from . import _core

# -fno-trapping-math changes no value (nothing here reads the FP exception flags); it lets
# GCC vectorise a loop whose rules skip a zero adjoint (a select instead of a branch).
FLAGS = ("-std=c++17", "-O2", "-fno-fast-math", "-ffp-contract=off", "-fno-trapping-math",
         "-fPIC", "-shared")


# GCC at -O2 vectorises only loops it need not version or give an epilogue, and does not
# unswitch a loop on a loop-invariant adjoint (a sum's: codegen.cpp's contribution
# columns); neither option changes a value.
GCC_FLAGS = ("-fvect-cost-model=dynamic", "-funswitch-loops")


def flags(gcc: bool = True) -> tuple[str, ...]:
    """FLAGS (with GCC_FLAGS for GCC), and the vector instructions of this CPU's lanes
    (``_core.lanes()``): -mavx2 where it has AVX2. Never -mfma: a contraction would round
    once where the interpreter rounds twice. The generated code calls no vectorised libm,
    so its values are the same with or without; the flags are in the cache key, so a cache
    shared with a machine without AVX2 never hands it AVX2 code."""
    return (FLAGS + (GCC_FLAGS if gcc else ()) +
            (("-mavx2",) if _core.lanes() == "avx2" else ()))
# What the generated source includes (native_rules.hpp and what it includes in turn).
HEADERS = ("native_rules.hpp", "ops.hpp", "ops.def", "ops_math.def", "special.hpp")
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


class CompileError(RuntimeError):
    """``F.compile()`` could not build or load native code: no C++ compiler was found,
    or it failed (the message names the command and quotes its errors).

    Examples:
        >>> import os, tapegrad as tg
        >>> F = tg.trace(lambda x: x * x, 1.0)
        >>> os.environ["TAPEGRAD_CXX"] = "/nonexistent/c++"
        >>> try:
        ...     F.compile()
        ... except tg.CompileError as err:
        ...     print(str(err)[:52])
        F.compile(): C++ compiler '/nonexistent/c++' (from $
        >>> del os.environ["TAPEGRAD_CXX"]
    """


class CompileWarning(RuntimeWarning):
    """``F.compile(fallback=True)`` (and unpickling a compiled Function) could not build
    native code and returned a Function that runs the interpreter instead.

    Examples:
        >>> import os, warnings, tapegrad as tg
        >>> F = tg.trace(lambda x: x * x, 1.0)
        >>> os.environ["TAPEGRAD_CXX"] = "/nonexistent/c++"
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     G = F.compile(fallback=True)
        >>> del os.environ["TAPEGRAD_CXX"]
        >>> G is F, caught[0].category is tg.CompileWarning
        (True, True)
    """


@dataclasses.dataclass(frozen=True)
class NativeCode:
    """What ``F.compile()`` built: the library and its source, how much of the program
    runs as loops, and the seconds ``compile()`` took (``cached``: the library was on disk
    already, so no compiler ran)."""

    library: str
    source: str
    loops: int
    looped_ops: int
    straight_ops: int
    seconds: float
    cached: bool
    reassociate: bool = False  # compile(reassociate=True): loops' sums in partial sums
    sums_reassociated: int = 0


def include_dir() -> str:
    """The directory holding ``tapegrad/native_rules.hpp``: the wheel's
    ``tapegrad/include``, or the source tree's ``csrc``."""
    for d in (os.path.join(_PACKAGE_DIR, "include"),
              os.path.join(os.path.dirname(os.path.dirname(_PACKAGE_DIR)), "csrc")):
        if os.path.isfile(os.path.join(d, "tapegrad", "native_rules.hpp")):
            return d
    raise CompileError("F.compile(): the headers for native code (tapegrad/native_rules.hpp) "
                       "are missing from this installation")


def compiler() -> list[str] | None:
    """The compiler command (``$TAPEGRAD_CXX``, ``$CXX``, or c++/g++/clang++ on PATH), or
    None if there is none."""
    for var in ("TAPEGRAD_CXX", "CXX"):
        cmd = os.environ.get(var, "").strip()
        if cmd:
            return shlex.split(cmd)
    for name in ("c++", "g++", "clang++"):
        path = shutil.which(name)
        if path:
            return [path]
    return None


def cache_dir() -> str:
    """Where compiled libraries are kept (created on first use)."""
    d = os.environ.get("TAPEGRAD_CACHE_DIR")
    if not d:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        d = os.path.join(base, "tapegrad")
    return d


def _executable(cmd: list[str]) -> str:
    """The compiler's executable, resolved (raises CompileError if there is none)."""
    exe = shutil.which(cmd[0]) if cmd else None
    if exe is None:
        var = next((v for v in ("TAPEGRAD_CXX", "CXX") if os.environ.get(v, "").strip()), None)
        where = f" (from ${var})" if var else ""
        raise CompileError(f"F.compile(): C++ compiler {cmd[0] if cmd else ''!r}{where} not "
                           "found. Install one (g++ or clang++) or point $TAPEGRAD_CXX at it; "
                           "F.compile(fallback=True) runs the interpreter instead")
    return os.path.realpath(exe)


_HEADER_DIGEST: dict[str, str] = {}


def _key(source: str, cmd: list[str], exe: str, inc: str) -> str:
    if inc not in _HEADER_DIGEST:
        h = hashlib.sha256()
        for name in HEADERS:
            with open(os.path.join(inc, "tapegrad", name), "rb") as f:
                h.update(f.read())
        _HEADER_DIGEST[inc] = h.hexdigest()
    st = os.stat(exe)
    h = hashlib.sha256()
    for part in (source, " ".join(cmd), exe, str(st.st_size), str(st.st_mtime_ns),
                 " ".join(flags(_is_gcc(cmd, exe))), _HEADER_DIGEST[inc]):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:40]


_GCC: dict[str, bool] = {}


def _is_gcc(cmd: list[str], exe: str) -> bool:
    if exe not in _GCC:
        try:
            out = subprocess.run([*cmd, "--version"], capture_output=True, text=True, timeout=30)
            _GCC[exe] = "Free Software Foundation" in out.stdout and "clang" not in out.stdout
        except (OSError, subprocess.SubprocessError):
            _GCC[exe] = False
    return _GCC[exe]


def _precompiled_headers(cmd: list[str], exe: str, inc: str, directory: str) -> str | None:
    """A directory holding ``tapegrad/native_rules.hpp.gch``, GCC's precompiled form of
    what every generated source includes, built on first use (about 0.3 s) and kept in the
    cache, or None (not GCC, Windows, or the build failed). Parsing those headers, <cmath>
    mostly, took 0.15 s of every compile; loading the PCH takes about 0.05 s. GCC checks a
    PCH against its own version and the flags, and where it does not fit (or is damaged)
    it reads the headers instead, so the PCH changes how fast a build is, never what it
    builds."""
    if sys.platform == "win32" or not _is_gcc(cmd, exe):
        return None
    key = _key("precompiled headers", cmd, exe, inc)
    pch = os.path.join(directory, f"pch_{key}")
    if os.path.isdir(pch):
        return pch
    tmp = tempfile.mkdtemp(prefix=".pch_", dir=directory)
    try:
        gch = os.path.join(tmp, "tapegrad", "native_rules.hpp.gch")
        os.makedirs(os.path.dirname(gch))
        pch_flags = [f for f in flags(True) if f != "-shared"]
        header = os.path.join(inc, "tapegrad", "native_rules.hpp")
        done = subprocess.run([*cmd, *pch_flags, "-x", "c++-header", "-I", inc, header, "-o",
                               gch], capture_output=True, text=True)
        if done.returncode != 0 or not os.path.isfile(gch):
            return None
        try:
            os.rename(tmp, pch)  # atomic; another process may have made it first
        except OSError:
            pass
        return pch if os.path.isdir(pch) else None
    except OSError:
        return None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def build(program: Any, reassociate: bool = False) -> tuple[Any, NativeCode]:
    """A Program running native code for ``program`` (``reassociate``: loops' sums added
    in partial sums, see ``Function.compile``), and what was built (or found in the
    cache). Raises CompileError when no compiler is found or the build fails."""
    t0 = time.perf_counter()
    cmd = compiler()
    if cmd is None:
        raise CompileError("F.compile(): no C++ compiler found (looked for $TAPEGRAD_CXX, "
                           "$CXX, c++, g++, clang++). Install one, or call "
                           "F.compile(fallback=True) to run the interpreter instead")
    exe = _executable(cmd)
    inc = include_dir()
    source, stats = _core.native_source(program, reassociate)
    key = _key(source, cmd, exe, inc)
    directory = cache_dir()
    os.makedirs(directory, exist_ok=True)
    suffix = ".dll" if sys.platform == "win32" else ".so"
    library = os.path.join(directory, f"tg_{key}{suffix}")
    source_path = os.path.join(directory, f"tg_{key}.cpp")
    cached = os.path.isfile(library)
    if cached:
        try:
            native = _core.with_native(program, library)
        except (RuntimeError, ValueError):  # a damaged or foreign file: build it again
            cached = False
    if not cached:
        pch = _precompiled_headers(cmd, exe, inc, directory)
        _compile(cmd, flags(_is_gcc(cmd, exe)), [pch, inc] if pch else [inc], source,
                 source_path, library)
        try:
            native = _core.with_native(program, library)
        except (RuntimeError, ValueError) as err:
            raise CompileError(f"F.compile(): built {library} but cannot load it: {err}") from err
    info = NativeCode(library, source_path, stats["loops"], stats["looped_ops"],
                      stats["straight_ops"], time.perf_counter() - t0, cached,
                      reassociate, stats["sums_reassociated"])
    return native, info


def _compile(cmd: list[str], fl: tuple[str, ...], includes: list[str], source: str,
             source_path: str, library: str) -> None:
    directory = os.path.dirname(library)
    fd, tmp_src = tempfile.mkstemp(suffix=".cpp", dir=directory, prefix=".tg_")
    with os.fdopen(fd, "w") as f:
        f.write(source)
    tmp_lib = tmp_src[:-4] + os.path.splitext(library)[1]
    args = [*cmd, *fl, *(a for d in includes for a in ("-I", d)), tmp_src, "-o", tmp_lib]
    try:
        try:
            done = subprocess.run(args, capture_output=True, text=True)
        except OSError as err:
            raise CompileError(f"F.compile(): cannot run {cmd[0]!r}: {err}") from err
        if done.returncode != 0 or not os.path.isfile(tmp_lib):
            tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-20:])
            raise CompileError(f"F.compile(): the compiler failed (exit {done.returncode}):\n"
                               f"  {shlex.join(args)}\n{tail}")
        os.replace(tmp_lib, library)  # atomic: a concurrent build writes the same bytes
        os.replace(tmp_src, source_path)
    finally:
        for p in (tmp_src, tmp_lib):
            if os.path.exists(p):
                os.remove(p)
