"""Side-by-side benchmarks of torchnf against peer libraries (zuko, nflows, normflows, torchflows).

Run from the repository root: ``python -m benchmarks.peers speed`` times a training step, ``log_prob`` and
sampling of equivalent models in every installed library; ``python -m benchmarks.peers quality`` fits each library
for the same wall-clock time and compares test log-likelihoods. The pieces: :mod:`.spec` (what "equivalent"
means), one ``build_<library>`` module per library, :mod:`.libraries` (which are usable), :mod:`.operations`,
:mod:`.adapter` (the common face of a built model), :mod:`.wrappers`, :mod:`.timing`, :mod:`.memory`, :mod:`.case`,
:mod:`.worker` and :mod:`.remote` (one measurement, in a fresh process), :mod:`.speed` and :mod:`.quality` (the two
modes), :mod:`.tables`, :mod:`.environment` and :mod:`.cli`. ``torchnf-compiled`` is torchnf through
``torch.compile`` (:mod:`.build_torchnf_compiled`).
"""
