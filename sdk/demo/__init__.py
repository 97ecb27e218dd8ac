"""``fashion demo``: a synthetic catalog, a trained and published model, an added attribute
and a report (``run``: the steps; ``report``: the HTML report and training curves).

May import: every layer but ``fashion.cli``.
"""
