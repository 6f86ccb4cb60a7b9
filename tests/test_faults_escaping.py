"""Names from params and data in the rendered tables (issue 25): inert in LaTeX, Markdown and HTML."""
from __future__ import annotations

import pandas as pd
import pytest

from crowdselect_lib.escaping import escape_html, escape_latex, escape_markdown
import crowdselect_lib.reporting as R

pytestmark = pytest.mark.faults

EVIL = "\\input{/etc/passwd}\\immediate\\write18{id}"
SCRIPT = "<script>alert(1)</script>"


def test_each_format_escapes_every_special_character():
    assert escape_latex(EVIL) == ("\\textbackslash{}input\\{/etc/passwd\\}\\textbackslash{}immediate"
                                  "\\textbackslash{}write18\\{id\\}")
    assert escape_latex("a_b & 50% #1 $x$ ^ ~ <|>") == ("a\\_b \\& 50\\% \\#1 \\$x\\$ \\textasciicircum{} "
                                                        "\\textasciitilde{} \\textless{}\\textbar{}\\textgreater{}")
    assert escape_latex("x\n\\end{table}") == "x \\textbackslash{}end\\{table\\}"   # a newline would end a % note
    assert escape_markdown(SCRIPT + " *a* [l](javascript:x) $\\x$ | `c`") == (
        "&lt;script&gt;alert(1)&lt;/script&gt; \\*a\\* \\[l\\](javascript:x) \\$\\\\x\\$ \\| \\`c\\`")
    assert escape_html(SCRIPT + " \"'&") == "&lt;script&gt;alert(1)&lt;/script&gt; &quot;&#x27;&amp;"


def test_grid_labels_and_notes_are_inert_in_every_table_format():
    spec = R.TableSpec("x", "toy", layout="size")
    res = pd.DataFrame({"table": "x", "row": [EVIL, SCRIPT], "column": "Arena-Hard", "value": [80.0, 82.5],
                        "ci_low": float("nan"), "ci_high": float("nan"), "avg_tokens": float("nan"), "n": 1,
                        "anchor": False, "source": "hand"})
    kw = {"caption_text": "run $x$", "notes": [f"student {EVIL}\n\\write18{{rm -rf}}", SCRIPT]}
    tex = R.render(res, None, spec, fmt="latex", **kw)
    assert "\\input" not in tex and "\\write18" not in tex and "\\immediate" not in tex
    assert "\\textbackslash{}input\\{/etc/passwd\\}" in tex and "\\caption{run \\$x\\$}" in tex
    assert all(line.startswith("%") for line in tex.split("\\end{table}\n")[1].splitlines())   # notes stay comments
    md = R.render(res, None, spec, fmt="markdown", **kw)
    assert "<script>" not in md and "| &lt;script&gt;alert(1)&lt;/script&gt; · ours |" in md
    html = R.render(res, None, spec, fmt="html", **kw)
    assert "<script>" not in html and "<li>&lt;script&gt;alert(1)&lt;/script&gt;</li>" in html


def test_figure_names_stay_literal_but_log_axis_ticks_still_render_as_math():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from crowdselect_lib.escaping import literal_figure_text

    fig, ax = plt.subplots()
    ax.plot([100, 1000], [0, 1])
    ax.set_xscale("log")
    fig.canvas.draw()                                   # tick labels now read $\mathdefault{10^{2}}$
    ax.set_title(r"m$\foo$")
    literal_figure_text(fig)
    fig.canvas.draw()                                   # the name would raise a mathtext error if parsed
    ticks = [t for t in ax.get_xticklabels() if t.get_text()]
    assert ticks and all(t.get_parse_math() for t in ticks) and "mathdefault" in ticks[0].get_text()
    assert not ax.title.get_parse_math()
    plt.close(fig)
