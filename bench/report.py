"""``lowlat bench --report DIR``: the results as an HTML page and a Markdown file, with plots.

Plots are PNG files in ``DIR/img`` linked by relative paths, made by matplotlib when it is
installed (``pip install 'lowlat[plot]'``); without it both files say how to get them and still
carry every table. Plots: a percentile distribution (HdrHistogram style: the x axis spreads the
tail, 90%, 99%, 99.9% equally) for every group with latency distributions, a bar of ratios to the
reference row for every group of contenders, and a line per series for groups swept over a size
(the cache staircase, with this machine's cache sizes marked).
"""

from __future__ import annotations

import html
import os
import re
from typing import Any, Callable

from ._harness import Row, groups_of, ratio_of, reference_of
from ._runner import SectionResult

PLOT_HINT = "Plots need matplotlib: install it with `pip install 'lowlat[plot]'` and run the report again."


def _slug(text: str, taken: set[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "plot"
    slug, k = base, 2
    while slug in taken:
        slug, k = f"{base}-{k}", k + 1
    taken.add(slug)
    return slug


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def plot_distribution(plt, members: list[Row], title: str, path: str) -> None:
    """Percentile distribution: x = 1/(1 - percentile), log scale, as HdrHistogram's plotter draws it."""
    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=80)
    styles = [("o", "-"), ("s", "--"), ("^", ":"), ("D", "-.")]
    for i, (row, distribution) in enumerate((r, r.distribution) for r in members if r.distribution):
        points = sorted(distribution.items())
        marker, line = styles[i % len(styles)]
        ax.plot([1 / (1 - p / 100) for p, _ in points], [v for _, v in points], marker=marker, ls=line,
                label=row.label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ticks = [2, 10, 100, 1000, 10000]
    ax.set_xticks(ticks)
    ax.set_xticklabels(["50%", "90%", "99%", "99.9%", "99.99%"])
    ax.set_xlabel("percentile")
    ax.set_ylabel(members[0].unit)
    ax.set_title(f"percentile distribution: {title}", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_ratios(plt, members: list[Row], title: str, path: str) -> None:
    """Horizontal bars: each row's value relative to the group's reference row (marked)."""
    ref = reference_of(members)
    shown = [(r, ratio_of(r, ref)) for r in members]
    shown = [(r, x) for r, x in shown if x is not None]
    fig, ax = plt.subplots(figsize=(7, 0.5 + 0.32 * len(shown)), dpi=80)
    labels = [("* " if r is ref else "") + r.label[:60] for r, _ in shown]
    ax.barh(range(len(shown)), [x for _, x in shown], color=["#888" if r is ref else "#3a7" for r, _ in shown])
    ax.set_yticks(range(len(shown)))
    ax.set_yticklabels(labels, fontsize=7)
    ax.invert_yaxis()
    ax.axvline(1.0, color="k", lw=0.8)
    better = "higher is better" if ref.higher_is_better else "lower is better"
    ax.set_xlabel(f"ratio to the reference row (*), {better}", fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_sweep(plt, members: list[Row], title: str, path: str, caches: list[dict]) -> None:
    """One line per series over ``extra["x"]`` (log 2); cache sizes marked when x is bytes."""
    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=80)
    series: dict[str, list[Row]] = {}
    for row in members:
        series.setdefault(row.extra.get("series", ""), []).append(row)
    for name, rows in series.items():
        ax.plot([r.extra["x"] for r in rows], [r.value for r in rows], marker="o", label=name)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    if members[0].extra.get("bytes_axis"):
        for cache in (c for c in caches if c.get("type") != "Instruction"):
            ax.axvline(cache["bytes"], color="r", ls="--", lw=0.8)
            ax.text(cache["bytes"], ax.get_ylim()[1], f" L{cache['level']}", color="r", fontsize=7, va="top")
    ax.set_xlabel(members[0].extra.get("x_label", "x"))
    ax.set_ylabel(members[0].unit)
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def make_plots(plt, rows: list[Row], img_dir: str, caches: list[dict], taken: set[str]) -> dict[str, list[str]]:
    """Draw every plot for ``rows``; return group -> image file names (relative to ``img_dir``)."""
    images: dict[str, list[str]] = {}
    for group, members in groups_of(rows).items():
        plots: list[tuple[Callable[..., None], tuple[Any, ...]]] = []  # (plot_*, its arguments after path)
        if all("x" in r.extra for r in members):
            plots.append((plot_sweep, (caches,)))
        else:
            if any(r.distribution for r in members):
                plots.append((plot_distribution, ()))
            if len(members) > 1:
                plots.append((plot_ratios, ()))
        for draw, args in plots:
            file = _slug(f"{members[0].section}-{group}-{draw.__name__[5:]}", taken) + ".png"
            draw(plt, members, group, os.path.join(img_dir, file), *args)
            images.setdefault(group, []).append(file)
    return images


def _fmt(value: float | None) -> str:
    if value is None:
        return ""
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _cells(row: Row, ref: Row) -> list[str]:
    ratio = ratio_of(row, ref)
    verdict = "" if row.met is None else ("met: " if row.met else "MISSED: ") + row.target
    return [("* " if row is ref else "") + row.label, row.backend, _fmt(row.value),
            "" if row.spread is None else "±" + _fmt(row.spread), row.unit, "" if ratio is None else f"{ratio:.2f}x",
            "higher" if row.higher_is_better else "lower", verdict, row.note]


HEADINGS = ["contender", "backend", "value", "spread", "unit", "ratio", "better", "target", "note"]


def machine_lines(info: dict, started: str, quick: bool, seconds: float) -> list[str]:
    """Return the report header: date, run kind, and the machine as ``lowlat info`` describes it."""
    from lowlat._info import describe

    return [f"date: {started}", f"run: {'quick' if quick else 'full'}, {seconds:.1f} s", *describe(info)]


def _md_table(members: list[Row]) -> list[str]:
    ref = reference_of(members)
    lines = ["| " + " | ".join(HEADINGS) + " |", "|" + "---|" * len(HEADINGS)]
    for row in members:
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in _cells(row, ref)) + " |")
    return lines


def _html_table(members: list[Row]) -> str:
    ref = reference_of(members)
    head = "".join(f"<th>{h}</th>" for h in HEADINGS)
    body = []
    for row in members:
        cls = ' class="ref"' if row is ref else ""
        cells = "".join(f"<td>{html.escape(c)}</td>" for c in _cells(row, ref))
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _section_text(result: SectionResult) -> list[tuple[str, str]]:
    """Return the section's (label, sentence) pairs: the seed's cell, its conclusion, ours or the skip."""
    pairs = []
    if result.seed:
        pairs.append(("Seed's cell", result.seed))
    if result.seed_says:
        pairs.append(("The seed concluded", result.seed_says))
    if result.skipped:
        pairs.append(("Skipped", result.skipped))
    elif result.conclusion:
        pairs.append(("Measured here", result.conclusion))
    return pairs


def render_markdown(results, header: list[str], images: dict, plots: bool) -> str:
    out = ["# lowlat bench report", "", *[f"- {line}" for line in header], ""]
    if not plots:
        out += [f"> {PLOT_HINT}", ""]
    out += ["Ratios are each row's value over its group's reference row (marked *); `better` says which way is "
            "better; spread is half the range of the repeats.", ""]
    out += [f"{i}. {r.title} (`{r.name}`){' — skipped' if r.skipped else ''}" for i, r in enumerate(results, 1)]
    out.append("")
    for result in results:
        out += [f"## {result.title} (`{result.name}`)", ""]
        out += [f"**{label}:** {text}  " for label, text in _section_text(result)] + [""]
        for group, members in groups_of(result.rows).items():
            out += [f"### {group}", "", *_md_table(members), ""]
            out += [f"![{group}](img/{file})" for file in images.get(group, [])] + [""]
    return "\n".join(out)


STYLE = ("body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}table{border-collapse:collapse;"
         "font-size:13px;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}"
         "tr.ref{background:#eee;font-weight:bold}img{max-width:100%;display:block;margin:.5em 0}"
         ".hint{background:#fff3c4;padding:.5em}")


def render_html(results, header: list[str], images: dict, plots: bool) -> str:
    out = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>lowlat bench report</title>",
           f"<style>{STYLE}</style></head><body><h1>lowlat bench report</h1><ul>"]
    out += [f"<li>{html.escape(line)}</li>" for line in header] + ["</ul>"]
    if not plots:
        out.append(f"<p class='hint'>{html.escape(PLOT_HINT)}</p>")
    out.append("<p>Ratios are each row's value over its group's reference row (marked *, shaded); <i>better</i> "
               "says which way is better; spread is half the range of the repeats.</p><ol>")
    out += [f"<li><a href='#{r.name}'>{html.escape(r.title)}</a>{' (skipped)' if r.skipped else ''}</li>"
            for r in results] + ["</ol>"]
    for result in results:
        out.append(f"<h2 id='{result.name}'>{html.escape(result.title)} (<code>{result.name}</code>)</h2>")
        out += [f"<p><b>{label}:</b> {html.escape(text)}</p>" for label, text in _section_text(result)]
        for group, members in groups_of(result.rows).items():
            out.append(f"<h3>{html.escape(group)}</h3>{_html_table(members)}")
            out += [f"<img src='img/{file}' alt='{html.escape(group)}'>" for file in images.get(group, [])]
    out.append("</body></html>")
    return "\n".join(out)


def write_report(directory: str, results: list[SectionResult], info: dict, header: list[str]) -> tuple[str, str]:
    """Write ``index.html``, ``report.md`` and ``img/*.png`` into ``directory``; return the two paths."""
    img_dir = os.path.join(directory, "img")
    os.makedirs(img_dir, exist_ok=True)
    plt = _pyplot()
    images: dict[str, list[str]] = {}
    if plt is not None:
        taken: set[str] = set()
        for result in results:
            images.update(make_plots(plt, result.rows, img_dir, info.get("caches", []), taken))
    html_path, md_path = os.path.join(directory, "index.html"), os.path.join(directory, "report.md")
    with open(html_path, "w", encoding="utf-8") as fh:
        fh.write(render_html(results, header, images, plt is not None))
    with open(md_path, "w", encoding="utf-8") as fh:
        fh.write(render_markdown(results, header, images, plt is not None))
    return html_path, md_path
