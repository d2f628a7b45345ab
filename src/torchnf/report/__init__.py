"""Model reports: plots and a metrics summary of a flow on evaluation data (``torchnf report``).

:func:`write_report` writes PNG figures and a Markdown or self-contained HTML summary into a folder. Figures are
drawn on :class:`matplotlib.figure.Figure` objects directly, so no pyplot state or interactive backend is involved.
A flow over images (event shape ``(C, H, W)``, or vectors that are flattened images) gets an image report instead:
grids of samples and of data images, latent interpolation strips and bits per dimension
(:mod:`torchnf.images`), written as PNG pictures by :func:`write_image_grid`.

The public API is what this package exports; its modules are internal:

- :mod:`.write`: :func:`write_report`, the checks on its arguments, and the choice of a vector or an image report.
- :mod:`.vectors`: the report of a flow over vectors: density map, pair plot, marginals and log-likelihoods.
- :mod:`.images`: the report of a flow over images, and :func:`write_image_grid`.
- :mod:`.summary`: :class:`ReportFiles` and the summary page (Markdown or HTML): captions, metric rows.
- :mod:`.figures`: what both reports draw alike: saving a figure, the training curves.
- :mod:`.evaluation`: the flow's log-densities in chunks, under a seed that leaves the caller's random state alone.
"""

from .images import write_image_grid
from .summary import ReportFiles
from .write import write_report

__all__ = ["ReportFiles", "write_image_grid", "write_report"]
