"""``{scfuse-methods}``: the table of registered methods, read from :func:`scfuse.tl.show_methods` at build time."""

from __future__ import annotations

from docutils import nodes
from docutils.parsers.rst import Directive


class MethodTable(Directive):
    """A table with one row per registered method and the columns of ``scfuse.tl.show_methods()``."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        import scfuse

        df = scfuse.tl.show_methods().reset_index()
        table = nodes.table()
        group = nodes.tgroup(cols=len(df.columns))
        table += group
        group.extend(nodes.colspec(colwidth=1) for _ in df.columns)
        head, body = nodes.thead(), nodes.tbody()
        group += head
        group += body

        def row(values) -> nodes.row:
            r = nodes.row()
            for v in values:
                entry = nodes.entry()
                entry += nodes.paragraph(text=str(v))
                r += entry
            return r

        head += row(df.columns)
        for values in df.itertuples(index=False):
            body += row(values)
        return [table]


def setup(app) -> dict:
    app.add_directive("scfuse-methods", MethodTable)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
