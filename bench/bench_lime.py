"""LIME benchmarks: `python bench/bench_lime.py [--quick] [--json PATH]` (or `attnverify bench lime`)."""

import argparse
import json
import sys

from attnverify.cli_support import enable_x64

enable_x64()  # as `attnverify bench lime`: float64, a CPU device per core, one BLAS thread

from attnverify.verification.bench.lime_vs_package import lime_benchmarks  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and sizes")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    text = json.dumps(lime_benchmarks(args.quick), indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as handle:
            handle.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
