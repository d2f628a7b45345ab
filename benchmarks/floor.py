"""How close torchnf's training step is to its floor: the conditioner networks' own forward and backward passes.

Usage (from the repository root): ``.venv/bin/python -m benchmarks.floor [--threads N] [--dims D ...]
[--presets NAME ...] [--compile]``. For each preset (5 layers, hidden [128, 128], 8 bins, no normalization layers,
batch 512) it times, by the median of repeated calls after warm-up:

- the training step as ``Flow.fit`` takes it (mean negative log-likelihood, backward, the fused Adam it makes),
  with ``--compile`` as ``Flow.fit(compile=True)`` takes it;
- the forward and backward pass alone (no optimizer);
- the floor: the same batch through every conditioner network (coupling MLPs on their kept halves, MADEs on all
  dimensions), summed, forward and backward; that is the matrix work no implementation of the flow can avoid.

It prints a Markdown table with the two ratios to the floor.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import torch
from torch import Tensor, nn

from torchnf import MAF, CouplingLRS, CouplingRQNSF, Flow, MaskedAutoregressiveLRS, MaskedAutoregressiveRQNSF, RealNVP
from torchnf.bijections.autoregressive import MaskedAutoregressive
from torchnf.bijections.coupling import Coupling
from torchnf.optimization import make_optimizer
from torchnf.training import compiled_log_prob

from .peers.timing import measure

PRESETS = {
    preset.__name__: preset
    for preset in (MAF, RealNVP, CouplingRQNSF, MaskedAutoregressiveRQNSF, CouplingLRS, MaskedAutoregressiveLRS)
}


def _networks(flow: Flow) -> list[tuple[nn.Module, int]]:
    """Every conditioner network of ``flow`` with its input width."""
    found: list[tuple[nn.Module, int]] = []
    for module in flow.modules():
        if isinstance(module, Coupling):
            found.append((module.net, len(module.kept)))
        elif isinstance(module, MaskedAutoregressive):
            found.append((module.made, module.event_shape[0]))
    return found


def _median_ms(call: Callable[[], object], repeats: int) -> float:
    return 1e3 * measure(call, warmup=3, repeats=repeats, budget_s=30.0).median_s


def row(name: str, dim: int, batch: int, repeats: int, compile: bool = False) -> str:
    """One table row: the preset's times and ratios at ``dim`` dimensions."""
    torch.manual_seed(0)
    flow = Flow(PRESETS[name](dim, layers=5, hidden=(128, 128), normalization=None)).train()
    x = torch.randn(batch, dim)
    params = [p for p in flow.parameters() if p.requires_grad]
    optimizer = make_optimizer("adam", params, 1e-3, 0.0)
    log_prob = compiled_log_prob(flow) if compile else flow.unchecked_log_prob

    def forward_backward() -> None:
        optimizer.zero_grad(set_to_none=True)
        (-log_prob(x, None).mean()).backward()

    def step() -> None:
        forward_backward()
        optimizer.step()

    networks = _networks(flow)
    inputs = [torch.randn(batch, width) for _, width in networks]

    def floor() -> None:
        optimizer.zero_grad(set_to_none=True)
        total: Tensor = sum(net(h).sum() for (net, _), h in zip(networks, inputs, strict=True))  # type: ignore[assignment]
        total.backward()

    step_ms, pass_ms, floor_ms = (_median_ms(call, repeats) for call in (step, forward_backward, floor))
    return (
        f"| {name} | {dim} | {step_ms:.3g} | {pass_ms:.3g} | {floor_ms:.3g} | {step_ms / floor_ms:.2f} "
        f"| {pass_ms / floor_ms:.2f} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.floor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 8, 64])
    parser.add_argument("--presets", nargs="+", choices=list(PRESETS), default=list(PRESETS))
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--compile", action="store_true", help="time the compiled training step (fit(compile=True))")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"- command: `{' '.join(['python -m benchmarks.floor', *(sys.argv[1:] if argv is None else argv)])}`")
    print(
        f"- torch {torch.__version__}, {torch.get_num_threads()} thread(s), batch {args.batch}, median of "
        f"{args.repeats} calls after 3 warm-up calls\n"
    )
    print(
        "| preset | D | training step, ms | forward + backward, ms | floor, ms | step / floor | "
        "forward + backward / floor |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for name in args.presets:
        for dim in args.dims:
            print(row(name, dim, args.batch, args.repeats, args.compile), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
