"""Parameter profiles: small YAML files in, one validated frozen configuration out."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import yaml

from pidlib.config.checks import check_profile_paths
from pidlib.config.views import LastPositionSpec, RobustnessSpec, SeedsSpec
from pidlib.config.yamlfile import read_yaml
from pidlib.core.paths import REPO_ROOT
from pidlib.data.tasks import validate_tasks
from pidlib.extract.targets import TARGETS
from pidlib.interventions.spec import FLOWS
from pidlib.pid.result import MEASURES
from pidlib.pid.uncertainty import SCHEMES

__all__ = [
    "Profile",
    "DatasetSpec",
    "PIDSpec",
    "KnockoutSettings",
    "ParallelSpec",
    "RobustnessSpec",
    "LastPositionSpec",
    "SeedsSpec",
    "PROFILE_DIR",
    "available_profiles",
    "load_profile",
]

#: Where named profiles live: ``profiles/<name>.yaml`` at the repository root.
PROFILE_DIR = REPO_ROOT / "profiles"


@dataclass(frozen=True)
class DatasetSpec:
    """Which questions: the procedural Mini-GQA (default) or real GQA files on disk."""

    name: str = "minigqa"  # "minigqa" | "gqa" | "gqa-csv"
    split: str = "test"
    seed: int = 2026
    prior: float = 0.0  # Mini-GQA language-prior knob
    questions: str | None = None  # real GQA: balanced questions JSON, or a folder of Zhang CSVs
    images: str | None = None  # real GQA: folder of <imageId>.jpg
    make: str | None = None  # "minigqa": write a GQA-format folder there if absent (dry runs)

    def validate(self) -> None:
        if self.name not in ("minigqa", "gqa", "gqa-csv"):
            raise ValueError(f"dataset.name: unknown dataset {self.name!r} (minigqa, gqa, gqa-csv)")
        if self.split not in ("train", "val", "test", "fresh"):
            raise ValueError(f"dataset.split: {self.split!r} is not train, val, test or fresh")
        if not 0.0 <= self.prior <= 1.0:
            raise ValueError(f"dataset.prior: {self.prior} is outside [0, 1]")
        if self.name != "minigqa" and (self.questions is None or self.images is None):
            raise ValueError(f"dataset: {self.name} needs both 'questions' and 'images' paths")
        if self.make not in (None, "minigqa"):
            raise ValueError(f"dataset.make: {self.make!r} is not null or 'minigqa'")
        if self.make and self.name != "gqa":
            raise ValueError("dataset.make: only a 'gqa' dataset can be made from Mini-GQA")


@dataclass(frozen=True)
class PIDSpec:
    """PID Flow settings (see :func:`pidlib.pid_flow`)."""

    measures: tuple[str, ...] = ("mmi", "broja")
    pca_variance: float = 0.95
    max_dims: int = 32
    flow: bool = True
    n_bootstrap: int = 100
    n_seeds: int = 1
    bias_correction: bool = True
    scheme: str = "crossfit"  # intervals: cross-fitting + half-subsamples, or the old bootstrap

    def validate(self) -> None:
        if self.scheme not in SCHEMES:
            raise ValueError(f"pid.scheme: {self.scheme!r} is not one of {SCHEMES}")
        bad = [m for m in self.measures if m not in MEASURES]
        if bad or not self.measures:
            raise ValueError(
                f"pid.measures: {list(self.measures)} must be a non-empty subset of {MEASURES}"
            )
        if not 0.0 < self.pca_variance <= 1.0:
            raise ValueError(f"pid.pca_variance: {self.pca_variance} is outside (0, 1]")
        for name in ("max_dims", "n_seeds"):
            if getattr(self, name) < 1:
                raise ValueError(f"pid.{name}: must be >= 1, got {getattr(self, name)}")
        if self.n_bootstrap < 0:
            raise ValueError(f"pid.n_bootstrap: must be >= 0, got {self.n_bootstrap}")


@dataclass(frozen=True)
class KnockoutSettings:
    """Which attention flows to block and where: Zhang et al.'s windowed sweep (one sweep per
    window size in ``windows``, centres every ``stride`` layers) and, for each of
    ``pid_flows`` (default all four), the PID under the paper's all-layer knockout (the paper
    measures Image->Question; the flows into the last position leave V and L unchanged and
    move only the answer, so they cost no flow fits). A window that localises is a
    small fraction of the depth (k = 9 of LLaVA's 32 layers; k = 1 and 3 of 8). Older
    profiles' ``window: k`` reads as ``windows: [k]``."""

    flows: tuple[str, ...] = tuple(FLOWS)
    windows: tuple[int, ...] = (9,)
    stride: int = 1  # window centres every `stride` layers
    pid_flows: tuple[str, ...] = tuple(FLOWS)

    def validate(self) -> None:
        bad = [f for f in (*self.flows, *self.pid_flows) if f not in FLOWS]
        if bad:
            raise ValueError(
                f"knockout.flows / pid_flows: unknown flow(s) {bad}; known: {tuple(FLOWS)}"
            )
        if not self.windows or min(self.windows) < 1 or self.stride < 1:
            raise ValueError("knockout.windows (a non-empty list) and knockout.stride must be >= 1")
        if len(set(self.windows)) != len(self.windows):
            raise ValueError(f"knockout.windows: {list(self.windows)} repeats a window size")


@dataclass(frozen=True)
class ParallelSpec:
    """Where the embarrassingly parallel PID stage runs (a joblib backend)."""

    backend: str = "loky"  # "loky", "threading", "sequential", or "dask" / "ray" when installed
    n_jobs: int = 2
    address: str | None = None  # scheduler address for dask / ray
    # torch / BLAS threads of the chapter's own model forwards (feature extraction, knockouts);
    # every parallel job runs on one
    threads: int = 1

    def validate(self) -> None:
        if self.backend not in ("loky", "threading", "sequential", "dask", "ray"):
            raise ValueError(f"parallel.backend: unknown backend {self.backend!r}")
        if self.n_jobs == 0:
            raise ValueError("parallel.n_jobs: must be non-zero (joblib semantics, -1 = all cores)")
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1:
            raise ValueError(f"parallel.threads: must be an integer >= 1, got {self.threads!r}")


#: A profile's name names its build folder, ``build/<name>/``.
_FOLDER_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")
_RESERVED = ("book", "_static")  # build/book/ and build/_static/ hold the staged book


@dataclass(frozen=True)
class Profile:
    """Everything a chapter needs to know to run: models, data, PID and knockout settings."""

    name: str
    description: str = ""
    models: tuple[str, ...] = ("tiny-llava-1.5", "tiny-llava-1.6")
    dataset: DatasetSpec = field(default_factory=DatasetSpec)
    tasks: tuple[str, ...] = ()
    samples_per_task: int = 1000
    correct_only: bool = True
    target: str = "logits"
    layers: tuple[int, ...] | None = None  # None = every layer (embeddings as layer 0)
    device: str = "cpu"
    dtype: str = "float32"
    batch_size: int = 32
    seed: int = 0
    pid: PIDSpec = field(default_factory=PIDSpec)
    knockout: KnockoutSettings = field(default_factory=KnockoutSettings)
    parallel: ParallelSpec = field(default_factory=ParallelSpec)
    robustness: RobustnessSpec = field(default_factory=RobustnessSpec)
    last_position: LastPositionSpec = field(default_factory=LastPositionSpec)
    seeds: SeedsSpec = field(default_factory=SeedsSpec)
    floor_bits: float = 0.05  # information floor: shares and claims need I(V,L;Y) lo above it
    coverage_reps: int = 50  # replicates per system in the Methods chapter's coverage table
    error_ns: tuple[int, ...] = (500, 1000, 2000, 5000)  # the Methods chapter's error vs n

    def validate(self) -> Profile:
        if not _FOLDER_NAME.fullmatch(str(self.name)) or self.name in _RESERVED:
            raise ValueError(
                f"name: {self.name!r} must be a plain folder name (letters, digits, '.', '_', '-'; "
                f"not starting with '.', not {' or '.join(_RESERVED)}): build/<name>/ is its folder"
            )
        if not self.models:
            raise ValueError("models: at least one model is needed")
        object.__setattr__(self, "tasks", validate_tasks(self.tasks or "all"))
        if self.samples_per_task < 10:
            raise ValueError(f"samples_per_task: {self.samples_per_task} is too small (>= 10)")
        if self.target not in TARGETS:
            raise ValueError(f"target: {self.target!r} is not one of {TARGETS}")
        if self.layers is not None and (not self.layers or min(self.layers) < 0):
            raise ValueError(f"layers: {self.layers} must be null or non-negative layer indices")
        if self.device not in ("cpu", "cuda", "auto"):
            raise ValueError(f"device: {self.device!r} is not cpu, cuda or auto")
        if self.dtype not in ("float32", "bfloat16", "float16", "auto"):
            raise ValueError(f"dtype: {self.dtype!r} is not float32, bfloat16, float16 or auto")
        if self.batch_size < 1:
            raise ValueError(f"batch_size: must be >= 1, got {self.batch_size}")
        if not 0.0 <= self.floor_bits < 10.0:
            raise ValueError(f"floor_bits: {self.floor_bits} is outside [0, 10) bits")
        if self.coverage_reps < 2:
            raise ValueError(f"coverage_reps: must be >= 2, got {self.coverage_reps}")
        if not self.error_ns or min(self.error_ns) < 100:
            raise ValueError(f"error_ns: {list(self.error_ns)} must be sample sizes of >= 100")
        parts = (self.dataset, self.pid, self.knockout, self.parallel, self.robustness,
                 self.last_position, self.seeds)  # fmt: skip
        for part in parts:
            part.validate()
        return self

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-serialisable dict (the form stored in cache manifests)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


#: The profile's sections (nested mappings): an override of one merges into it.
_SECTIONS = frozenset(k for k, t in get_type_hints(Profile).items() if dataclasses.is_dataclass(t))


def available_profiles() -> list[str]:
    """Names of the profiles shipped in ``profiles/``."""
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


def _read(name_or_path: str | Path, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = PROFILE_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise ValueError(
            f"unknown profile {str(name_or_path)!r}; available: {', '.join(available_profiles())}"
        )
    if str(path) in seen:
        raise ValueError(f"profile {path}: circular 'extends'")
    raw, lines = read_yaml(path)
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ValueError(f"profile {path}: top level must be a mapping, not a {type(raw).__name__}")
    base = raw.pop("extends", None)
    raw.setdefault("name", path.stem)
    if base is None:
        return raw
    if not isinstance(base, str) or not base.strip():
        raise ValueError(
            f"profile {path}, line {lines.get('extends', '?')}: extends: {base!r} must be a "
            f"profile name ({', '.join(available_profiles())}) or a path to a .yaml file"
        )
    if Path(base).suffix in (".yaml", ".yml") and not Path(base).is_absolute():
        base = str(path.parent / base) if (path.parent / base).is_file() else base
    merged = _merge(_read(base, (*seen, str(path))), raw)
    merged["name"] = raw["name"]
    return merged


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Convert a YAML/papermill value to the annotated type, or raise naming ``where``."""
    origin, args = get_origin(hint), get_args(hint)
    if isinstance(value, str) and str not in (hint, *args) and origin is not tuple:
        value = yaml.safe_load(value)  # papermill -p passes numbers, bools, mappings as strings
    if isinstance(value, str) and origin is tuple and value.lstrip().startswith("["):
        value = yaml.safe_load(value)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, Mapping):
            raise ValueError(f"{where}: expected a mapping, got {value!r}")
        return _build(hint, value, where + ".")
    if args and type(None) in args:  # Optional[...]
        if value is None:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], where)
    if origin is tuple:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list | tuple):
            raise ValueError(f"{where}: expected a list, got {value!r}")
        return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where}: expected true/false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ValueError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def _build(cls: type, raw: Mapping[str, Any], prefix: str = "") -> Any:
    hints = get_type_hints(cls)
    if cls is KnockoutSettings and "window" in raw:  # older profiles: one window size, k
        raw = {**{k: v for k, v in raw.items() if k != "window"}, "windows": [raw["window"]]}
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ValueError(
            f"unknown profile key(s) {', '.join(prefix + k for k in unknown)}; "
            f"allowed here: {', '.join(sorted(names))}"
        )
    kwargs = {k: _coerce(v, hints[k], prefix + k) for k, v in raw.items()}
    if cls is Profile and kwargs.get("tasks") == ("all",):
        kwargs["tasks"] = ()
    return cls(**kwargs)


def _override(raw: dict[str, Any], key: str, value: Any) -> None:
    """Apply one override: ``key`` is top-level or dotted (``pid.n_bootstrap``); a mapping (or
    its YAML text, as papermill passes it) for a section merges into the section."""
    *parents, leaf = key.split(".")
    node = raw
    for p in parents:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ValueError(f"override {key}: {p} is not a section")
    if not parents and leaf in _SECTIONS and isinstance(value, str):
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError as err:
            raise ValueError(f"override {key}: not a YAML mapping ({err})") from None
    if isinstance(value, Mapping) and isinstance(node.get(leaf), Mapping):
        value = _merge(dict(node[leaf]), value)
    node[leaf] = value


def load_profile(
    name_or_path: str | Path = "cpu", *, check_paths: bool = True, **overrides: Any
) -> Profile:
    """Load a named profile (``profiles/<name>.yaml``) or a YAML path, apply overrides, validate.

    Overrides are top-level keys (``tasks=["ChooseAttr"]``), dotted keys for nested sections
    (``**{"pid.n_bootstrap": 10}``), or a mapping per section (``pid={"n_bootstrap": 10}``,
    also as papermill's text ``"{n_bootstrap: 10}"``), which merges into the section; ``None``
    values are ignored, so a notebook can pass its parameters cell straight through. Unknown
    keys and bad values raise ``ValueError`` naming the key; YAML errors and duplicate keys
    name the file and the line. ``check_paths``: local model folders and real-GQA paths must
    exist (``FileNotFoundError`` naming the key), so a run fails before any work.
    """
    raw = _read(name_or_path)
    for key, value in overrides.items():
        if value is not None:
            _override(raw, key, value)
    if raw.get("tasks") == "all":
        raw["tasks"] = ()
    profile = _build(Profile, raw).validate()
    if check_paths:
        check_profile_paths(profile.name, profile.models, profile.dataset)
    return profile
