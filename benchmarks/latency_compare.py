"""Two runs of ``benchmarks/latency.py`` side by side: each bridge column's time now against
before, and against onnxruntime in the same run (which cancels most of a shared machine's
load drift between the runs).

Run: ``python benchmarks/latency_compare.py BEFORE.json AFTER.json [--output NAME]`` (the
JSON files ``latency.py --output`` writes; ``--output`` writes ``benchmarks/results/NAME.md``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
COLUMNS = ("bridge numpy", "bridge tensor")


def cells(path: str) -> dict[tuple[str, int], dict]:
    records = json.loads(Path(path).read_text())["records"]
    return {(r["model"], int(batch)): cell for r in records for batch, cell in r["cells"].items()}


def compare(before: dict, after: dict) -> tuple[list[str], list[float]]:
    """Markdown rows, and every ``now ÷ before`` of the ort-normalised times."""
    rows, ratios = [], []
    for key in after:
        if key not in before:
            continue
        old, new = before[key], after[key]
        parts = [key[0], str(key[1])]
        for column in COLUMNS:
            if column not in old or column not in new:
                parts += ["–"] * 3
                continue
            old_s, new_s = old[column]["seconds"], new[column]["seconds"]
            old_r = old_s / old["onnxruntime"]["seconds"]
            new_r = new_s / new["onnxruntime"]["seconds"]
            ratios.append(new_r / old_r)
            parts += [f"{old_s * 1e6:.3g} → {new_s * 1e6:.3g}", f"{old_r:.2f} → {new_r:.2f}",
                      f"{new_r / old_r:.2f}"]
        rows.append("| " + " | ".join(parts) + " |")
    return rows, ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--output", help="name under benchmarks/results/ for the .md")
    args = parser.parse_args()
    rows, ratios = compare(cells(args.before), cells(args.after))
    header = ["model", "batch"]
    for column in COLUMNS:
        header += [f"{column} µs (before → now)", f"{column} ÷ ort", "now ÷ before"]
    text = "\n".join([
        f"# latency before ({args.before}) and now ({args.after})", "",
        "| " + " | ".join(header) + " |", "|" + "---|" * len(header), *rows, "",
        f"- now ÷ before (times relative to onnxruntime in the same run): "
        f"{min(ratios):.2f}–{max(ratios):.2f} over {len(ratios)} cells; "
        f"{sum(r > 1.1 for r in ratios)} cells slower by more than 10%",
    ])
    print(text)
    if args.output:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / f"{args.output}.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
