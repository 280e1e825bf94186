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
  and the headers the source includes; the batch library is ``tgb_<hash>.so`` (or
  ``tgb_<hash>.txt``, why there is none). Delete the directory to clear it. With GCC it also
  holds ``pch_<hash>/``, those headers precompiled (built by the first compile).
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import os
import re
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


# The batch code's: the lanes' own (CMakeLists.txt), plus -mavx2 where the lanes run AVX2,
# so the loop takes the SIMD forms of the lanes' math calls. A sin and a cos of one value
# would become one sincos call, which does not vectorise (hence no sin or cos builtins),
# and code sinking (moving calls into the branches of the reverse's selects) and jump
# threading (duplicating those branches) leave control flow the vectoriser cannot take
# either. GCC reports each loop it vectorised (-fopt-info-vec-optimized).
BATCH_FLAGS = ("-std=c++17", "-O3", "-fno-fast-math", "-ffp-contract=off", "-fno-math-errno",
               "-fno-trapping-math", "-fopenmp-simd", "-fno-builtin-sin", "-fno-builtin-cos",
               "-fno-tree-sink", "-fno-thread-jumps", "-fPIC", "-shared",
               "-fopt-info-vec-optimized")
# Bytes per vector of the lanes' loops, per lane set.
_VECTOR_BYTES = {"avx2": 32, "baseline": 16}
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
    # The batch library (plain batched values and gradients), or None and why not.
    batch_library: str | None = None
    batch_note: str = ""
    batch_asked: bool = True  # compile(batch=...)


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


def _key(source: str, cmd: list[str], exe: str, inc: str,
         compile_flags: tuple[str, ...]) -> str:
    if inc not in _HEADER_DIGEST:
        h = hashlib.sha256()
        for name in HEADERS:
            with open(os.path.join(inc, "tapegrad", name), "rb") as f:
                h.update(f.read())
        _HEADER_DIGEST[inc] = h.hexdigest()
    st = os.stat(exe)
    h = hashlib.sha256()
    for part in (source, " ".join(cmd), exe, str(st.st_size), str(st.st_mtime_ns),
                 " ".join(compile_flags), _HEADER_DIGEST[inc]):
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
    key = _key("precompiled headers", cmd, exe, inc, flags(True))
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


def build(program: Any, reassociate: bool = False,
          batch: bool = True) -> tuple[Any, NativeCode]:
    """A Program running native code for ``program`` (``reassociate``: loops' sums added
    in partial sums; ``batch``: batch code too; see ``Function.compile``), and what was
    built (or found in the cache). Raises CompileError when no compiler is found or the
    build fails."""
    t0 = time.perf_counter()
    cmd = compiler()
    if cmd is None:
        raise CompileError("F.compile(): no C++ compiler found (looked for $TAPEGRAD_CXX, "
                           "$CXX, c++, g++, clang++). Install one, or call "
                           "F.compile(fallback=True) to run the interpreter instead")
    exe = _executable(cmd)
    inc = include_dir()
    source, stats = _core.native_source(program, reassociate)
    key = _key(source, cmd, exe, inc, flags(_is_gcc(cmd, exe)))
    directory = cache_dir()
    os.makedirs(directory, exist_ok=True)
    suffix = ".dll" if sys.platform == "win32" else ".so"
    library = os.path.join(directory, f"tg_{key}{suffix}")
    source_path = os.path.join(directory, f"tg_{key}.cpp")
    cached = os.path.isfile(library)
    # The batch library builds on another thread meanwhile (the compiler runs outside the
    # GIL), so the two compiles overlap where there are two cores.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = (pool.submit(_batch_library, program, cmd, exe, inc, directory, suffix)
                   if batch else None)
        cached = _one_point_library(program, cmd, exe, inc, directory, source, source_path,
                                    library, cached)
        batch_library, note, batch_cached = (
            pending.result() if pending else (None, "not asked for: compile(batch=False)", True))
    built = batch_library
    try:
        native = _core.with_native(program, library, built)
    except (RuntimeError, ValueError) as err:
        if built is None or not batch_cached:
            raise CompileError(f"F.compile(): built {built} but cannot load it: {err}") from err
        os.remove(built)  # a damaged or foreign file: build it again
        built, note, batch_cached = _batch_library(program, cmd, exe, inc, directory, suffix)
        try:
            native = _core.with_native(program, library, built)
        except (RuntimeError, ValueError) as err2:
            raise CompileError(f"F.compile(): built {built} but cannot load it: {err2}") from err2
    info = NativeCode(library, source_path, stats["loops"], stats["looped_ops"],
                      stats["straight_ops"], time.perf_counter() - t0, cached and batch_cached,
                      reassociate, stats["sums_reassociated"], built, note, batch)
    return native, info


def _one_point_library(program: Any, cmd: list[str], exe: str, inc: str, directory: str,
                       source: str, source_path: str, library: str, cached: bool) -> bool:
    """Build the one-point library unless the cache holds a good one; whether it did."""
    if cached:
        try:
            _core.with_native(program, library)
            return True
        except (RuntimeError, ValueError):  # a damaged or foreign file: build it again
            pass
    pch = _precompiled_headers(cmd, exe, inc, directory)
    _compile(cmd, [pch, inc] if pch else [inc], source, source_path, library,
             flags(_is_gcc(cmd, exe)))
    try:
        _core.with_native(program, library)
    except (RuntimeError, ValueError) as err:
        raise CompileError(f"F.compile(): built {library} but cannot load it: {err}") from err
    return False


def _batch_library(program: Any, cmd: list[str], exe: str, inc: str, directory: str,
                   suffix: str) -> tuple[str | None, str, bool]:
    """The batch library for ``program`` (built, or found in the cache) or None and why
    not, and whether no compiler ran. A library is kept only where GCC reported every loop
    of it vectorised with the lanes' vector width: a loop it did not vectorise would call
    scalar libm where the lanes call SIMD forms, so the bits could differ."""
    isa = _core.lanes()
    if isa not in _VECTOR_BYTES:
        return None, f"no batch code for lanes {isa!r}", True
    if sys.platform == "win32" or not _is_gcc(cmd, exe):
        return None, "batch code needs GCC (its vector function ABI and reports)", True
    source, why = _core.native_batch_source(program, isa)
    if source is None:
        return None, why, True
    batch_flags = BATCH_FLAGS + (("-mavx2",) if isa == "avx2" else ())
    key = _key(source, cmd, exe, inc, batch_flags)
    library = os.path.join(directory, f"tgb_{key}{suffix}")
    refused = os.path.join(directory, f"tgb_{key}.txt")
    if os.path.isfile(library):
        return library, "", True
    if os.path.isfile(refused):
        with open(refused, encoding="utf-8") as f:
            return None, f.read().strip(), True
    try:
        report = _compile(cmd, [inc], source, os.path.join(directory, f"tgb_{key}.cpp"),
                          library, batch_flags)
    except CompileError as err:  # the one-point code may still build: batches interpreted
        return None, "the batch code did not build: " + str(err).splitlines()[-1].strip(), False
    lines = source.splitlines()
    starts = [k + 1 for k, line in enumerate(lines) if "// tg simd loop" in line]
    done = [(int(m.group(1)), int(m.group(2))) for m in
            re.finditer(r":(\d+):\d+: optimized: loop vectorized using (\d+) byte vectors", report)]
    ends = starts[1:] + [len(lines) + 1]
    missed = [a for a, b in zip(starts, ends)
              if not any(a <= line < b and width == _VECTOR_BYTES[isa] for line, width in done)]
    if missed:
        note = (f"the compiler did not vectorise the batch loop ({len(missed)} of "
                f"{len(starts)}), so its math would not be the lanes'")
        os.remove(library)
        with open(refused, "w", encoding="utf-8") as f:
            f.write(note + "\n")
        return None, note, False
    return library, "", False


def _compile(cmd: list[str], includes: list[str], source: str, source_path: str,
             library: str, compile_flags: tuple[str, ...]) -> str:
    """Build library from source (kept at source_path); the compiler's messages."""
    directory = os.path.dirname(library)
    fd, tmp_src = tempfile.mkstemp(suffix=".cpp", dir=directory, prefix=".tg_")
    with os.fdopen(fd, "w") as f:
        f.write(source)
    tmp_lib = tmp_src[:-4] + os.path.splitext(library)[1]
    args = [*cmd, *compile_flags, *(a for d in includes for a in ("-I", d)), tmp_src, "-o",
            tmp_lib]
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
        return done.stderr + done.stdout
    finally:
        for p in (tmp_src, tmp_lib):
            if os.path.exists(p):
                os.remove(p)
