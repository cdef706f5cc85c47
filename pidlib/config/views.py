"""Profile sections for the transduction chapter's extra views: other targets, the last position."""

from __future__ import annotations

from dataclasses import dataclass

from pidlib.data.tasks import validate_tasks
from pidlib.extract.targets import TARGETS

__all__ = ["RobustnessSpec", "LastPositionSpec", "SeedsSpec", "strided_layers"]


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


@dataclass(frozen=True)
class SeedsSpec:
    """Retrained models: replicate sets whose spread widens the claims' intervals, and a QA
    stage trained at planted language priors.

    ``sets``: model lists, each in the order of the profile's ``models`` (e.g. per-model seed k
    of each family on another decoder), named ``labels`` (default ``R1``, ``R2``, ...); their
    layer-wise PID runs on ``tasks`` (empty: the tasks where the profile's models pass the
    information floor). ``prior_models[i]`` was trained with its QA scenes at language prior
    ``priors[i]`` and is measured on test questions at that prior, on ``prior_tasks``. Empty
    lists: no retrains (e.g. the real models).
    """

    sets: tuple[tuple[str, ...], ...] = ()
    labels: tuple[str, ...] = ()
    tasks: tuple[str, ...] = ()
    priors: tuple[float, ...] = ()
    prior_models: tuple[str, ...] = ()
    prior_tasks: tuple[str, ...] = ()

    def validate(self) -> None:
        if self.labels and len(self.labels) != len(self.sets):
            raise ValueError(f"seeds.labels: {len(self.labels)} labels for {len(self.sets)} sets")
        if len({len(s) for s in self.sets}) > 1 or any(not s for s in self.sets):
            got = [list(s) for s in self.sets]
            raise ValueError(f"seeds.sets: every set lists the same number of models (one per "
                             f"profile model, same order); got {got}")  # fmt: skip
        if len(self.priors) != len(self.prior_models):
            raise ValueError(f"seeds.priors ({len(self.priors)}) and seeds.prior_models "
                             f"({len(self.prior_models)}) must pair up")  # fmt: skip
        if any(not 0.0 <= p <= 1.0 for p in self.priors):
            raise ValueError(f"seeds.priors: {list(self.priors)} must lie in [0, 1]")
        for name in ("tasks", "prior_tasks"):
            if getattr(self, name):
                object.__setattr__(self, name, validate_tasks(getattr(self, name)))

    def matching(self, models: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
        """The sets, checked against the profile's ``models`` (one model each, same order)."""
        bad = [list(s) for s in self.sets if len(s) != len(models)]
        if bad:
            raise ValueError(f"seeds.sets: each set lists one model per profile model "
                             f"({list(models)}), in the same order; got {bad}. Give sets that "
                             "match the models, or seeds.sets: [] for none")  # fmt: skip
        return self.sets

    def set_labels(self) -> tuple[str, ...]:
        """The sets' names: ``labels``, or ``R1``, ``R2``, ..."""
        return self.labels or tuple(f"R{k + 1}" for k in range(len(self.sets)))
