"""Markdown for a pull-request comment: what a change did to params, metrics and image plots.

Every number comes from the `git` and `dvc` CLIs, so the comment shows what a reviewer would see running them.
Images are PNG plots that `dvc plots diff` renders for both revisions; only those whose bytes differ are shown,
as paths relative to the report, which `cml comment create/update` uploads.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
from pathlib import Path

from pipeline.atomic import write_text
from pipeline.errors import PipelineError, run_cli
from pipeline.tools import DVC, output, spawn

WORKSPACE = "workspace"  # the name dvc gives the uncommitted working tree
def _rev_exists(rev: str) -> bool:
    return spawn(["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"]).returncode == 0


def _check_repo() -> None:
    """Fail before any dvc call, whose message for this case is long and vague."""
    if spawn(["git", "rev-parse", "--show-toplevel"]).returncode != 0:
        raise PipelineError("not inside a git repository: run the report from the project checkout")


def _check_rev(rev: str) -> None:
    if not _rev_exists(rev):
        raise PipelineError(f"unknown git revision {rev!r}: fetch it (git fetch origin) or pass another --base/--head")


def default_base() -> str:
    """The PR's target in CI (origin/main); locally main, or HEAD so a bare run shows uncommitted changes."""
    return next((rev for rev in ("origin/main", "main") if _rev_exists(rev)), "HEAD")


def _table_or(markdown: str, nothing: str) -> str:
    """dvc prints a header-only table (or nothing) when no value changed; say that in words instead."""
    rows = [line for line in markdown.splitlines() if line.startswith("|")]
    return markdown.strip() if len(rows) > 2 else f"_{nothing}_"


def params_section(revs: list[str]) -> str:
    return _table_or(output([*DVC, "params", "diff", *revs, "--md"]), "no parameter changed")


def metrics_section(revs: list[str]) -> str:
    return _table_or(output([*DVC, "metrics", "diff", *revs, "--md"]), "no metric changed")


def changed_images(revs: list[str], labels: tuple[str, str], plots_dir: Path) -> dict[str, dict[str, Path]]:
    """Image plots whose rendered file differs between the two revisions (or exists in only one), by plot path."""
    rendered = json.loads(output([*DVC, "plots", "diff", *revs, "-o", str(plots_dir), "--json"]))
    changed: dict[str, dict[str, Path]] = {}
    for plot, entries in sorted(rendered.get("data", {}).items()):
        by_rev = {entry["revisions"][0]: Path(entry["url"]) for entry in entries if entry.get("type") == "image"}
        before, after = (by_rev.get(label) for label in labels)
        if by_rev and not (before and after and filecmp.cmp(before, after, shallow=False)):
            changed[plot] = by_rev
    return changed


def plots_section(changed: dict[str, dict[str, Path]], labels: tuple[str, str], report_dir: Path) -> str:
    if not changed:
        return "_no image plot changed_"
    blocks = []
    for plot, by_rev in changed.items():
        lines = [f"#### `{plot}`", ""]
        for label in labels:
            image = by_rev.get(label)
            shown = f"![{plot} at {label}]({_relative(image, report_dir)})" if image else "_absent_"
            lines.append(f"- `{label}`: {shown}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _relative(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path.resolve(), start.resolve())).as_posix()


def build_report(base: str, head: str | None, report_dir: Path, plots_dir: Path, title: str) -> str:
    """The whole comment; `head=None` compares against the working tree, as in CI after `dvc repro`."""
    revs = [base] if head is None else [base, head]
    labels = (base, head or WORKSPACE)
    images = changed_images(revs, labels, plots_dir)
    return "\n\n".join(
        [
            f"## {title}",
            f"Comparing `{labels[0]}` → `{labels[1]}`.",
            "### Params",
            params_section(revs),
            "### Metrics",
            metrics_section(revs),
            "### Plots",
            plots_section(images, labels, report_dir),
        ]
    ) + "\n"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pipeline.report", description=__doc__.splitlines()[0])
    parser.add_argument("--base", help="revision to compare against (default: origin/main, else main, else HEAD)")
    parser.add_argument("--head", help="revision to report on (default: the working tree)")
    parser.add_argument("--out", type=Path, default=Path("report.md"), help="Markdown file to write")
    parser.add_argument("--plots-dir", type=Path, help="where rendered images go (default: report-plots/ beside --out)")
    parser.add_argument("--title", default="Pipeline report", help="heading of the comment")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    _check_repo()
    base = args.base or default_base()
    for rev in (base, args.head):
        if rev is not None:
            _check_rev(rev)
    plots_dir = args.plots_dir or args.out.parent / "report-plots"
    write_text(args.out, build_report(base, args.head, args.out.parent, plots_dir, args.title))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    run_cli(main)
