r"""The sliced iterative normalizing flow (SINF), fitted greedily, layer by layer, without gradient steps."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..bijections.base import ShapeLike
from ..bijections.sliced import SlicedTransform
from ..distributions import StandardNormal
from ..gaussianization import gaussianizing_knots, max_sliced_directions
from ..optimization import History, check_positive_ints
from .base import Preset, vector_features

__all__ = ["SINF"]

logger = logging.getLogger(__name__)


def _normal_nll(z: Tensor, log_det: Tensor) -> float:
    """Mean negative log-likelihood under a standard normal latent, nats per point."""
    return -float((StandardNormal(z.shape[-1]).to(z).log_prob(z) + log_det).mean())


class SINF(Preset):
    r"""Sliced iterative normalizing flow: Dai and Seljak 2021, *Sliced Iterative Normalizing Flows* (GIS, the
    data-to-latent variant).

    A stack of :class:`~torchnf.bijections.SlicedTransform` layers :math:`z = x + A(\Psi(A^\top x) - A^\top x)`,
    grown by :meth:`fit_greedy` (which :meth:`torchnf.Flow.fit` calls for it): each new layer takes the
    :math:`K` orthonormal directions :math:`A` of maximal sliced Wasserstein distance between the current latent
    points and a standard normal, and maps each projection through :math:`\Phi^{-1} \circ \hat F`, the CDF of its
    kernel density estimate followed by the normal quantile function (see :mod:`torchnf.gaussianization`).
    Layers are added until the validation log-likelihood has not improved for ``patience`` layers (or ``max_layers``
    are reached), and the best stack is kept. No gradient of the likelihood is taken, so fitting is fast and stable
    on small data sets; the result is an ordinary bijection whose splines can then be fine-tuned by gradient
    descent (``flow.fit(x, method="gradient")``).

    Args:
        event_shape: the number of dimensions :math:`D`.
        context_shape: must be ``None`` (accepted for a uniform preset signature): SINF is unconditional.
        layers: the number of layers (0 for a new model; :meth:`fit_greedy` adds layers and updates it).
        directions: directions per layer, :math:`K \le D` (default :math:`\min(D, 16)`: a full rotation for up
            to 16 dimensions; fewer, better chosen directions per layer overfit less on small high-dimensional sets).
        knots: spline knots per direction.
        max_layers: the most layers :meth:`fit_greedy` grows the stack to.
        patience: layers without a better validation log-likelihood before :meth:`fit_greedy` stops.
        bandwidth: the kernel density estimate's bandwidth, as a multiple of Scott's rule; given several, each
            layer uses the one of best validation log-likelihood (without validation data, the first).
        search_steps: gradient-ascent steps of the direction search (on the sliced distance, not the likelihood).
        search_points: the most points the direction search uses (a random subset).

    Example:
        >>> from torchnf import SINF, Flow
        >>> from torchnf.datasets import two_moons
        >>> flow = Flow(SINF(2, max_layers=3))
        >>> history = flow.fit(two_moons(1000), seed=0)
        >>> history.unit, len(flow.bijection)
        ('layer', 3)
    """

    def __init__(
        self,
        event_shape: ShapeLike,
        context_shape: ShapeLike | None = None,
        *,
        layers: int = 0,
        directions: int | None = None,
        knots: int = 32,
        max_layers: int = 100,
        patience: int = 5,
        bandwidth: float | Sequence[float] = (1.0, 2.0),
        search_steps: int = 50,
        search_points: int = 4096,
    ) -> None:
        features = vector_features(event_shape, "SINF")
        if context_shape is not None:
            raise ValueError("SINF is unconditional: it takes no context_shape")
        directions = min(features, 16) if directions is None else directions
        if isinstance(directions, bool) or not isinstance(directions, int) or not 1 <= directions <= features:
            raise ValueError(f"directions must be an integer in [1, {features}], got {directions!r}")
        if isinstance(layers, bool) or not isinstance(layers, int) or layers < 0:
            raise ValueError(f"layers must be an integer >= 0, got {layers!r}")
        check_positive_ints(max_layers=max_layers, patience=patience, search_points=search_points)
        if isinstance(search_steps, bool) or not isinstance(search_steps, int) or search_steps < 0:
            raise ValueError(f"search_steps must be an integer >= 0, got {search_steps!r}")
        if isinstance(knots, bool) or not isinstance(knots, int) or knots < 5:
            raise ValueError(f"knots must be an integer >= 5, got {knots!r}")
        bandwidths = (bandwidth,) if isinstance(bandwidth, int | float) else tuple(bandwidth)
        if not bandwidths or not all(isinstance(b, int | float) and 0 < b < math.inf for b in bandwidths):
            raise ValueError(
                f"bandwidth must be positive and finite (or a non-empty sequence of such), got {bandwidth!r}"
            )
        super().__init__([SlicedTransform(features, directions, knots) for _ in range(layers)], event_shape=features)
        self.features, self.n_directions, self.knots = features, directions, knots
        self.max_layers, self.patience, self.bandwidths = max_layers, patience, bandwidths
        self.search_steps, self.search_points = search_steps, search_points

    def _new_layer(
        self, z: Tensor, validation: tuple[Tensor, Tensor] | None, generator: torch.Generator
    ) -> SlicedTransform:
        """A layer fitted to the latent points ``z``: maximal-distance directions, then Gaussianizing splines of the
        bandwidth that does best on the ``validation`` latent points and log-determinants."""
        n = z.shape[0]
        subset = z if n <= self.search_points else z[torch.randperm(n, generator=generator)[: self.search_points]]
        directions = max_sliced_directions(subset, self.n_directions, self.search_steps, generator)
        best, best_loss = None, math.inf
        for bandwidth in self.bandwidths:
            layer = SlicedTransform(self.features, self.n_directions, self.knots).to(z)
            layer.set_directions(directions)
            knot_x, knot_y, derivatives = gaussianizing_knots(z @ directions, self.knots, bandwidth)
            layer.spline.set_knots(*(t.to(z) for t in (knot_x, knot_y, derivatives)))
            if validation is None:
                return layer
            z_val, log_det = layer(validation[0])
            loss = _normal_nll(z_val, validation[1] + log_det)
            if best is None or loss < best_loss:
                best, best_loss = layer, loss
        return best

    @torch.no_grad()
    def fit_greedy(
        self,
        x: Tensor,
        validation: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        progress: bool | None = None,
    ) -> History:
        """Grow the stack on data ``x`` ``(n, D)`` (in this bijection's input space), continuing from the current
        layers; keep the layer count of the best ``validation`` log-likelihood (without validation data, stop when
        a layer improves the training log-likelihood by less than 1e-4 nats).

        Returns a :class:`~torchnf.optimization.History` with one entry per layer tried (``unit == "layer"``);
        the losses are negative log-likelihoods under a standard normal latent, in this bijection's input space.
        """
        if x.dim() != 2 or x.shape[1] != self.features or x.shape[0] < 2:
            raise ValueError(f"SINF fits data of shape (n, {self.features}) with n >= 2, got {tuple(x.shape)}")
        generator = generator if generator is not None else torch.Generator().manual_seed(0)
        self.eval()
        z, log_det = self(x)
        z_val, log_det_val = (None, None) if validation is None else self(validation)
        history = History(unit="layer")
        start = len(self.bijections)
        best = _normal_nll(z_val, log_det_val) if z_val is not None else _normal_nll(z, log_det)
        best_count, since_best = start, 0
        with tqdm(total=self.max_layers, disable=None if progress is None else not progress, unit="layer") as bar:
            for count in range(start + 1, self.max_layers + 1):
                layer = self._new_layer(z, None if z_val is None else (z_val, log_det_val), generator)
                z, step_log_det = layer(z)
                log_det = log_det + step_log_det
                self.bijections.append(layer)
                history.step.append(count)
                history.train_loss.append(_normal_nll(z, log_det))
                if z_val is not None:
                    z_val, step_log_det = layer(z_val)
                    log_det_val = log_det_val + step_log_det
                    history.val_loss.append(_normal_nll(z_val, log_det_val))
                loss = history.val_loss[-1] if z_val is not None else history.train_loss[-1]
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}")
                improved = loss < best - (0 if z_val is not None else 1e-4)
                if math.isfinite(loss) and improved:
                    best, best_count, since_best = loss, count, 0
                    continue
                since_best += 1
                if z_val is None or since_best >= self.patience:
                    kind = "validation" if z_val is not None else "training"
                    history.stop_reason = f"no better {kind} log-likelihood in {since_best} layers"
                    break
            else:
                history.stop_reason = f"reached max_layers={self.max_layers}"
        del self.bijections[best_count:]
        self._config["layers"] = len(self.bijections)
        history.best_step = best_count
        logger.info("SINF fitting ended (%s); kept %d layers", history.stop_reason, best_count)
        return history
