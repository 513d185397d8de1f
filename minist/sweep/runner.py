"""Running a sweep on Dask: one run in a worker process (:func:`execute_run`), the client of a
running cluster or of a ``LocalCluster`` (:func:`dask_client`), the BLAS threads each run gets
(:func:`threads_per_run`), and :func:`run_sweep`, which submits the runs not finished yet and
collects their results into a :class:`~minist.sweep.report.SweepReport`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Iterator
from typing import Any

from minist.errors import MinistError
from minist.status import RunStatus
from minist.sweep.report import SweepReport, write_gallery_of
from minist.sweep.spec import Run, Sweep, one_line
from minist.sweep.store import (
    finished_record,
    output_lock,
    prepare_output,
    remove_leftovers,
    run_files,
    write_json,
)
from minist.threads import available_cores

# Environment variables that size a worker process's thread pools before NumPy and Numba load.
THREAD_ENVIRONMENT = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                      "NUMBA_NUM_THREADS")


# ---------------------------------------------------------------------------------------------
# One run, in a worker process
# ---------------------------------------------------------------------------------------------


def execute_run(run: Run, out_dir: str, threads: int) -> dict:
    """Run one style transfer and write its files; what a Dask worker executes.

    The image, the record and the log are written under temporary names and renamed into place
    when the run has finished -- the log, then the record, the image last -- so a run killed at
    any point leaves no file under its final names (:func:`remove_leftovers` deletes the
    temporary ones). Returns a JSON-ready result: ``status`` (finished or failed), ``error`` (one
    line), ``final`` losses, ``iterations``, ``seconds``. Errors do not propagate: a failed run
    is a result, so that the other runs go on.
    """
    from minist import __version__
    from minist.execution import ExecutionConfig
    from minist.loop import NonFiniteLossError
    from minist.observers import JsonLog, SaveResult
    from minist.options import png_metadata
    from minist.stylize import StyleTransfer
    from minist.weights.atomic import atomic_path

    files = run_files(out_dir, run.name)
    start = time.perf_counter()
    transfer = None
    result = {"name": run.name, "status": RunStatus.FAILED, "error": None, "final": None,
              "iterations": 0, "seconds": 0.0}
    try:
        options = run.options
        config = ExecutionConfig(device=options.device, threads=threads)

        metadata = png_metadata(run.settings, str(run.settings["content"]),
                                json.dumps(run.settings["style"]), style_layers=False,
                                extra={"minist:sweep-run": run.name})

        with contextlib.ExitStack() as stack:
            # entered image first: renamed last (ExitStack unwinds in reverse)
            image_tmp = stack.enter_context(atomic_path(files.image, suffix=".part.png"))
            record_tmp = stack.enter_context(atomic_path(files.record))
            log_tmp = stack.enter_context(atomic_path(files.log))
            style = list(run.style) if isinstance(run.style, tuple) else run.style
            transfer = StyleTransfer(run.content, style, options, config=config, progress=False)
            transfer.run(observers=[JsonLog(log_tmp), SaveResult(image_tmp, metadata)])
            with transfer.net.config.scope():
                # the losses of the image kept: the optimizer's own evaluation of that point
                # when it made one (L-BFGS's line search), else computed now
                final = transfer.optimizer.evaluate(transfer.image, transfer.problem)
            result.update(
                status=RunStatus.FINISHED,
                final={"content": final.content, "style": final.style, "tv": final.tv,
                       "total": final.total},
                iterations=transfer.iteration,
                seconds=round(time.perf_counter() - start, 3),
            )
            record_tmp.write_text(json.dumps(
                {**result, "settings": run.settings, "point": run.point,
                 "threads": threads, "minist": __version__}, indent=1) + "\n")
        return result
    except NonFiniteLossError:
        iterations = transfer.iteration if transfer is not None else 0
        result["error"] = (f"the loss became NaN or infinite at iteration {iterations}; lower "
                           "lr, style_weight or content_weight")
    except Exception as exc:  # noqa: BLE001 - any error fails this run only (module docstring)
        result["error"] = one_line(exc)
        if not isinstance(exc, MinistError):  # a bug, not the user's input: keep the trace
            result["traceback"] = traceback.format_exc()
    result["iterations"] = transfer.iteration if transfer is not None else 0
    result["seconds"] = round(time.perf_counter() - start, 3)
    return result


# ---------------------------------------------------------------------------------------------
# The Dask side
# ---------------------------------------------------------------------------------------------


def _import_distributed():
    try:
        import distributed
    except ImportError:
        raise MinistError("minist sweep runs on Dask, which is not installed: "
                          "pip install 'minist[sweep]'") from None
    return distributed


def _host_and_cores() -> tuple[str, int]:
    import socket

    return socket.gethostname(), available_cores()


def threads_per_run(client) -> int:
    """BLAS threads per run on a running cluster: on each host, its cores divided among the
    threads of its workers (each running one run at a time per thread); the smallest over
    hosts, at least 1."""
    nthreads = client.nthreads()
    hosts = client.run(_host_and_cores)
    per_host: dict[str, int] = {}
    for address, (host, _) in hosts.items():
        per_host[host] = per_host.get(host, 0) + nthreads.get(address, 1)
    return max(1, min((cores // per_host[host] for host, cores in hosts.values()), default=1))


@contextlib.contextmanager
def _environment_restored(keys):
    """Put the environment variables ``keys`` back as they were after the block."""
    old = {key: os.environ.get(key) for key in keys}
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, workers: int | None = None,
                threads: int | None = None, timeout: float = 60) -> Iterator[tuple[Any, int]]:
    """A Dask client and the BLAS threads each run gets: ``(client, threads)``.

    ``scheduler``: the address of a running cluster (its workers must see the spec's files and
    the output folder at the same paths, e.g. on a shared file system). Otherwise a
    ``LocalCluster`` of ``workers`` processes (default: one per core) with one task thread each
    and a nanny that restarts a worker process that dies; each process's BLAS, OpenMP and Numba
    pools get ``threads`` threads (default: cores // workers, at least 1), set before the worker
    starts, so that the machine is not oversubscribed.
    """
    distributed = _import_distributed()
    import dask

    if scheduler:
        try:
            client = distributed.Client(scheduler, timeout=timeout)
        except (OSError, TimeoutError) as exc:
            raise MinistError(f"--scheduler {scheduler}: cannot connect ({one_line(exc)})") \
                from None
        with client:
            try:
                client.wait_for_workers(1, timeout=timeout)
            except TimeoutError:
                raise MinistError(f"--scheduler {scheduler}: no worker joined within "
                                  f"{timeout:g} s") from None
            yield client, threads or threads_per_run(client)
        return
    cores = available_cores()
    workers = workers or cores
    threads = threads or max(1, cores // workers)
    env = {key: str(threads) for key in THREAD_ENVIRONMENT}
    # The nanny copies pre-spawn-environ into this process's os.environ before it starts each
    # worker process (restarts included), so that the worker's BLAS starts with that count;
    # this process's environment is put back afterwards.
    config = {f"distributed.nanny.pre-spawn-environ.{key}": value for key, value in env.items()}
    with dask.config.set(config):
        touched = set(dask.config.get("distributed.nanny.pre-spawn-environ")) | {"PYTHONHASHSEED"}
        with _environment_restored(touched):
            cluster = distributed.LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True,
                dashboard_address="127.0.0.1:0",  # (a free port: never a clash on 8787)
                silence_logs=logging.ERROR, memory_limit=0,  # each run checks its own memory
            )
            with cluster, distributed.Client(cluster) as client:
                yield client, threads


# ---------------------------------------------------------------------------------------------
# The sweep: the runs not finished yet, submitted to the cluster
# ---------------------------------------------------------------------------------------------


def run_sweep(sweep: Sweep, out_dir: str | os.PathLike, client=None, *, threads: int = 1,
              progress: bool = True, connect=None, log=None) -> SweepReport:
    """Run every run of ``sweep`` that has not finished into ``out_dir`` and write the gallery.

    ``client``: a Dask client to submit the runs to; or ``connect``: a function returning a
    context manager that yields ``(client, threads)`` (e.g. :func:`dask_client` with its
    arguments), entered only when there is something to run -- a sweep whose runs have all
    finished starts no cluster. ``log(line)`` is told of each failed run as it fails (default:
    a line on stderr above the bar; nothing without the bar). On Ctrl-C the runs are
    cancelled, the gallery is written with what has finished, and the ``KeyboardInterrupt``
    goes on.
    """
    out_dir = prepare_output(out_dir)
    report = SweepReport(sweep, out_dir)
    with output_lock(out_dir):
        remove_leftovers(out_dir, sweep.runs)
        todo = []
        for run in sweep.runs:
            if finished_record(out_dir, run) is not None:
                report.skipped.append(run.name)
            else:
                todo.append(run)
        try:
            if todo:
                if client is not None:
                    _run_on(client, threads, todo, report, progress, log)
                else:
                    with connect() as (connected, connected_threads):
                        _run_on(connected, connected_threads, todo, report, progress, log)
                remove_leftovers(out_dir, sweep.runs)  # e.g. what a killed worker had begun
        except KeyboardInterrupt:
            report.interrupted = True
            if client is None:  # our own cluster is closed: nothing runs here any more
                remove_leftovers(out_dir, sweep.runs)
            raise
        finally:
            write_gallery_of(report)
    return report


def _run_on(client, threads: int, todo: list[Run], report: SweepReport, progress: bool,
            log) -> None:
    """Submit ``todo`` to ``client`` and collect the results as they come, with one bar."""
    distributed = _import_distributed()
    from tqdm import tqdm

    total = len(report.sweep.runs)
    if log is None and progress:
        log = lambda line: tqdm.write(line, file=sys.stderr)  # noqa: E731 - above the bar
    say = log
    futures = {
        client.submit(execute_run, run, str(report.out_dir), threads, key=f"minist-{run.name}",
                      pure=False): run
        for run in todo
    }
    bar = tqdm(total=total, initial=len(report.skipped), unit="run", desc="sweep",
               disable=not progress, file=sys.stderr, dynamic_ncols=True)
    try:
        for future in distributed.as_completed(futures):
            run = futures[future]
            try:
                result = future.result()
            except Exception as exc:  # noqa: BLE001 - e.g. KilledWorker: the run failed
                result = {"name": run.name, "status": RunStatus.FAILED, "iterations": 0,
                          "seconds": 0.0, "final": None, "error": _dask_error(exc)}
            _record(report, run, result)
            if result["status"] == RunStatus.FAILED and say is not None:
                say(f"failed: {run.name}: {result['error']}")
            bar.update(1)
            bar.set_postfix(failed=len(report.failed), refresh=False)
    except BaseException:
        client.cancel(list(futures))
        raise
    finally:
        bar.close()


def _dask_error(exc: BaseException) -> str:
    name = type(exc).__name__
    if name == "KilledWorker":
        return ("the worker process running it died every time it was tried "
                f"({one_line(exc)}); out of memory? lower size or --workers")
    return one_line(exc)


def _record(report: SweepReport, run: Run, result: dict) -> None:
    """Keep ``result``; write a failed run's record (and drop a stale one for a finished run)."""
    report.results[run.name] = result
    files = run_files(report.out_dir, run.name)
    if result["status"] == RunStatus.FAILED:
        write_json(files.failure, {**result, "settings": run.settings, "point": run.point})
    else:
        with contextlib.suppress(FileNotFoundError):
            files.failure.unlink()
