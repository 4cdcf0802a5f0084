"""`python -m bench [NAME ...] [--quick]`: run the benchmark modules and merge their figures into bench/results.json.

Every `bench/bench_<name>.py` exposes `run(quick: bool = False) -> dict[str, dict]`, each metric a dict
`{"value": v, "unit": u, "spec": s, ...extra}` where `spec` is a bound such as `"<= 10"`, `">= 2000"`, `"== 0"`
or free text (`""`: no bound).  NAME filters the modules (`python -m bench churn` runs bench_churn.py only);
`--quick` passes quick=True (smaller volumes, for a smoke run; merged into bench/out/results.quick.json, not
results.json).  The figures are merged into results.json: a module's metrics replace its previous ones, other
modules' metrics are kept.  A module that raises is reported
and the others still run; the exit status is 1 if any module failed or any bound was missed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import operator
import os
import re
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "results.json"
QUICK_RESULTS = BENCH_DIR / "out" / "results.quick.json"  # a smoke run's figures never replace the real ones

_OPS = {"<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt, "==": operator.eq}
_BOUND = re.compile(r"^\s*(<=|>=|==|<|>)\s*([-+]?[\d,_]*\.?\d+(?:[eE][-+]?\d+)?)\s*$")


def discover(names: list[str]) -> list[str]:
    """Module names `bench_*` in bench/, those whose name contains one of `names` when any are given."""
    found = sorted(p.stem for p in BENCH_DIR.glob("bench_*.py"))
    if not names:
        return found
    return [m for m in found if any(n.removeprefix("bench_") in m for n in names)]


def verdict(metric: dict[str, Any]) -> str:
    """'pass' / 'FAIL' where `spec` is a comparable bound and `value` a number, else ''."""
    m = _BOUND.match(str(metric.get("spec", "")))
    value = metric.get("value")
    if m is None or isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return ""
    return "pass" if _OPS[m.group(1)](value, float(m.group(2).replace(",", "").replace("_", ""))) else "FAIL"


def merge(results_path: Path, new: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Merge `new` into the JSON file (atomic replace; other modules' metrics kept)."""
    try:
        current = json.loads(results_path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        current = {}
    current.update(new)
    fd, tmp = tempfile.mkstemp(dir=results_path.parent, prefix=".results.", suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(current, fh, indent=2, sort_keys=False)
        fh.write("\n")
    os.replace(tmp, results_path)
    return current


def _fmt(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.2f}" if abs(v) < 1e6 else f"{v:,.0f}"
    return str(v)


def table(metrics: dict[str, dict[str, Any]]) -> str:
    rows = [("metric", "value", "unit", "spec", "")]
    for name, m in metrics.items():
        rows.append((name, _fmt(m.get("value")), str(m.get("unit", "")), str(m.get("spec", "")), verdict(m)))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = []
    for i, r in enumerate(rows):
        lines.append(
            "  ".join(
                [r[0].ljust(widths[0]), r[1].rjust(widths[1]), r[2].ljust(widths[2]), r[3].ljust(widths[3]), r[4]]
            ).rstrip()
        )
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("names", nargs="*", help="run only modules whose name contains one of these")
    parser.add_argument("--quick", action="store_true", help="smaller volumes: a smoke run")
    parser.add_argument(
        "--results",
        type=Path,
        default=None,
        help=f"the JSON file to merge into (default {RESULTS.name}; with --quick {QUICK_RESULTS})",
    )
    args = parser.parse_args(argv)
    if args.results is None:
        args.results = QUICK_RESULTS if args.quick else RESULTS
    args.results.parent.mkdir(parents=True, exist_ok=True)

    root = str(BENCH_DIR.parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    modules = discover(args.names)
    if not modules:
        print(f"no bench module matches {args.names} in {BENCH_DIR}", file=sys.stderr)
        return 2
    failed_modules, all_metrics = [], {}
    for name in modules:
        print(f"== {name}{' (quick)' if args.quick else ''}", flush=True)
        t0 = time.perf_counter()
        try:
            metrics = importlib.import_module(f"bench.{name}").run(quick=args.quick)
        except Exception:  # one module's failure must not lose the others' figures
            traceback.print_exc()
            failed_modules.append(name)
            continue
        merge(args.results, metrics)
        all_metrics.update(metrics)
        print(f"   {name}: {len(metrics)} metrics in {time.perf_counter() - t0:.1f} s", flush=True)
    if all_metrics:
        print()
        print(table(all_metrics))
        print(f"\nmerged into {args.results}")
    missed = [k for k, m in all_metrics.items() if verdict(m) == "FAIL"]
    if failed_modules:
        print(f"failed modules: {', '.join(failed_modules)}", file=sys.stderr)
    if missed:
        print(f"bounds missed: {', '.join(missed)}", file=sys.stderr)
    return 1 if failed_modules or missed else 0


if __name__ == "__main__":
    sys.exit(main())
