"""Sweeps: many style transfers from one TOML spec, run on Dask, resumable, with a gallery.

Reproducing the paper's figures -- Fig. 2 (one photo, several paintings), Fig. 3 (style layers
x the ratio alpha/beta) -- or preparing a class gallery means dozens of runs. ``minist sweep
SPEC.toml -o DIR`` runs the cartesian product of the lists in the spec, one style transfer per
combination, as tasks of a Dask cluster (:mod:`dask.distributed`): a ``LocalCluster`` of worker
processes by default, or any running cluster by its scheduler's address. minist does not
schedule anything itself: Dask places the runs, and reschedules the run of a worker process that
dies.

**The spec** (TOML; every path in it is relative to the spec file)::

    content = "photo.jpg"                          # or a list: one run per photo
    style = ["starry_night.jpg", "the_scream.jpg"]  # one run per painting
    weights = "../weights/vgg16.h5"
    size = 128                                     # a StylizeOptions field: a scalar ...
    style_weight = [1e2, 1e3, 1e4]                 # ... or a list of values to sweep
    style_layers = [["relu1_1"], ["relu1_1", "relu2_1"]]  # list-valued fields: list of lists

    [gallery]                                      # optional
    rows = "style_layers"
    columns = "style_weight"
    title = "Fig. 3"

Keys: ``content`` and ``style`` (an image path or a list of them; a style that is itself a list
of paths is one run with several style images), any option of
:class:`~minist.options.StylizeOptions` by its name (checked by its declaration in
:mod:`minist.options`, so a new option works in specs at once), and the ``[gallery]`` table. An
option whose value is a list (``content_layers``, ``style_layers``, ``style_layer_weights``,
``content_masks`` ...) takes a list as one value and a list of lists as a sweep; an option of
any type (e.g. ``scales``, either ``"auto"`` or a list of sizes) sweeps over a list, so a list as
its one value is written inside a list (``[[64, 128, 256]]``). Options that name files
(``weights``, the masks, ``init`` when it is not ``content``/``noise``/``style``) are resolved
relative to the spec file (an empty mask entry: none); when ``weights`` is not given, the
default ``weights/vgg19.h5`` is relative to the working directory, as for ``minist stylize``,
and fetched once before the sweep when missing.

Everything that can be checked is checked before any work, with one line naming the spec file
and the key (:func:`load_sweep`): unknown keys, wrong types, empty or repeated values, missing
files, every combination's options (:meth:`StylizeOptions.validated`), layer names against the
weights. What only shows at run time -- a file that is not an image, an image too small for the
layers, a loss that becomes NaN -- fails that run alone: it is recorded with its one-line error,
shown in the gallery, and the other runs go on.

**Files** under ``DIR``: ``runs/NAME.png`` (the image, with the settings in its PNG metadata),
``runs/NAME.json`` (the settings, the final losses, iterations, seconds), ``runs/NAME.jsonl``
(one line per iteration, as ``minist stylize --log``), ``runs/NAME.failed.json`` for a failed
run; ``index.html``, ``sheet.png`` and ``thumbs/`` (:mod:`minist.gallery`). ``NAME`` is made
from the settings (:func:`run_name`): the content and style file names, the swept values, and a
hash of all the settings, so different settings never share a name. A run writes its three files
under temporary names and renames them into place when it has finished, the image last: an image
under its final name means a finished run. Re-running a spec skips every run whose image and
record exist with the same settings (resume after a crash or Ctrl-C), retries failed runs, and
removes what an interrupted run left behind.

**Exit status** of ``minist sweep``: 0 when every run finished, 1 when any run failed (the
gallery and the last lines of output say which and why), 2 for a bad spec or option (before any
work), 130 on Ctrl-C (finished runs are kept; the gallery shows what is done).
"""

from minist.sweep.report import EXIT_RUNS_FAILED, SweepReport, gallery_entries, write_gallery_of
from minist.sweep.runner import (
    THREAD_ENVIRONMENT,
    available_cores,
    dask_client,
    execute_run,
    run_sweep,
    threads_per_run,
)
from minist.sweep.spec import (
    GALLERY_KEYS,
    SPEC_KEYS,
    Run,
    Sweep,
    check_networks,
    load_sweep,
    one_line,
    parse_override,
    read_toml,
    run_name,
    settings_hash,
)
from minist.sweep.store import (
    RunFiles,
    finished_record,
    output_lock,
    prepare_output,
    read_json,
    remove_leftovers,
    run_files,
    write_json,
)

__all__ = [
    "EXIT_RUNS_FAILED", "GALLERY_KEYS", "SPEC_KEYS", "THREAD_ENVIRONMENT", "Run", "RunFiles",
    "Sweep", "SweepReport", "available_cores", "check_networks", "dask_client", "execute_run",
    "finished_record", "gallery_entries", "load_sweep", "one_line", "output_lock",
    "parse_override", "prepare_output", "read_json", "read_toml", "remove_leftovers",
    "run_files", "run_name", "run_sweep", "settings_hash", "threads_per_run", "write_gallery_of",
    "write_json",
]
