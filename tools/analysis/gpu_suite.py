"""The GPU measurement suite: paper Tables 4 and 5, energy, training
throughput and backbone efficiency in one budgeted run.

python tools/analysis/gpu_suite.py [--out DIR] [--budget-min N] [--dry-run]
    [--only STEP ...] [--device DEV] [--threads T] [--started-at EPOCH]

Normally started by tools/analysis/gpu_suite.sh, which first installs the
carried wheels on a machine without mmcv/mmengine/mmdet. Writes suite.json,
summary.md, report.md and every table's .md/.png/.json into --out; exits 1
when a step failed. See docs/benchmarks.md ("GPU suite") and
:mod:`vovdet.analysis.gpu_suite`.
"""
import argparse
import sys

from vovdet.analysis.gpu_suite import DEFAULT_BUDGET_MIN, run_suite


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Run the GPU measurement suite within a time budget')
    parser.add_argument('--out', default='work_dirs/gpu_suite',
                        help='output folder (default work_dirs/gpu_suite)')
    parser.add_argument(
        '--budget-min', type=float, default=DEFAULT_BUDGET_MIN,
        help=f'minutes for the whole run (default {DEFAULT_BUDGET_MIN:g}); '
        'a step whose estimate no longer fits is skipped with the reason')
    parser.add_argument(
        '--dry-run', action='store_true',
        help='every step on the CPU with tiny shapes and one repeat')
    parser.add_argument('--only', nargs='+', metavar='STEP',
                        help='run only these steps')
    parser.add_argument('--device',
                        help='default cuda:0 (cpu for --dry-run)')
    parser.add_argument('--threads', type=int, help='torch CPU threads')
    parser.add_argument(
        '--started-at', type=float,
        help='epoch seconds the budget counts from (default: now)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    suite = run_suite(args.out, dry_run=args.dry_run,
                      budget_min=args.budget_min, start=args.started_at,
                      device=args.device, threads=args.threads,
                      only=args.only)
    failed = [s['name'] for s in suite['steps'] if s['status'] == 'failed']
    if failed:
        print(f"failed steps: {', '.join(failed)} (see {args.out}/suite.json)",
              file=sys.stderr)
        sys.exit(1)


if __name__ == '__main__':
    main()
