"""Escaping names that come from params and data (grid labels, students, subsets, models) for each output format,
in one place: `escape_latex`, `escape_markdown`, `escape_html` (the three table formats, `ESCAPE[fmt]`) and
`literal_figure_text` (matplotlib figures). Each makes any text inert: ``\\input{/etc/passwd}`` prints as those
characters in LaTeX, ``<script>`` as text in Markdown and HTML, a model named ``m$\\foo$`` as written in a figure.
Line breaks become spaces in tables (a newline would end a table row or a LaTeX comment)."""
from __future__ import annotations

import html
import re

_LINES = re.compile(r"[\r\n\u2028\u2029\x0b\x0c\x85]+")
_LATEX = {"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "$": r"\$", "&": r"\&", "%": r"\%", "#": r"\#",
          "_": r"\_", "^": r"\textasciicircum{}", "~": r"\textasciitilde{}", "<": r"\textless{}",
          ">": r"\textgreater{}", "|": r"\textbar{}", "\x00": "",
          # the symbols our own table text uses
          "↑": r"$\uparrow$", "↓": r"$\downarrow$", "Δ": r"$\Delta$", "≙": r"$\leftrightarrow$", "·": r"$\cdot$"}
_LATEX_RE = re.compile("|".join(re.escape(c) for c in _LATEX))
_MARKDOWN = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "\x00": ""} | {c: "\\" + c for c in "\\`*_[]|$"}
_MARKDOWN_RE = re.compile("|".join(re.escape(c) for c in _MARKDOWN))


def _one_line(text) -> str:
    return _LINES.sub(" ", str(text))


def escape_latex(text) -> str:
    """`text` as literal LaTeX: every special character (``\\ { } $ & % # _ ^ ~ < > |``) escaped."""
    return _LATEX_RE.sub(lambda m: _LATEX[m.group()], _one_line(text))


def escape_markdown(text) -> str:
    """`text` as literal Markdown (GitHub / Jupyter): HTML characters as entities, Markdown and MathJax
    characters (``\\ ` * _ [ ] | $``) backslash-escaped."""
    return _MARKDOWN_RE.sub(lambda m: _MARKDOWN[m.group()], _one_line(text))


def escape_html(text) -> str:
    """`text` as literal HTML (``& < > " '`` as entities)."""
    return html.escape(_one_line(text).replace("\x00", ""), quote=True)


def literal_figure_text(fig):
    """Turn mathtext off for every text of `fig` that holds a ``$`` (titles, labels, tick labels, legends), so
    names show as written: a model named ``m$\\foo$`` would otherwise stop the figure with a mathtext error. Call
    it before `tight_layout` (which measures the texts) and before saving; returns `fig`. Our own labels use no
    mathtext, so nothing meant as math is lost, except matplotlib's own tick formatters' ``$\\mathdefault{..}$``
    (a log axis's 10^2), which are left to parse."""
    from matplotlib.text import Text

    for t in fig.findobj(Text):
        s = t.get_text()
        if "$" in s and "\\mathdefault{" not in s:
            t.set_parse_math(False)
    return fig


ESCAPE = {"latex": escape_latex, "markdown": escape_markdown, "html": escape_html}

__all__ = ["ESCAPE", "escape_latex", "escape_markdown", "escape_html", "literal_figure_text"]
