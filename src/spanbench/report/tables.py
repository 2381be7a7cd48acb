"""Tables whose figures are never cut: every Rich table of spanbench's reports goes through here."""

from __future__ import annotations

import io
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text

Cell = str | Text


def _plain(cell: Cell) -> str:
    return cell.plain if isinstance(cell, Text) else cell


def print_table(console: Console, title: str, headers: Sequence[str], rows: Sequence[Sequence[Cell]],
                *, labels: tuple[int, ...] = (0,), left: tuple[int, ...] = (0,), light: bool = False) -> None:
    """A table whose figures are never cut, whatever the console's width.

    Figures (every column but ``labels``) never wrap, shrink or turn into ``…``. When the table
    is wider than the console it is drawn with a lighter box, then split into several tables
    that each repeat the label columns; labels fold only where even that does not fit.
    A cell is a string or a Rich ``Text`` (for colour; never markup, as names come from
    foreign programs); one line each, so that "whole" can be checked on the rendered lines.
    ``light`` starts with the lighter box (``spanbench diff``'s look).
    """
    from rich import box

    width = console.width
    figures = [i for i in range(len(headers)) if i not in labels]

    def build(cols: list[int], style: box.Box, part_title: str) -> Table:
        compact = style is not box.HEAVY_HEAD
        table = Table(title=part_title or None, title_justify="left", box=style, pad_edge=not compact,
                      show_edge=not compact, collapse_padding=compact)
        for i in cols:
            cells = [_plain(row[i]) for row in rows]
            justify = "left" if i in left else "right"
            if i in labels:
                longest = max((len(c) for c in cells), default=1)
                table.add_column(headers[i], justify=justify, overflow="fold", min_width=min(longest, 8))
            else:  # never narrower than its widest figure; the header may wrap
                table.add_column(headers[i], justify=justify, no_wrap=True, overflow="fold",
                                 min_width=max((len(c) for c in cells), default=1))
        for row in rows:
            table.add_row(*(row[i] for i in cols))
        return table

    def fits(table: Table, cols: list[int]) -> bool:  # within the width, every cell whole
        lines = _render(table, width).splitlines()
        if any(len(line.rstrip()) > width for line in lines):
            return False
        return all(any(_plain(row[i]) in line for line in lines) for row in rows for i in cols)

    label_cols = [i for i in range(len(headers)) if i in labels]
    for style in (box.SIMPLE_HEAD,) if light else (box.HEAVY_HEAD, box.SIMPLE_HEAD):
        table = build(list(range(len(headers))), style, title)
        if fits(table, list(range(len(headers)))):
            console.print(table)
            return
    # Too wide even with a light box: split the figures over several tables.
    style = box.SIMPLE_HEAD
    groups: list[list[int]] = []
    for i in figures:
        if groups and fits(build(label_cols + groups[-1] + [i], style, title), label_cols + groups[-1] + [i]):
            groups[-1].append(i)
        else:
            groups.append([i])
    for n, group in enumerate(groups):
        cols = sorted(label_cols + group)
        part = title if n == 0 else f"{title} (continued)"
        if len(part) > width:
            # A part is printed unwrapped, and its title with it: a long title goes on lines of its own.
            console.print(Text(part, style="table.title"))
            part = ""
        # a part that still cannot fit (a very narrow console) is printed whole: the terminal wraps it
        console.print(build(cols, style, part), crop=False, overflow="ignore")


def _render(table: Table, width: int) -> str:
    probe = Console(file=io.StringIO(), width=width, color_system=None, highlight=False, legacy_windows=False)
    probe.print(table, crop=False)
    return probe.file.getvalue()  # type: ignore[attr-defined]
