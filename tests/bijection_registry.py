"""The registry of bijections that the universal suite (``tests/test_bijections.py``) checks.

Every bijection of the library appears here in small random configurations. Registering a new one is one entry
in :data:`REGISTRY`, e.g.::

    Case("coupling-spline", coupling(transformer=RationalQuadratic()), (D,), supports_context=True, atol=1e-10),

A :class:`Case` knows how to build its bijection (conditional when given a context shape) and, through
:meth:`Case.instantiate`, how to make it worth testing: every parameter is perturbed (conditioner output layers
start at zero, so most bijections are the identity at construction) and data-dependent state is prepared.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from torchnf import (
    FFJORD,
    IAF,
    MAF,
    NICE,
    SINF,
    UMNNMAF,
    CouplingLRS,
    CouplingNAF,
    CouplingRQNSF,
    Glow,
    InverseAutoregressiveRQNSF,
    InvertibleResNet,
    MaskedAutoregressiveLRS,
    MaskedAutoregressiveNAF,
    MaskedAutoregressiveRQNSF,
    MultiscaleRealNVP,
    Planar,
    Preset,
    Radial,
    RealNVP,
    ResFlow,
    Sylvester,
)
from torchnf.bijections import (
    ActNorm,
    BatchNorm,
    Bijection,
    Compose,
    ContinuousFlow,
    Coupling,
    ElementwiseAffine,
    ElementwiseSpline,
    ImageCoupling,
    Invert,
    InvertibleConv1x1,
    Logit,
    LULinear,
    MaskedAutoregressive,
    Multiscale,
    Permutation,
    PlanarTransform,
    RadialTransform,
    ResidualTransform,
    Reverse,
    SlicedTransform,
    Squeeze,
    Standardization,
    SylvesterTransform,
)
from torchnf.nn import LipschitzMLP
from torchnf.transformers import (
    UMNN,
    Affine,
    DeepDenseSigmoid,
    DeepSigmoid,
    LinearRationalSpline,
    RationalQuadraticSpline,
    Shift,
)

__all__ = [
    "CONTEXT_SHAPE",
    "EXACT",
    "REGISTRY",
    "Case",
    "ContextShape",
    "data_points",
    "perturb",
    "random_context",
    "training_passes",
]

ContextShape = tuple[int, ...] | None
Build = Callable[[ContextShape], Bijection]
Prepare = Callable[[Bijection, ContextShape], None]
"""A preparation ``prepare(bijection, context_shape)``, called on the float64, perturbed bijection."""

D = 5
"""The default number of dimensions."""
HIDDEN = (16, 16)
"""Hidden widths of every conditioner network."""
CONTEXT_SHAPE = (2, 2)
"""The context shape of conditional builds (two dimensions, so that flattening the context is exercised)."""
MASK = torch.tensor([True, False, False, True, False])
"""A user-given coupling mask (``True``: kept)."""
EXACT = 1e-12
"""Log-det tolerance of bijections whose log-det has a closed form: only float64 rounding separates it from the
autograd Jacobian's (errors reached are around 1e-15). The 1e-8 default is for numerical inverses and log-dets."""
ROOT_FINDER = 1e-9
"""Log-det tolerance of transformers inverted by the shared root finder (its float64 tolerance is 1e-12)."""
QUADRATURE = 1e-8
"""Log-det tolerance of UMNN: it reports log g(x), the integrand, which equals the derivative of the Clenshaw-Curtis
quadrature map up to the quadrature error (about 1e-14 for |x| < 4, 1e-8 at |x| = 12)."""
FIXED_POINT = 1e-9
"""Log-det tolerance of residual blocks, inverted by fixed-point iteration to a float64 tolerance of 1e-12."""
PERTURBATION = 0.2
"""Standard deviation of the Gaussian noise added to every parameter."""
ODE_TOLERANCE = 1e-10
"""The float64 ``rtol`` and ``atol`` of the continuous flows' adaptive solver (per point, per step)."""
ODE = 1e-8
"""Log-det and round-trip tolerance of continuous flows solved at :data:`ODE_TOLERANCE`: local errors of 1e-10 per
step accumulate over a solve (and a round trip is two solves), and the log-det integrates the trace along the
numerical path while autograd differentiates the discrete map; errors reached are up to 1.5e-10 (round trips) and
7e-12 (log-dets), so 1e-8 leaves a margin for other seeds. In float32 the solver's tolerance is floored at 10
epsilons (1.2e-6) and round trips reach 3e-6, hence the cases' ``float32_atol`` of 1e-4."""
RK4 = 1e-8
"""Log-det and round-trip tolerance of a continuous flow with 40 fixed RK4 steps: the discrete map is only inverted
and its log-det only integrated up to the discretization error, O(h^4) with h = 1/40 (errors reached: about 1e-10)."""


IMAGE = (2, 4, 4)
"""The image shape ``(C, H, W)`` of image bijections (32 coordinates: small Jacobians, two squeezes possible)."""
IMAGE_CONTEXT = (1, 4, 4)
"""An image-shaped context, concatenated to the conditioner's input channels (variational dequantization's)."""
IMAGE_NET = {"hidden_channels": 8, "blocks": 1}
"""The size of every convolutional conditioner."""
CONV_PERTURBATION = 0.05
"""The parameter noise of image presets and spline image couplings. Convolutions have a fan-in of 9 times their
channels, so :data:`PERTURBATION` gives conditioner outputs of several units: the presets' 10-20 perturbed layers
then drive latent points to logits beyond 40, where the sigmoid (the logit's inverse) saturates in float64 and the
autograd Jacobian becomes singular, and spline parameters that extreme squeeze bins to their minimum width, where
float32 inverts to 1e-2 only. At 0.05 the maps still move points by O(1)."""


def image_coupling(**options: object) -> Build:
    """An :class:`ImageCoupling` factory over :data:`IMAGE` with small networks."""
    return lambda context_shape: ImageCoupling(IMAGE, context_shape=context_shape, **{**IMAGE_NET, **options})


def image_preset(cls: type[Preset], **options: object) -> Build:
    """A factory of an image preset over :data:`IMAGE` with small networks."""
    return lambda context_shape: cls(IMAGE, context_shape, **{**IMAGE_NET, **options})


def multiscale(context_shape: ContextShape) -> Bijection:
    """Two levels: a coupling and a squeeze to (8, 2, 2), four channels factored out, a coupling of the rest."""
    first = Compose([ImageCoupling(IMAGE, context_shape=context_shape, **IMAGE_NET), Squeeze(IMAGE)])
    second = ImageCoupling((4, 2, 2), mask="channel", context_shape=context_shape, **IMAGE_NET)
    return Multiscale([first, second])


def continuous(**options: object) -> Build:
    """A :class:`ContinuousFlow` factory: small tanh dynamics, exact trace, solved at :data:`ODE_TOLERANCE`."""
    settings: dict[str, object] = {"hidden": (16, 16), "time": 2.0, "activation": "tanh"}
    settings |= {"rtol": ODE_TOLERANCE, "atol": ODE_TOLERANCE}
    return lambda context_shape: ContinuousFlow(D, context_shape=context_shape, **{**settings, **options})


def data_points(
    bijection: Bijection, batch_shape: tuple[int, ...], dtype: torch.dtype, scale: float = 1.0, shift: float = 0.0
) -> torch.Tensor:
    """Inputs of shape ``(*batch_shape, *event_shape)``: ``shift + scale * N(0, 1)``, or, for a bijection with a
    bounded :attr:`~Bijection.domain`, uniform over its middle 96% (``scale`` and ``shift`` then do not apply)."""
    if bijection.domain is None:
        return shift + scale * torch.randn(*batch_shape, *bijection.event_shape, dtype=dtype)
    low, high = bijection.domain
    return low + (high - low) * (0.02 + 0.96 * torch.rand(*batch_shape, *bijection.event_shape, dtype=dtype))


def random_context(
    context_shape: ContextShape, batch_shape: tuple[int, ...], dtype: torch.dtype
) -> torch.Tensor | None:
    """A standard normal context of shape ``(*batch_shape, *context_shape)``, or ``None`` for no context."""
    return None if context_shape is None else torch.randn(*batch_shape, *context_shape, dtype=dtype)


def perturb(module: nn.Module, seed: int = 0, scale: float = PERTURBATION) -> None:
    """Add ``scale * N(0, 1)`` noise (seeded) to every parameter, so no map is left at its identity start."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            noise = torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype)
            parameter.add_(scale * noise.to(parameter.device))


def no_preparation(bijection: Bijection, context_shape: ContextShape) -> None:
    """Nothing to prepare: the bijection has no data-dependent state."""


def training_passes(n: int, batch: int = 64) -> Prepare:
    """A preparation running ``n`` training-mode forward passes on random batches of mean 1 and std 2 (uniform
    within a bounded domain, see :func:`data_points`).

    One pass runs ActNorm's data-dependent initialization; a few move BatchNorm's running statistics away from
    their defaults. The data is deliberately not standard normal, so that neither ends up near the identity.
    """

    def prepare(bijection: Bijection, context_shape: ContextShape) -> None:
        bijection.train()
        with torch.no_grad():
            for _ in range(n):
                x = data_points(bijection, (batch,), torch.float64, scale=2.0, shift=1.0)
                bijection(x, random_context(context_shape, (batch,), torch.float64))
        bijection.eval()

    return prepare


def random_directions(bijection: Bijection, context_shape: ContextShape) -> None:
    """Give every :class:`SlicedTransform` random orthonormal directions (a new one uses coordinate axes)."""
    generator = torch.Generator().manual_seed(1)
    for layer in bijection.modules():
        if isinstance(layer, SlicedTransform):
            features, k = layer.directions.shape
            q = torch.linalg.qr(torch.randn(features, features, generator=generator, dtype=torch.float64)).Q
            layer.set_directions(q[:, :k].to(layer.directions))


def fitted_standardization(bijection: Bijection, context_shape: ContextShape) -> None:
    """Fit a :class:`Standardization` to data of mean 1 and standard deviation 2, like the training data would."""
    bijection.fit(1.0 + 2.0 * torch.randn(256, *bijection.event_shape, dtype=torch.float64))


@dataclass(frozen=True)
class Case:
    """One registered bijection configuration.

    Attributes:
        name: the test id.
        build: a factory ``build(context_shape)``; given a shape it returns a conditional version.
        event_shape: the shape of one input point.
        supports_context: whether ``build`` accepts a context shape (else it is only called with ``None``).
        atol: tolerance of the float64 log-det check against the autograd Jacobian.
        train_eval_agree: whether training-mode and evaluation-mode calls give the same outputs.
        prepare: data-dependent initialization, run in float64 after perturbation (see :data:`Prepare`).
        volume_preserving: the log-det is identically zero (the suite otherwise checks it is not).
        unused_without_context: parameters that structurally get no gradient in the unconditional build (e.g.
            a MADE first layer whose mask is all zero when ``D = 1``).
        float32_atol: absolute tolerance of the float32 round trip (stacks of spline or root-found layers lose
            a few more bits than one affine layer).
        round_trip_atol: relative and absolute tolerance of the float64 round trip, maps and log-dets (maps
            inverted by an iterative solver, such as an ODE solver, reach their stated tolerance, not rounding).
        context_shape: the context shape of the conditional build (image-shaped for layers that take images).
        perturbation: the standard deviation of the noise added to every parameter (deep stacks of convolutional
            couplings take less: the default compounds over their layers into saturated logits).
    """

    name: str
    build: Build
    event_shape: tuple[int, ...]
    supports_context: bool = False
    atol: float = 1e-8
    train_eval_agree: bool = True
    prepare: Prepare = no_preparation
    volume_preserving: bool = False
    unused_without_context: tuple[str, ...] = ()
    float32_atol: float = 1e-5
    round_trip_atol: float = 1e-9
    context_shape: tuple[int, ...] = CONTEXT_SHAPE
    perturbation: float = PERTURBATION

    @property
    def context_shapes(self) -> list[ContextShape]:
        """The context shapes the suite builds this case with: ``None``, and a context when supported."""
        return [None, self.context_shape] if self.supports_context else [None]

    def instantiate(
        self,
        context_shape: ContextShape = None,
        dtype: torch.dtype = torch.float64,
        seed: int = 0,
        prepare: bool = True,
    ) -> Bijection:
        """Build (under ``seed``), perturb and prepare in float64, then cast to ``dtype``; in evaluation mode."""
        torch.manual_seed(seed)
        bijection = self.build(context_shape).double()
        perturb(bijection, seed, self.perturbation)
        if prepare:
            self.prepare(bijection, context_shape)
        return bijection.to(dtype).eval()


def mirror_weights(network: LipschitzMLP) -> None:
    """Make a Lipschitz network's Jacobian far from zero, and set its power iterations' vectors to the exact
    singular vectors (their fixed point), so that its spectral norms no longer change in training mode.

    Random weights give Jacobians :math:`W_3 D_2 W_2 D_1 W_1` whose traces (the log-dets, to first order) nearly
    cancel. Mirrored weights, :math:`W_3 = W_1^\\top` and a symmetric positive :math:`W_2`, give traces of one
    sign: log-dets of order one, with the spectral normalization active (a contraction near its bound).
    """
    weights = [linear.weight for linear in network.linears]
    with torch.no_grad():
        for i, weight in enumerate(weights[: (len(weights) + 1) // 2]):
            mirror = weights[-1 - i]
            if mirror is weight:
                weight.copy_(weight @ weight.mT)
            else:
                mirror.copy_(weight.mT)
        for linear in network.linears:
            left, _, right = torch.linalg.svd(linear.weight)
            linear.u.copy_(left[:, 0])
            linear.v.copy_(right[0])


def converged_norms(bijection: Bijection, context_shape: ContextShape) -> None:
    """:func:`mirror_weights` for every residual branch inside ``bijection``."""
    for network in bijection.modules():
        if isinstance(network, LipschitzMLP):
            mirror_weights(network)


def converged_norms_and_actnorm(bijection: Bijection, context_shape: ContextShape) -> None:
    """:func:`converged_norms`, then one training pass to initialize ActNorm layers."""
    converged_norms(bijection, context_shape)
    training_passes(1)(bijection, context_shape)


def residual_block(activation: str) -> Build:
    """A factory of a :class:`ResidualTransform` with exact log-determinants and small hidden widths."""
    return lambda context_shape: ResidualTransform(D, context_shape, HIDDEN, activation, log_det="exact")


def residual_preset(cls: type[Preset]) -> Build:
    """A factory of a residual preset with 3 blocks of small hidden widths (exact log-determinants at ``D = 5``)."""
    return lambda context_shape: cls(D, context_shape, layers=3, hidden=HIDDEN)


def coupling(features: int = D, **options: object) -> Build:
    """A :class:`Coupling` factory with small hidden widths; ``options`` go to its constructor."""
    return lambda context_shape: Coupling(features, context_shape=context_shape, hidden=HIDDEN, **options)


def autoregressive(features: int = D, **options: object) -> Build:
    """A :class:`MaskedAutoregressive` factory with small hidden widths; ``options`` go to its constructor."""
    return lambda context_shape: MaskedAutoregressive(features, context_shape=context_shape, hidden=HIDDEN, **options)


def inverted(build: Build) -> Build:
    """The factory of the inverse of what ``build`` makes."""
    return lambda context_shape: Invert(build(context_shape))


def preset(cls: type[Preset], **options: object) -> Build:
    """A factory of a preset (``NICE``, ``RealNVP``, ``MAF``, ``IAF``) with 3 layers and small hidden widths."""
    return lambda context_shape: cls(D, context_shape, layers=3, hidden=HIDDEN, **options)


def mixed_composition(context_shape: ContextShape) -> Bijection:
    """A composition of linear, normalization, coupling and (inverse) autoregressive layers."""
    return Compose(
        [
            ActNorm(D),
            Coupling(D, Affine(), "alternate", context_shape=context_shape, hidden=HIDDEN),
            Reverse(D),
            LULinear(D),
            Invert(MaskedAutoregressive(D, context_shape=context_shape, hidden=HIDDEN)),
            ElementwiseAffine(D),
        ]
    )


REGISTRY: list[Case] = [
    # coupling layers
    Case("coupling-affine-half", coupling(transformer=Affine()), (D,), supports_context=True, atol=EXACT),
    Case("coupling-affine-alternate", coupling(mask="alternate"), (D,), supports_context=True, atol=EXACT),
    Case("coupling-affine-bool-mask", coupling(mask=MASK), (D,), supports_context=True, atol=EXACT),
    Case("coupling-affine-flip", coupling(flip=True), (D,), supports_context=True, atol=EXACT),
    Case("coupling-affine-residual", coupling(residual=True), (D,), supports_context=True, atol=EXACT),
    Case(
        "coupling-shift", coupling(transformer=Shift()), (D,), supports_context=True, atol=EXACT, volume_preserving=True
    ),
    Case("coupling-affine-d2", coupling(2), (2,), supports_context=True, atol=EXACT),
    Case("coupling-affine-d1-half", coupling(1, mask="half"), (1,), supports_context=True, atol=EXACT),
    # masked autoregressive layers
    Case("made-affine", autoregressive(transformer=Affine()), (D,), supports_context=True, atol=EXACT),
    Case("made-affine-order", autoregressive(order=[2, 4, 0, 3, 1]), (D,), supports_context=True, atol=EXACT),
    Case("made-affine-residual", autoregressive(residual=True), (D,), supports_context=True, atol=EXACT),
    Case(
        "made-affine-d1",
        autoregressive(1),
        (1,),
        supports_context=True,
        atol=EXACT,
        unused_without_context=("made.net.0.weight",),
    ),
    Case("iaf-layer", lambda c: Invert(autoregressive()(c)), (D,), supports_context=True, atol=EXACT),
    # linear and normalization layers
    Case("permutation-random", lambda c: Permutation(D), (D,), atol=EXACT, volume_preserving=True),
    Case("permutation-given", lambda c: Permutation(D, [3, 0, 4, 1, 2]), (D,), atol=EXACT, volume_preserving=True),
    Case("reverse", lambda c: Reverse(D), (D,), atol=EXACT, volume_preserving=True),
    Case("elementwise-affine", lambda c: ElementwiseAffine(D), (D,), atol=EXACT),
    Case("elementwise-affine-shared", lambda c: ElementwiseAffine((3, 4), (3, 1)), (3, 4), atol=EXACT),
    Case("lu-orthogonal", lambda c: LULinear(D, "orthogonal"), (D,), atol=EXACT),
    Case("lu-identity", lambda c: LULinear(D, "identity"), (D,), atol=EXACT),
    Case("actnorm", lambda c: ActNorm(D), (D,), atol=EXACT, prepare=training_passes(1)),
    Case("actnorm-shared", lambda c: ActNorm((3, 4), (3, 1)), (3, 4), atol=EXACT, prepare=training_passes(1)),
    Case("batchnorm", lambda c: BatchNorm(D), (D,), atol=EXACT, prepare=training_passes(3), train_eval_agree=False),
    Case("standardization", lambda c: Standardization(D), (D,), atol=EXACT, prepare=fitted_standardization),
    Case(
        "standardization-image", lambda c: Standardization((2, 3)), (2, 3), atol=EXACT, prepare=fitted_standardization
    ),
    Case(
        "compose-linear",
        lambda c: Compose([Permutation(D), LULinear(D), ElementwiseAffine(D), Reverse(D)]),
        (D,),
        atol=EXACT,
    ),
    Case("compose-mixed", mixed_composition, (D,), supports_context=True, atol=EXACT, prepare=training_passes(1)),
    # presets
    Case("nice", preset(NICE), (D,), supports_context=True, atol=EXACT),
    Case(
        "realnvp-actnorm",
        preset(RealNVP, normalization="actnorm"),
        (D,),
        supports_context=True,
        atol=EXACT,
        prepare=training_passes(1),
    ),
    Case(
        "realnvp-batchnorm",
        preset(RealNVP, normalization="batchnorm"),
        (D,),
        supports_context=True,
        atol=EXACT,
        prepare=training_passes(3),
        train_eval_agree=False,
    ),
    Case("realnvp-plain", preset(RealNVP, normalization=None), (D,), supports_context=True, atol=EXACT),
    Case(
        "realnvp-residual", preset(RealNVP, normalization=None, residual=True), (D,), supports_context=True, atol=EXACT
    ),
    Case("maf", preset(MAF), (D,), supports_context=True, atol=EXACT, prepare=training_passes(1)),
    Case("iaf", preset(IAF), (D,), supports_context=True, atol=EXACT, prepare=training_passes(1)),
    # spline transformers (bound 2, so inputs fall both inside the spline and in its identity tails)
    Case("coupling-rq-spline", coupling(transformer=RationalQuadraticSpline(4, 2.0)), (D,), True, EXACT),
    Case("made-rq-spline", autoregressive(transformer=RationalQuadraticSpline(4, 2.0)), (D,), True, EXACT),
    Case("iaf-rq-spline", inverted(autoregressive(transformer=RationalQuadraticSpline(4, 2.0))), (D,), True, EXACT),
    Case("coupling-lr-spline", coupling(transformer=LinearRationalSpline(4, 2.0)), (D,), True, EXACT),
    Case("made-lr-spline", autoregressive(transformer=LinearRationalSpline(4, 2.0)), (D,), True, EXACT),
    # neural transformers: inverses by the shared root finder (float64 tolerance 1e-12 relative)
    Case("coupling-dsf", coupling(transformer=DeepSigmoid(4)), (D,), True, ROOT_FINDER),
    Case("made-ddsf", autoregressive(transformer=DeepDenseSigmoid(3, 2)), (D,), True, ROOT_FINDER),
    Case("iaf-dsf", inverted(autoregressive(transformer=DeepSigmoid(4))), (D,), True, ROOT_FINDER),
    # UMNN has weights of its own: a fresh transformer per build
    Case("coupling-umnn", lambda c: coupling(transformer=UMNN(4, (8, 8)))(c), (D,), True, QUADRATURE),
    Case("made-umnn", lambda c: autoregressive(transformer=UMNN(4, (8, 8)))(c), (D,), True, QUADRATURE),
    # free-knot splines and sliced layers (SINF's parts), with random knots and directions
    Case("elementwise-spline", lambda c: ElementwiseSpline(D, 6), (D,), atol=EXACT),
    Case("sliced-full", lambda c: SlicedTransform(D, D, 6), (D,), atol=EXACT, prepare=random_directions),
    Case("sliced-partial", lambda c: SlicedTransform(D, 2, 6), (D,), atol=EXACT, prepare=random_directions),
    Case("SINF", lambda c: SINF(D, layers=3, knots=6), (D,), atol=EXACT, prepare=random_directions),
    # spline and neural presets
    *[
        Case(cls.__name__, preset(cls), (D,), True, atol, prepare=training_passes(1), float32_atol=1e-4)
        for cls, atol in [
            (CouplingRQNSF, EXACT),
            (MaskedAutoregressiveRQNSF, EXACT),
            (InverseAutoregressiveRQNSF, EXACT),
            (CouplingLRS, EXACT),
            (MaskedAutoregressiveLRS, EXACT),
            (CouplingNAF, ROOT_FINDER),
            (MaskedAutoregressiveNAF, ROOT_FINDER),
            (UMNNMAF, QUADRATURE),
        ]
    ],
    # -- residual flows (bijections/residual.py): i-ResNet, ResFlow --
    *[
        Case(f"residual-{activation}", residual_block(activation), (D,), True, FIXED_POINT, prepare=converged_norms)
        for activation in ("lipswish", "elu", "tanh")
    ],
    Case("residual-inverted", inverted(residual_block("lipswish")), (D,), True, FIXED_POINT, prepare=converged_norms),
    *[
        Case(cls.__name__, residual_preset(cls), (D,), True, FIXED_POINT, prepare=converged_norms_and_actnorm)
        for cls in (InvertibleResNet, ResFlow)
    ],
    # -- planar, radial and Sylvester flows --
    # (planar and Sylvester layers invert with the root finder; radial layers are closed form both ways)
    Case("planar", lambda c: PlanarTransform(D, c, HIDDEN), (D,), True, ROOT_FINDER),
    Case("planar-inverted", inverted(lambda c: PlanarTransform(D, c, HIDDEN)), (D,), True, ROOT_FINDER),
    Case("radial", lambda c: RadialTransform(D, c, HIDDEN), (D,), True, EXACT),
    Case("radial-inverted", inverted(lambda c: RadialTransform(D, c, HIDDEN)), (D,), True, EXACT),
    Case("sylvester", lambda c: SylvesterTransform(D, 3, c, HIDDEN), (D,), True, ROOT_FINDER),
    Case("sylvester-d-inverted", inverted(lambda c: SylvesterTransform(D, D, c, HIDDEN)), (D,), True, ROOT_FINDER),
    *[
        Case(f"{cls.__name__}-{closed_form}", preset(cls, closed_form=closed_form), (D,), True, atol)
        for cls, atol in [(Planar, ROOT_FINDER), (Radial, EXACT), (Sylvester, ROOT_FINDER)]
        for closed_form in ("sample", "density")
    ],
    # -- continuous flows (bijections/continuous.py): FFJORD --
    Case("continuous", continuous(trainable_time=True), (D,), True, ODE, round_trip_atol=ODE, float32_atol=1e-4),
    Case("continuous-rk4", continuous(solver="rk4", steps=40), (D,), True, RK4, round_trip_atol=RK4, float32_atol=1e-4),
    Case(
        "FFJORD",
        lambda c: FFJORD(
            D, c, layers=2, hidden=(8, 8), activation="softplus", time=2.0, rtol=ODE_TOLERANCE, atol=ODE_TOLERANCE
        ),
        (D,),
        True,
        ODE,
        round_trip_atol=ODE,
        float32_atol=1e-4,
    ),
    # -- image flows: squeeze, 1x1 convolutions, image couplings, multi-scale levels, the logit pre-transform --
    Case("squeeze", lambda c: Squeeze(IMAGE), IMAGE, atol=EXACT, volume_preserving=True),
    Case("squeeze-factor-4", lambda c: Squeeze(IMAGE, 4), IMAGE, atol=EXACT, volume_preserving=True),
    Case("invertible-conv1x1", lambda c: InvertibleConv1x1(IMAGE), IMAGE, atol=EXACT),
    Case("invertible-conv1x1-identity", lambda c: InvertibleConv1x1(IMAGE, "identity"), IMAGE, atol=EXACT),
    Case("actnorm-per-channel", lambda c: ActNorm(IMAGE, (2, 1, 1)), IMAGE, atol=EXACT, prepare=training_passes(1)),
    *[
        Case(f"image-coupling-{mask}{'-flip' * flip}", image_coupling(mask=mask, flip=flip), IMAGE, True, EXACT)
        for mask in ("checkerboard", "channel")
        for flip in (False, True)
    ],
    Case(
        "image-coupling-additive",
        image_coupling(transformer=Shift()),
        IMAGE,
        True,
        EXACT,
        volume_preserving=True,
    ),
    Case(
        "image-coupling-spline",
        image_coupling(transformer=RationalQuadraticSpline(4, 2.0)),
        IMAGE,
        True,
        EXACT,
        perturbation=CONV_PERTURBATION,
    ),
    Case(
        "image-coupling-image-context",
        image_coupling(mask="channel"),
        IMAGE,
        True,
        EXACT,
        context_shape=IMAGE_CONTEXT,
    ),
    Case("multiscale", multiscale, IMAGE, True, EXACT),
    Case("logit", lambda c: Logit(D), (D,), atol=EXACT),
    Case("logit-image-interval", lambda c: Logit(IMAGE, -1.0, 3.0, alpha=0.0), IMAGE, atol=EXACT),
    *[
        Case(
            name,
            image_preset(cls, coupling=coupling, bins=4, bound=2.0, **options),
            IMAGE,
            True,
            EXACT,
            prepare=training_passes(1),
            perturbation=CONV_PERTURBATION,
            float32_atol=1e-4,
        )
        for name, cls, coupling, options in [
            *[
                (f"MultiscaleRealNVP-{coupling}", MultiscaleRealNVP, coupling, {"levels": 2, "steps": 1})
                for coupling in ("affine", "additive", "spline")
            ],
            *[
                (f"Glow-{coupling}", Glow, coupling, {"levels": 2, "steps": 2})
                for coupling in ("affine", "additive", "spline")
            ],
            ("Glow-affine-standard-prior", Glow, "affine", {"levels": 2, "steps": 2, "learned_prior": False}),
        ]
    ],
    Case(
        "Glow-no-logit",
        image_preset(Glow, levels=1, steps=1, pre_transform=None),
        IMAGE,
        True,
        EXACT,
        prepare=training_passes(1),
        perturbation=CONV_PERTURBATION,
        float32_atol=1e-4,
    ),
]
