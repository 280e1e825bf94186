"""mkdocs hooks: pages made at build time from the library itself, so they cannot go stale.

- ``tutorial/explain-seed.html``: ``tg.explain``'s page for the tutorial's first worked
  example, embedded in the tutorial as an iframe.
- ``<!-- op-table -->`` in reference/ops.md becomes the op table as ``ops.def`` writes it
  (``tapegrad._core.op_rules()``), with numpy's aliases.
"""
from __future__ import annotations

import html

EXPLAIN_PAGE = "tutorial/explain-seed.html"
OP_TABLE_MARKER = "<!-- op-table -->"


def seed_page() -> str:
    """tg.explain's page for f = x*x + x*y at x = 3, y = 4 (the tutorial's first example)."""
    import tapegrad as tg

    x, y = tg.Var(3.0), tg.Var(4.0)
    f = x * x + x * y
    return tg.explain(f, names={"x": x, "y": y})


def op_table() -> str:
    """The op table as an HTML table: call, numpy's names, forward value, local rules."""
    import tapegrad as tg

    aliases: dict[str, list[str]] = {}
    for alias, name in tg.op_aliases():
        aliases.setdefault(name, []).append(alias)

    def code(text: str) -> str:
        return f"<code>{html.escape(text)}</code>" if text else ""

    rows = []
    for rule in tg._core.op_rules():
        name = rule["name"]
        call = f"tg.{name}(x)" if rule["arity"] == 1 else f"tg.{name}(x, y)"
        rows.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in (
            code(call), " ".join(code(f"tg.{a}") for a in aliases.get(name, ())),
            code(rule["forward"]), code(rule["dx"]), code(rule["dy"]))) + "</tr>")
    head = "".join(f"<th>{h}</th>" for h in ("op", "numpy's name", "forward", "d/dx", "d/dy"))
    return (f'<table class="op-table"><thead><tr>{head}</tr></thead>\n<tbody>\n'
            + "\n".join(rows) + "\n</tbody></table>")


def on_files(files, config):
    from mkdocs.structure.files import File

    files.append(File.generated(config, EXPLAIN_PAGE, content=seed_page()))
    return files


def on_page_markdown(markdown, page, config, files):
    if OP_TABLE_MARKER in markdown:
        markdown = markdown.replace(OP_TABLE_MARKER, op_table())
    return markdown
