"""The examples in README.md and docs/ run, and so do the docstrings' examples.

Each Markdown file's ```python blocks run in order in one namespace (a page builds on its
earlier blocks), in a temporary directory. A block whose lines start with ``>>>`` runs as a
doctest, its printed output checked. A block that cannot run here (a cluster, a browser,
minutes of work) is preceded by ``<!-- skip: reason -->``; each one shows up as a skipped
test with its file, line and reason, and SKIPS below must list how many each file has, so
a new skip is a deliberate change. A failing block is reported as ``file:line`` and its
traceback points into the Markdown file's own lines.
"""
from __future__ import annotations

import doctest
import inspect
import re
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest

import tapegrad as tg

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

# file -> number of blocks marked <!-- skip: reason -->, each justified where it stands.
SKIPS = {"docs/dask.md": 1, "docs/sparse.md": 1}

FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
SKIP = re.compile(r"<!--\s*skip:\s*(?P<reason>.*?)\s*-->")
DOCTEST_FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the block's first code line
    code: str
    skip: str | None  # the reason, for a block marked skip

    @property
    def where(self) -> str:
        path = self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path.name
        return f"{path}:{self.line}"

    @property
    def is_doctest(self) -> bool:
        return any(line.lstrip().startswith(">>>") for line in self.code.splitlines())


def python_blocks(path: Path) -> list[Block]:
    """The ```python blocks of a Markdown file, with the skip marker before each, if any."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence = m["indent"], m["fence"]
        info = m["info"].strip().split()
        start = i + 1
        i = start
        while i < len(lines) and not (lines[i].strip() == fence
                                      or (lines[i].strip().startswith(fence)
                                          and set(lines[i].strip()) == {fence[0]})):
            i += 1
        if info and info[0] in ("python", "py", "pycon"):
            body = [ln[len(indent):] if ln.startswith(indent) else ln.lstrip()
                    for ln in lines[start:i]]
            prev = next((lines[k] for k in range(start - 2, -1, -1) if lines[k].strip()), "")
            marker = SKIP.search(prev)
            reason = marker["reason"] if marker else None
            if marker and not reason:
                raise ValueError(f"{path}:{start}: a skip marker needs a reason")
            blocks.append(Block(path, start + 1, "\n".join(body) + "\n", reason))
        i += 1
    return blocks


ALL_BLOCKS = [b for f in DOC_FILES for b in python_blocks(f)]


def run_block(block: Block, namespace: dict) -> None:
    """Run one block in ``namespace``; raise AssertionError naming file:line if it fails."""
    if block.is_doctest:
        test = doctest.DocTestParser().get_doctest(block.code, namespace, block.where,
                                                   str(block.path), block.line - 1)
        out: list[str] = []
        runner = doctest.DocTestRunner(optionflags=DOCTEST_FLAGS)
        result = runner.run(test, out=out.append, clear_globs=False)
        namespace.update(test.globs)  # DocTest runs in a copy; later blocks see its names
        if result.failed:
            raise AssertionError(f"{block.where}: doctest failed\n" + "".join(out))
        return
    # Blank lines in front, so tracebacks give the Markdown file's own line numbers.
    code = compile("\n" * (block.line - 1) + block.code, str(block.path), "exec")
    try:
        exec(code, namespace)
    except Exception:
        raise AssertionError(f"{block.where}: block failed\n{traceback.format_exc()}") from None


@pytest.fixture
def docs_env(tmp_path, monkeypatch):
    """A scratch directory (examples write files) and a non-interactive matplotlib."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    return tmp_path


@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_markdown_examples_run(path, docs_env):
    namespace = {"__name__": f"docs:{path.name}"}
    for block in python_blocks(path):
        if block.skip is None:
            run_block(block, namespace)


@pytest.mark.parametrize("block", [b for b in ALL_BLOCKS if b.skip],
                         ids=lambda b: b.where)
def test_skipped_block(block):
    pytest.skip(f"{block.where}: {block.skip}")


def test_skips_are_the_listed_ones():
    counts = {str(f.relative_to(ROOT)): sum(1 for b in python_blocks(f) if b.skip)
              for f in DOC_FILES}
    assert {f: n for f, n in counts.items() if n} == {f: n for f, n in SKIPS.items() if n}


def test_extractor_finds_blocks_markers_and_lines(tmp_path):
    text = ("Intro\n\n<!-- skip: needs a cluster -->\n```python\nboom()\n```\n\n"
            "- item\n\n    ```python\n    x = 1\n    ```\n\n"
            "```pycon\n>>> y = x + 1\n>>> y\n2\n```\n"
            "```bash\nnot python\n```\n")
    md = tmp_path / "page.md"
    md.write_text(text)
    blocks = python_blocks(md)
    assert [(b.line, b.skip, b.is_doctest) for b in blocks] == [
        (5, "needs a cluster", False), (11, None, False), (15, None, True)]
    assert blocks[1].code == "x = 1\n"
    ns: dict = {}
    run_block(blocks[1], ns)
    run_block(blocks[2], ns)
    assert ns["y"] == 2  # a doctest's names reach the blocks after it
    bad = Block(md, 3, "1 / 0\n", None)
    with pytest.raises(AssertionError, match=r"page.md:3: block failed[\s\S]*page.md\", line 3"):
        run_block(bad, ns)
    wrong = Block(md, 7, ">>> x + 1\n3\n", None)
    with pytest.raises(AssertionError, match="page.md:7: doctest failed"):
        run_block(wrong, ns)


# --- docstrings --------------------------------------------------------------------------

def _public_objects() -> dict[str, object]:
    """Every public name the API reference documents, by its dotted name."""
    objects: dict[str, object] = {}
    for module in (tg, tg.nn, tg.autograd, tg.dask, tg.optimize):
        for name in module.__all__:
            obj = getattr(module, name)
            if callable(obj):
                objects[f"{module.__name__}.{name}"] = obj
    for name, member in vars(tg.Function).items():
        if not name.startswith("_"):
            objects[f"tapegrad.Function.{name}"] = member
    return objects


PUBLIC = _public_objects()


def _doc(obj: object) -> str:
    return inspect.getdoc(obj.fget if isinstance(obj, property) else obj) or ""


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_public_name_has_a_docstring_with_an_example(name):
    doc = _doc(PUBLIC[name])
    assert doc, f"{name} has no docstring"
    if not isinstance(PUBLIC[name], property):
        assert ">>>" in doc, f"{name}'s docstring has no example (a >>> line)"


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_docstring_examples_run(name, docs_env):
    obj = PUBLIC[name]
    target = obj.fget if isinstance(obj, property) else obj
    finder = doctest.DocTestFinder(recurse=isinstance(target, type))
    tests = [t for t in finder.find(target, name, module=False, globs={}) if t.examples]
    runner = doctest.DocTestRunner(optionflags=DOCTEST_FLAGS)
    out: list[str] = []
    for t in tests:
        runner.run(t, out=out.append)
    assert runner.failures == 0, "".join(out)


# --- build hooks -------------------------------------------------------------------------

def _hooks():
    import importlib.util

    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs" / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tutorial_explain_page_is_the_seed_example():
    import json

    hooks = _hooks()
    html = hooks.seed_page()
    start = html.index('<script type="application/json" id="tg-data">')
    data = json.loads(html[html.index(">", start) + 1:html.index("</script>", start)])
    nodes = {n["name"]: n for n in data["nodes"]}
    # f = x*x + x*y at (3, 4): f = 21, x.grad = 3 + 3 + 4 = 10, y.grad = 3
    assert data["nodes"][data["root"]]["valueExact"] == "21.0"
    assert (nodes["x"]["gradExact"], nodes["y"]["gradExact"]) == ("10.0", "3.0")
    tutorial = (ROOT / "docs" / "tutorial.md").read_text(encoding="utf-8")
    page = hooks.EXPLAIN_PAGE
    assert page.startswith("tutorial/") and f'src="{page.split("/")[-1]}"' in tutorial


def test_op_table_page_lists_every_op_and_alias():
    hooks = _hooks()
    table = hooks.op_table()
    for name, arity in tg.ops():
        call = f"tg.{name}(x)" if arity == 1 else f"tg.{name}(x, y)"
        assert f"<td><code>{call}</code></td>" in table
    for alias, _ in tg.op_aliases():
        assert f"<code>tg.{alias}</code>" in table
    assert "x &gt; y" in table  # the rules' C++ text is escaped (maximum's comparison)
    page = (ROOT / "docs" / "reference" / "ops.md").read_text(encoding="utf-8")
    assert hooks.OP_TABLE_MARKER in page
