"""``fashion demo``: a synthetic catalog, a trained and published model, an added attribute
and a report (``run``: the steps; ``settings``: its sizes and result; ``report``: the report and
training curves).

May import: every layer but ``fashion.cli``. Exports nothing here: ``run.run_demo`` is the
entry point.
"""
