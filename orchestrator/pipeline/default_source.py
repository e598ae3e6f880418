"""The accuracy source of a config that names none (``accuracy.source: default``, the schema's default).

Each space declares in ``DEFAULTS`` the sources a measurement supports for it, per kind of data; where no rule
of the space matches (another space, digits, synthetic images), the source is ``FALLBACK`` (the supernet, as
before any rule existed). ``choose_source`` is the one resolution: ``make_plan`` applies it to the config
(``resolve_config``), ``hwnas accuracy estimate --source default`` calls it on its arguments, and the run
logs and records the choice with its reason.

NB201 on real images (npz, CIFAR-10/100, an image folder) defaults to ``zero_cost`` (its ``proxy``, whose own
default is the ``ensemble``): against NAS-Bench-201's 200-epoch CIFAR-10 accuracy it ranks 1,927 held-out
random cells at SRCC 0.868 [0.855, 0.880], while the one-shot supernet at CPU budgets ranked them at noise
level (SRCC -0.20 to 0.04; docs/benchmarks.md, issue 20). Digits keeps the supernet: no digits truth exists
to judge a ranking against (on digits the ensemble gives its CIFAR-10 ranking, SRCC 0.996 between the two:
the proxies rank by the same quality whatever the images), and the embedded quickstart trains its supernet
there.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.registry import Registry

if TYPE_CHECKING:
    from orchestrator.config import AccuracySection, PipelineConfig

log = logging.getLogger(__name__)

DEFAULT = "default"  # accuracy.source (and --source) value: the space's default for its data
FALLBACK = "supernet"  # where no rule of the space matches
REAL_IMAGES = frozenset({"npz", "cifar10", "cifar100", "imagefolder"})  # DataConfig names of real images


@dataclass(frozen=True)
class DefaultRule:
    """A source a measurement supports for a space on some kinds of data (``DataConfig.name`` values)."""

    source: str  # a registered accuracy source (pipeline.accuracy.SOURCES)
    data: frozenset[str]
    evidence: str  # the measurement, in words (logged with the choice)


@dataclass(frozen=True)
class SourceChoice:
    """The source a config's accuracy section resolves to, and why."""

    source: str
    reason: str
    by_default: bool  # chosen here (the config named no source)

    def describe(self) -> str:
        how = "the default" if self.by_default else "named by the config"
        return f"{self.source} ({how}: {self.reason})"


DEFAULTS: Registry[tuple[DefaultRule, ...]] = Registry("space with a default accuracy source")
DEFAULTS.add("nb201", (DefaultRule(
    "zero_cost", REAL_IMAGES,
    "the zero-cost ensemble ranks NB201 cells at SRCC 0.868 [0.855, 0.880] against the 200-epoch CIFAR-10 "
    "accuracy on 1,927 held-out random cells; a one-shot supernet at CPU budgets at -0.20 to 0.04 "
    "(docs/benchmarks.md, issue 20)"),), help="zero_cost on real images, else the supernet")


def rules(space: str) -> tuple[DefaultRule, ...]:
    """The space's declared rules (none for a space without an entry)."""
    return DEFAULTS.get(space) if space in DEFAULTS else ()


def images_of(acc: AccuracySection) -> Any:
    """The images a config gives its accuracy source: the ``data`` of a source's images section
    (``AccuracySourceKind.images_section``: ``zero_cost.data``) where the config sets it, else
    ``supernet.data`` (the default source's data until now; digits when neither is set)."""
    from orchestrator.pipeline.accuracy import SOURCES

    for name in SOURCES.names():
        section = SOURCES.get(name).images_section
        if section is not None and "data" in getattr(acc, section).model_fields_set:
            return getattr(acc, section).data
    return acc.supernet.data


def choose_source(space: str, acc: AccuracySection, needs_weights: bool = False) -> SourceChoice:
    """The source of ``acc`` (a config's accuracy section, as written) for space ``space``.

    A named source is kept. ``default``: the supernet where ``supernet.checkpoint`` names a trained one, or
    where ``needs_weights`` (int8 accuracy quantizes a network with weights) and the rule's source has none;
    else the first rule of the space whose data kinds hold the config's images (``images_of``); else
    ``FALLBACK``."""
    from orchestrator.pipeline.accuracy import SOURCES

    if acc.source != DEFAULT:
        return SourceChoice(acc.source, "accuracy.source", False)
    if acc.supernet.checkpoint:
        return SourceChoice(FALLBACK, f"accuracy.supernet.checkpoint names a trained supernet "
                                      f"({acc.supernet.checkpoint})", True)
    data = images_of(acc).name
    for rule in rules(space):
        if data not in rule.data:
            continue
        if needs_weights and not SOURCES.get(rule.source).trains_supernet:
            return SourceChoice(FALLBACK, f"{space} on {data} would use {rule.source}, but sweep.int8_accuracy "
                                          f"needs a network with weights", True)
        return SourceChoice(rule.source, f"{space} on {data} images: {rule.evidence}", True)
    why = (f"{space} on {data}: its other defaults are measured on real images only" if rules(space)
           else f"{space} on {data}: no measurement supports another source for this space")
    return SourceChoice(FALLBACK, why, True)


def resolve_config(cfg: PipelineConfig) -> tuple[PipelineConfig, SourceChoice]:
    """``cfg`` with ``accuracy.source`` resolved (``choose_source``), and the choice. A default resolved to a
    source that reads images of its own (its ``images_section``, e.g. zero_cost's) takes the config's images
    (``images_of``) as that section's ``data``. A named source: ``cfg`` as it is."""
    from orchestrator.pipeline.accuracy import SOURCES

    acc = cfg.accuracy
    choice = choose_source(cfg.space.name, acc, needs_weights=cfg.sweep.int8_accuracy.enabled)
    if not choice.by_default:
        return cfg, choice
    update: dict[str, Any] = {"source": choice.source}
    section = SOURCES.get(choice.source).images_section
    if section is not None:
        update[section] = getattr(acc, section).model_copy(update={"data": images_of(acc)})
    return cfg.model_copy(update={"accuracy": acc.model_copy(update=update)}), choice


def began_with(state: Path, choice: SourceChoice | None, current: str) -> str | None:
    """The source a run began with, where ``--resume`` should go on with it instead of ``current``: its stored
    config (``state``, the run dir's pipeline.json) names another registered source while this config names
    none (``choice.by_default``), i.e. the run began under another default. None otherwise (an unreadable
    state is the run-dir check's to report)."""
    from orchestrator.pipeline.accuracy import SOURCES

    if choice is None or not choice.by_default or not state.is_file():
        return None
    try:
        began = json.loads(state.read_text())["config"]["accuracy"]["source"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return began if began != current and began in SOURCES else None
