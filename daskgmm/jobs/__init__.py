"""The batch-job application on top of the daskgmm library: the ``daskgmm`` command.

It has dependencies of its own, which the library never imports: click (the
command line, :mod:`daskgmm.jobs.cli`), pydantic and pyyaml (config files,
:mod:`daskgmm.jobs.config`) and matplotlib (the report's plots,
:mod:`daskgmm.jobs.plots`). :mod:`daskgmm.jobs.cluster` connects a job to
where it runs, :mod:`daskgmm.jobs.synthetic` writes synthetic data sets and
:mod:`daskgmm.jobs.demo` is the demo job.

The Zarr write policy lives in :mod:`daskgmm.jobs.outputs`: checksummed
codecs, every chunk written, stores put in place by an atomic directory
replace, :func:`~daskgmm.jobs.outputs.write_predictions` and
:func:`~daskgmm.jobs.outputs.rewrite_with_checksums`. The filesystem
primitives under it (absolute paths, owner-named temporaries, atomic file
writes) are the library's own, in :mod:`daskgmm._files`.

The library (:mod:`daskgmm` and its other modules) does not import this
package.
"""
