"""Run the chosen sections and turn their rows into the JSON, table and report of ``lowlat bench``."""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, field
from types import ModuleType

from . import ALIASES, SECTIONS
from ._harness import Progress, Row, groups_of, ratio_of, reference_of


@dataclass
class SectionResult:
    """One section's outcome: its rows, or why it was skipped, and what it concludes."""

    name: str
    module: ModuleType
    rows: list[Row] = field(default_factory=list)
    skipped: str = ""
    conclusion: str = ""
    seconds: float = 0.0

    @property
    def title(self) -> str:
        return getattr(self.module, "TITLE", self.name)

    @property
    def seed(self) -> str:
        return getattr(self.module, "SEED", "")

    @property
    def seed_says(self) -> str:
        return getattr(self.module, "SEED_SAYS", "")


def resolve(names: list[str] | None) -> list[str]:
    """Return the section names to run, in the order given, each once; ``ValueError`` on unknown ones.

    An alias (``core``, ``hist``) stands for its sections.
    """
    expanded = [part for name in names for part in ALIASES.get(name, (name,))] if names else list(SECTIONS)
    chosen = list(dict.fromkeys(expanded))
    unknown = [n for n in chosen if n not in SECTIONS]
    if unknown:
        raise ValueError(f"unknown section(s) {unknown}; choose from {list(SECTIONS)}")
    return chosen


def run_sections(names: list[str], quick: bool, progress: Progress | None = None) -> list[SectionResult]:
    """Import and run each section; return the results in order."""
    modules = [importlib.import_module(SECTIONS[n]) for n in names]
    progress = progress or Progress(sum(getattr(m, "STEPS", 1) for m in modules))
    results = []
    for name, module in zip(names, modules):
        result = SectionResult(name, module)
        started = time.perf_counter()
        if getattr(module, "SKIP", ""):
            result.skipped = module.SKIP
        else:
            result.rows = list(module.run(quick, progress))
            for row in result.rows:
                row.section = row.section or name
            conclude = getattr(module, "conclude", None)
            result.conclusion = conclude(result.rows) if conclude and result.rows else ""
        result.seconds = time.perf_counter() - started
        results.append(result)
    progress.close()
    return results


def json_rows(rows: list[Row]) -> list[dict]:
    """Return rows as the JSON schema of ``--json``: one dict per row, ratio to its group's reference."""
    out = []
    for members in groups_of(rows).values():
        ref = reference_of(members)
        for r in members:
            out.append({
                "section": r.section, "group": r.group, "contender": r.label, "backend": r.backend or None,
                "unit": r.unit, "value": r.value, "spread": r.spread, "ratio": ratio_of(r, ref),
                "reference": r is ref, "higher_is_better": r.higher_is_better, "target": r.target or None,
                "met": r.met, "note": r.note, "distribution": {f"{k:g}": v for k, v in (r.distribution or {}).items()},
            })
    return out


def summary(results: list[SectionResult]) -> list[dict]:
    """Return one dict per section: name, title, the seed's cell and conclusion, ours, or why skipped."""
    return [{"section": r.name, "title": r.title, "seed_cell": r.seed, "seed_says": r.seed_says,
             "measured": r.conclusion, "skipped": r.skipped or None, "seconds": round(r.seconds, 2)} for r in results]
