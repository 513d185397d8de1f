"""``minist sweep SPEC.toml -o DIR``: the cartesian product of a spec's lists, one style transfer
per combination, on Dask, with a gallery (``DIR/index.html``, ``DIR/sheet.png``).

The spec, the files and the exit statuses are described in :mod:`minist.sweep`; the gallery in
:mod:`minist.gallery`. ``--scheduler ADDRESS`` runs on an existing Dask cluster; otherwise a
``LocalCluster`` of ``--workers`` processes is started (only when there is something to run).
"""

from __future__ import annotations

import contextlib
import sys

from minist.errors import MinistError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "sweep",
        help="run every combination of a TOML spec on Dask, with a gallery",
        description="Run the cartesian product of the lists in SPEC (content and style images, "
        "any stylize option) as style transfers on Dask; write each run's image, log and "
        "settings into DIR/runs, and the gallery DIR/index.html and DIR/sheet.png. Re-running "
        "skips finished runs. Exit status: 0 all finished, 1 some runs failed, 2 bad spec.",
    )
    p.add_argument("spec", metavar="SPEC", help="the sweep spec (TOML; paths relative to it)")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="output folder")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="address of a running Dask scheduler (default: a local cluster)")
    p.add_argument("--workers", type=int, metavar="N",
                   help="worker processes of the local cluster (default: one per core, at most "
                   "one per run to do)")
    p.add_argument("--threads", type=int, metavar="T",
                   help="BLAS threads per run (default: cores // workers, at least 1)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="replace a key of the spec, as if written in it (a TOML value, e.g. "
                   "--set size=128 --set 'style_weight=[1e2, 1e3]'); repeatable")
    p.add_argument("--dry-run", action="store_true",
                   help="check the spec (the weights and layer names are checked when it runs), "
                   "list the runs and whether each is done; run nothing")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from minist.sweep import (
        check_networks,
        dask_client,
        finished_record,
        load_sweep,
        parse_override,
        run_sweep,
    )

    for option in ("workers", "threads"):
        value = getattr(args, option)
        if value is not None and value < 1:
            raise MinistError(f"--{option}: must be at least 1, got {value}")
    if args.scheduler and args.workers:
        raise MinistError("--workers: only for the local cluster, not with --scheduler")
    sweep = load_sweep(args.spec, [parse_override(text) for text in args.overrides])
    if args.dry_run:
        for r in sweep.runs:
            done = finished_record(args.output, r) is not None
            print(f"{'done' if done else 'todo'}  {r.name}")
        print(f"{len(sweep.runs)} runs", file=sys.stderr)
        return 0
    sweep = check_networks(sweep, progress=not args.quiet)

    def connect():
        todo = sum(1 for r in sweep.runs if finished_record(args.output, r) is None)
        workers = args.workers
        if not args.scheduler and workers is None:
            from minist.sweep import available_cores

            workers = max(1, min(available_cores(), todo))
        return dask_client(args.scheduler, workers, args.threads)

    report = None
    with contextlib.suppress(KeyboardInterrupt):
        report = run_sweep(sweep, args.output, connect=connect, progress=not args.quiet)
    if report is None:  # Ctrl-C: the gallery shows what finished; the CLI says the rest
        print(f"minist: interrupted; finished runs are kept in {args.output}, re-run to "
              "resume", file=sys.stderr)
        return 130
    failed = report.failed
    if not args.quiet or failed:
        print(f"{len(report.finished)} of {len(sweep.runs)} runs finished "
              f"({len(report.skipped)} already done), {len(failed)} failed; gallery: "
              f"{report.out_dir / 'index.html'}", file=sys.stderr)
    if args.quiet:  # without the bar, failures were not reported as they came
        for name in failed:
            print(f"minist: failed: {name}: {report.results[name]['error']}", file=sys.stderr)
    return report.exit_status
