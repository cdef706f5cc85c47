"""Profile sections for the transduction chapter's extra views: other targets, the last position."""

from __future__ import annotations

from dataclasses import dataclass

from pidlib.extract.targets import TARGETS

__all__ = ["RobustnessSpec", "LastPositionSpec", "strided_layers"]


def strided_layers(n_layers: int, stride: int) -> tuple[int, ...]:
    """Hidden-state indices ``0, stride, 2 * stride, ...`` and always the last, ``n_layers``."""
    return tuple(sorted({*range(0, n_layers + 1, stride), n_layers}))


@dataclass(frozen=True)
class RobustnessSpec:
    """The chapter's claims re-tested under other targets Y, with cheaper PID settings.

    Every target (including the chapter's own) is measured with the same settings, so the
    columns of the robustness table differ only in Y: ``flow`` (False: the Gaussian PID of the
    cross-fitted PCA scores, no normalizing flow), ``n_seeds`` cross-fitting splits,
    ``n_bootstrap`` half-subsamples, every ``layer_stride``-th layer (and the last), MMI only.
    """

    targets: tuple[str, ...] = ("logits", "canonical", "margin", "hidden")
    flow: bool = False
    n_seeds: int = 1
    n_bootstrap: int = 20
    layer_stride: int = 1

    def validate(self) -> None:
        bad = [t for t in self.targets if t not in TARGETS]
        if bad or not self.targets:
            raise ValueError(f"robustness.targets: {list(self.targets)} must be a non-empty "
                             f"subset of {TARGETS}")  # fmt: skip
        if self.n_seeds < 1 or self.layer_stride < 1:
            raise ValueError("robustness.n_seeds and robustness.layer_stride must be >= 1")
        if self.n_bootstrap < 2:
            raise ValueError(f"robustness.n_bootstrap: must be >= 2, got {self.n_bootstrap}")


@dataclass(frozen=True)
class LastPositionSpec:
    """The last prompt position as a third view: linear probes of the model's answer from V, L,
    [V, L] and Last, and I(Last; Y) (with the robustness section's PID settings).

    ``probe_folds``-fold stratified cross-validated logistic regression (inverse regularisation
    ``probe_c``) on every ``layer_stride``-th layer; the answer counts as formed at the first
    layer where the Last probe's accuracy (mean over tasks) has made ``formed_at`` of its gain
    from the majority answer's rate to its best layer.
    """

    probe_folds: int = 5
    probe_c: float = 1.0
    layer_stride: int = 1
    formed_at: float = 0.9

    def validate(self) -> None:
        if self.probe_folds < 2:
            raise ValueError(f"last_position.probe_folds: must be >= 2, got {self.probe_folds}")
        if self.probe_c <= 0:
            raise ValueError(f"last_position.probe_c: must be > 0, got {self.probe_c}")
        if self.layer_stride < 1:
            raise ValueError("last_position.layer_stride: must be >= 1")
        if not 0.0 < self.formed_at <= 1.0:
            raise ValueError(f"last_position.formed_at: {self.formed_at} is outside (0, 1]")
