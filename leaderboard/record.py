"""The record format: typed models, the one description of what a record holds.

A record is one evaluated (protocol, defense or external model, seed). These pydantic models
are the only place the format is written down: the validator (`validate_record`), the
committed JSON Schema (`leaderboard/schema/record.schema.json`) and the field table of
`docs/record-format.md` are generated from them (`leaderboard.record_docs`; `python -m
leaderboard.record_docs` rewrites both; a test fails when either is stale). Rules that tie one
field to another (eps keys equal to `protocol.eps`, list lengths equal to `num_classes`,
certified accuracy at most L2-PGD's, ...) are checked after the structure
(`leaderboard.record_rules`) and listed in the JSON Schema's description.

Errors name the source file and the dotted field path (`robust_acc.pgd.0.3`, list items as
`per_class.n[3]`). Numbers are JSON numbers (a bool is not a number; an int is accepted where a
float is expected), never NaN or infinite; accuracies are fractions in [0, 1]. No torch here.
"""
from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_serializer

from leaderboard.flags import SANITY_FLAGS
from leaderboard.record_rules import Consistency, dotted, kind_of, message
from leaderboard.record_types import (
    EPS_PATTERN,
    FIDELITIES,
    SCHEMA_VERSION,
    SEED_MAX,
    SHA256_PATTERN,
    UTC_PATTERN,
    RecordError,
)

__all__ = ["FIDELITIES", "SCHEMA_VERSION", "Record", "RecordError", "build_record", "eps_value", "load_record",
           "validate_record"]


# -- field types ------------------------------------------------------------------------------
Frac = Annotated[float, Field(ge=0, le=1, description="a fraction in [0, 1]")]
NonNeg = Annotated[float, Field(ge=0)]
Count = Annotated[int, Field(ge=0)]
Positive = Annotated[int, Field(ge=1)]
Seed = Annotated[int, Field(ge=0, le=SEED_MAX)]
Name = Annotated[str, Field(min_length=1)]
Sha256 = Annotated[str, Field(pattern=SHA256_PATTERN)]
Eps = Annotated[str, Field(pattern=EPS_PATTERN)]
Utc = Annotated[str, Field(pattern=UTC_PATTERN)]
ByEps = dict[Eps, Frac]
PerClass = list[Frac]
FreeJson = dict[str, Any]


class _Part(BaseModel):
    """A record object: exactly its fields, strictly typed."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


def _f(description: str, **kw: Any) -> Any:
    return Field(description=description, **kw)


class Versions(_Part):
    """The code versions that made the record."""

    evaluation: Positive = _f("`EVALUATION_VERSION` of the code that evaluated (benchmark/pipeline/evaluate.py)")
    harness: Positive = _f("`HARNESS_VERSION` of the code that trained (benchmark/pipeline/train.py; "
                           "an external model's record carries the current one)")


class DefenseBlock(_Part):
    """The defense (or external model) and how it was configured."""

    id: Name = _f("the defense id, or the board name of an external model")
    external: bool = _f("true for a model trained outside atbench (`atbench eval --model`)")
    sweep: Name | None = _f("the sweep record (`leaderboard/sweeps/<track>/<defense>`) whose winner set its config, or "
                            "null")
    config: FreeJson = _f("the hyperparameters it was trained with (an external model: its spec and checkpoint name)")
    paper: str = _f("paper title")
    venue: str = _f("venue, e.g. ICLR 2018")
    link: str = _f("URL of the paper")
    fidelity: Literal["reference", "our-reading"] = _f("how closely the implementation follows the authors' code")
    randomized: bool = _f("declared randomized (inference is stochastic)")
    recipe_overrides: FreeJson = _f("departures from the track's recipe, plus `config.<name>` per hyperparameter "
                                    "the track set")
    deployed: FreeJson | None = _f("what the deployed model adds to the trained network at inference, fitted on the "
                                   "validation split after training (classwise-at: `logit_offsets`, the per-class "
                                   "offsets or null when none were kept, and `reason`); absent when the defense "
                                   "deploys the trained network as it is", default=None)

    @model_serializer(mode="wrap")
    def _nothing_deployed_is_absent(self, handler: Any) -> dict:
        """Leave `deployed` out when it is null, so the record of a defense without one keeps its form."""
        out = handler(self)
        if out.get("deployed") is None:
            out.pop("deployed", None)
        return out


class ProtocolBlock(_Part):
    """The evaluation protocol the record was made under."""

    id: Name = _f("protocol id (records of one protocol share a folder and a board)")
    version: Positive = _f("protocol version")
    sha256: Sha256 = _f("sha256 of the protocol's resolved content (includes merged, comments ignored)")
    norm: Literal["Linf", "L2"] = _f("threat model")
    eps: list[Eps] = _f("eps strings in increasing order", min_length=1, json_schema_extra={"uniqueItems": True})
    primary_eps: Eps = _f("the eps the board ranks by")
    n_examples: Positive = _f("test points evaluated")


class PerClassBlock(_Part):
    """Per-class accuracies (one entry per class)."""

    n: list[Count] = _f("test points per class")
    clean_acc: PerClass = _f("clean accuracy per class")
    robust_acc: dict[str, dict[Eps, PerClass]] = _f("per attack column or group, per eps, per class")
    worst_case: dict[Eps, PerClass] = _f("worst-case robust accuracy per eps, per class")


class ClassStats(_Part):
    """Class-wise summary of the worst case at one eps."""

    worst_class: Count = _f("index of the class with the lowest worst-case robust accuracy")
    worst_class_acc: Frac = _f("its accuracy")
    best_class: Count = _f("index of the class with the highest")
    best_class_acc: Frac = _f("its accuracy")
    spread: Frac = _f("best minus worst")
    std: Frac = _f("population standard deviation over classes")


class CertifiedL2(_Part):
    """Certified L2 accuracy from the LipLT bound, beside L2-PGD on the same points."""

    radii: list[Eps] = _f("L2 radii", min_length=1, json_schema_extra={"uniqueItems": True})
    certified_acc: ByEps = _f("per radius, the fraction correctly classified with a LipLT-certified radius at "
                              "least that large")
    pgd_l2_acc: ByEps = _f("per radius, L2-PGD robust accuracy on the same points (never below certified_acc)")
    pgd_l2_steps: Positive = _f("L2-PGD steps")
    lipschitz_max: NonNeg = _f("largest pairwise Lipschitz bound")
    lipschitz_method: str = _f("how the spectral norms of the bound were computed: exact (float64 Gram matrices), "
                               "or power iteration to convergence (an estimate from below) for products too large "
                               "to form")
    median_radius: NonNeg = _f("median certified radius (0 for misclassified points)")


class Confusion(_Part):
    """Adversarial predictions at the primary eps, by true class."""

    eps: Eps = _f("the primary eps")
    matrix: list[list[Count]] = _f("[i][j]: points of class i whose worst-case adversarial example is predicted j")


class Percentiles(_Part):
    """The 10th and 50th percentiles of a margin."""

    p10: float = _f("10th percentile")
    p50: float = _f("median")


class LogitMargins(_Part):
    """Logit margins on the clean points and after a full-budget margin attack."""

    edges: list[float] = _f("histogram bin edges, increasing", min_length=2)
    clean: list[Count] = _f("counts of clean logit margins per bin")
    adversarial: list[Count] = _f("counts of adversarial logit margins per bin")
    adversarial_eps: Eps = _f("the primary eps")
    adversarial_method: Name = _f("the attack whose final iterates give the adversarial margins (a full budget, "
                                  "no early stop)")
    clean_percentiles: Percentiles = _f("percentiles of the clean logit margins")
    adversarial_percentiles: Percentiles = _f("percentiles of the adversarial logit margins")


class InputMarginsPerClass(_Part):
    """Per-class medians of the input margins."""

    median: list[NonNeg] = _f("median input margin per class")
    frac_below_half_primary: PerClass = _f("per class, fraction of margins below half the primary eps")


class InputMargins(_Part):
    """Input-space margins from one method."""

    norm: Name = _f("norm of the margins")
    method: Name = _f("how they were estimated")
    eps_max: NonNeg = _f("largest eps searched (censoring value)")
    median: NonNeg = _f("median input margin")
    frac_below_half_primary: Frac = _f("fraction of margins below half the primary eps")
    per_class: InputMarginsPerClass = _f("the same per class")


class CrossCheck(_Part):
    """How two input-margin columns agree point by point."""

    points: Count = _f("points both estimates break below eps_max")
    fab_at_most_bisection: Frac = _f("of those, the fraction where the minimum-norm attack's margin is at most the "
                                     "bisection's (plus its resolution)")
    median_ratio: NonNeg = _f("the median ratio of the two estimates (minimum-norm / bisection)")


class Margins(_Part):
    """Logit and input margins."""

    logit: LogitMargins = _f("logit margins z_y - max_{k != y} z_k, clean and adversarial")
    input: InputMargins = _f("input-space margins from a minimum-norm attack (FAB): upper bounds on each point's "
                             "margin")
    input_bisection: InputMargins = _f("input-space margins from a bisection over PGD's eps: the cross-check")
    input_cross_check: CrossCheck = _f("how the two input-margin estimates compare")


class Training(_Part):
    """How the evaluated checkpoint was trained and selected."""

    selection_rule: Name = _f("how the harness chose the checkpoint")
    best_epoch: Positive = _f("the chosen epoch (1-based)")
    epochs: Positive = _f("epochs trained")
    val_robust_acc: Frac = _f("the chosen checkpoint's validation robust accuracy under the rule")
    val_clean_acc: Frac = _f("its validation clean accuracy")
    val_certified_acc: Frac | None = _f("its validation certified L2 accuracy (mean over the track protocol's "
                                        "certified radii), present only for a defense selected by it "
                                        "(`selection_rule` says so)", default=None)

    @model_serializer(mode="wrap")
    def _robust_selection_has_no_certified(self, handler: Any) -> dict:
        """Leave `val_certified_acc` out when it is null (a defense selected by robust accuracy)."""
        out = handler(self)
        if out.get("val_certified_acc") is None:
            out.pop("val_certified_acc", None)
        return out


class SanityFlag(_Part):
    """One sanity flag: its evidence, whether it fired or is only noted."""

    fired: bool = _f("the flag: evidence beyond chance at the protocol's number of points (or evidence chance "
                     "cannot produce)")
    noted: bool = _f("the note: any evidence at all (true whenever `fired` is)")
    value: float = _f("the measured value")
    threshold: float = _f("the value (or the null rate) it is compared with")
    p_value: float | None = _f("one-sided exact p-value of a counting flag's evidence; null for the others")
    detail: str = _f("what was measured, with its count")


class FlagsRef(_Part):
    """The per-example flags file beside the record."""

    file: Name = _f("the per-example flags file beside the record")
    sha256: Sha256 = _f("its sha256")


class PhaseCost(_Part):
    """What one phase (training or evaluation) cost."""

    seconds: NonNeg = _f("wall seconds")
    device_seconds: NonNeg = _f("seconds times the CPU threads torch used (core-seconds), or GPU-seconds")
    unit: Literal["core-seconds", "GPU-seconds"] = _f("the unit of `device_seconds`")
    peak_memory_mib: NonNeg | None = _f("peak memory in MiB: the process's peak resident set on the CPU (Linux), "
                                        "torch's peak allocation on a GPU; null where it could not be measured")


class Cost(_Part):
    """What the record cost to make (never part of its reproducibility comparison)."""

    device: Name = _f("the device it was paid on: the GPU's name, or the CPU model with torch's kernels and threads")
    train: PhaseCost | None = _f("training (null for an external model)")
    eval: PhaseCost = _f("evaluation")


class Runtime(_Part):
    """Seconds spent training and evaluating."""

    train: NonNeg = _f("training seconds")
    eval: NonNeg = _f("evaluation seconds")


FastPathSetting = Literal["data_on_device", "channels_last", "bf16", "compile"]


class FastPathUse(_Part):
    """The GPU fast path's settings that were on (benchmark/pipeline/fastpath.py)."""

    training: list[FastPathSetting] | None = _f("settings on while training the checkpoint (data_on_device, "
                                                "channels_last, bf16 autocast, compile); null for an external model")
    evaluation: list[FastPathSetting] = _f("settings on while evaluating (channels_last: the model's layout)")


class SourceProvenance(_Part):
    """The code and the machine a record (or an attack record) was made with."""

    atbench_version: Name = _f("atbench's version")
    git_commit: Name | None = _f("git commit of the source tree, null outside git")
    git_dirty: bool = _f("uncommitted changes in the source tree")
    packages: dict[str, str] = _f("versions of the packages that matter")
    python: Name = _f("Python version")
    device: Name = _f("device (and CPU kernels)")


class Provenance(SourceProvenance):
    """Where and from what the record was made."""

    seeds: dict[str, Seed] = _f("every seed used")
    data_sha256: Sha256 = _f("sha256 of the data set's content")
    test_subset_sha256: Sha256 = _f("sha256 of the test indices")
    checkpoint_sha256: Sha256 = _f("sha256 of the evaluated checkpoint")
    utc_time: Utc = _f("when it was evaluated")
    fast_path: FastPathUse | None = _f("the GPU fast path's settings, present only when one was on (`--fast-path`: "
                                       "on for CUDA by default); absent: the plain path, as on the CPU by default",
                                       default=None)

    @model_serializer(mode="wrap")
    def _plain_path_has_no_fast_path(self, handler: Any) -> dict:
        """Leave `fast_path` out when it is null, so a plain-path record keeps its form."""
        out = handler(self)
        if out.get("fast_path") is None:
            out.pop("fast_path", None)
        return out


Sanity = create_model("Sanity", __base__=_Part, **{
    name: (SanityFlag, Field(description=f"sanity flag `{name}` (leaderboard/flags.py)")) for name in SANITY_FLAGS})


class Record(_Part):
    """One atbench result record per (protocol, defense or external model, seed)."""

    schema_version: Literal[2] = _f("format version")
    versions: Versions = _f("the code versions that made it")
    track: Name = _f("training track")
    seed: Seed = _f("training seed (0 for an external model)")
    defense: DefenseBlock = _f("what was evaluated")
    training: Training | None = _f("how the checkpoint was chosen (null for an external model)")
    architecture: Name = _f("architecture id (an external model: its spec)")
    protocol: ProtocolBlock = _f("the evaluation protocol")
    attacks: dict[str, str] = _f("per attack column, the repr of its configuration")
    attack_groups: dict[str, list[str]] = _f("per column group (a swept attack, e.g. tpgd), its member columns; "
                                             "the group's numbers are their per-example worst case")
    votes: Positive = _f("forward passes whose majority decided each prediction (1 unless the model was "
                         "evaluated as randomized: the protocol's analysis.votes)")
    num_classes: Positive = _f("number of classes")
    class_names: list[Name] = _f("class names, num_classes of them")
    clean_acc: Frac = _f("clean accuracy")
    robust_acc: dict[str, ByEps] = _f("per attack column or group, per eps, robust accuracy", min_length=1)
    worst_case: ByEps = _f("per eps, robust against every attack column")
    per_class: PerClassBlock = _f("per-class accuracies")
    classwise: dict[Eps, ClassStats] = _f("per eps, summary of the per-class worst case")
    certified_l2: CertifiedL2 | None = _f("certified L2 accuracy (null unless a plain network and radii)")
    confusion_adversarial: Confusion = _f("confusion matrix of worst-case adversarial predictions")
    margins: Margins = _f("logit and input-space margins")
    sanity: Sanity = _f("sanity flags of the evaluation")
    flags: FlagsRef = _f("the per-example flags file")
    runtime_s: Runtime = _f("seconds spent")
    cost: Cost | None = _f("training and evaluation cost: device-seconds, device and peak memory (absent in records "
                           "made before atbench kept it; their `runtime_s` gives the seconds)", default=None)

    @model_serializer(mode="wrap")
    def _no_cost_is_absent(self, handler: Any) -> dict:
        """Leave `cost` out when it is null, so a record made before costs were kept keeps its form."""
        out = handler(self)
        if out.get("cost") is None:
            out.pop("cost", None)
        return out
    provenance: Provenance = _f("where and how it was made")



def validate_record(obj: Any, source: str = "<record>") -> dict:
    """Check that `obj` is a valid record of this schema version and return it unchanged.

    Raises:
        RecordError: naming `source` and the offending field's dotted path.
    """
    if not isinstance(obj, dict):
        raise RecordError(source, None, f"the record must be an object, got {kind_of(obj)}")
    version = obj.get("schema_version")
    if version is not None and version != SCHEMA_VERSION and isinstance(version, int):
        raise RecordError(source, "schema_version",
                          f"is {version}, but this atbench reads schema_version {SCHEMA_VERSION}",
                          "regenerate the record with this atbench (`atbench run`), or upgrade atbench")
    try:
        Record.model_validate(obj)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        loc = tuple(k for k in error["loc"] if k not in ("function-after",))
        raise RecordError(source, dotted(loc) or None, message(error)) from None
    Consistency(obj, source).check()
    return obj


def build_record(**fields: Any) -> dict:
    """A record (plain JSON values) from its top-level fields, checked against `Record` (a
    missing, unknown or ill-typed field raises here, where the record is assembled)."""
    record = Record.model_validate({"schema_version": SCHEMA_VERSION, **fields}).model_dump(mode="json")
    return validate_record(record, "<new record>")


def load_record(path: str | Path) -> dict:
    """Read and validate the record at `path`.

    Raises:
        RecordError: the file is unreadable, not valid JSON (with the error's line and column,
            e.g. a truncated file), or not a valid record (NaN and Infinity are rejected there).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RecordError(str(path), None, f"cannot be read: {exc}",
                          "check the path, or regenerate the record with `atbench run`") from exc
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RecordError(str(path), None,
                          f"is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno} (char {exc.pos})",
                          "the file is truncated or corrupted: restore it from git or regenerate it with "
                          "`atbench run`") from exc
    return validate_record(obj, source=str(path))


def eps_value(eps: str) -> float:
    """The number a protocol eps string stands for ('0.3' -> 0.3, '8/255' -> 0.0313...)."""
    return float(Fraction(eps))

