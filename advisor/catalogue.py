"""The strategy catalogue: every fact about a strategy, and about a word of the advice, written once.

Torch-free: the decision, the results store, the reports and the CLI read their names, labels,
colours and cost ranks here without loading the training stack. The training code
(:mod:`advisor.bench.strategies`) registers one class per entry of :data:`STRATEGIES`; its
classes read their facts from here.

Example:
    >>> list(STRATEGIES)
    ['freeze', 'partial', 'finetune', 'freeze_unfreeze', 'scratch']
    >>> get_strategy_info("partial").verdict
    'finetune'
    >>> carried_by("finetune")
    ('finetune', 'partial', 'freeze_unfreeze')
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ADVICE",
    "STRATEGIES",
    "AdviceInfo",
    "StrategyInfo",
    "carried_by",
    "colours",
    "get_strategy_info",
    "label",
    "suggested_strategy",
]


@dataclass(frozen=True)
class StrategyInfo:
    """What is known of a strategy before anything trains.

    Attributes:
        name: Registry name.
        cost_rank: Cost order of the verdict: cheaper strategies win ties (freeze 0, partial 1,
            the others 2).
        pretrained: Whether it starts from ImageNet weights (what the verdict compares with scratch).
        verdict: What the verdict calls it when it wins, in the advice's vocabulary
            (:data:`ADVICE`: freeze, finetune, not_worth_using).
        label: Its name in reports.
        colour: Its colour in reports; ``None``: it takes one of the spare colours.
        help: What it does, in one phrase (the CLI's help).
        suggests: The advice word whose suggested recipe is this strategy's, if any.
    """

    name: str
    cost_rank: int
    pretrained: bool
    verdict: str
    label: str
    colour: str | None
    help: str
    suggests: str | None = None


@dataclass(frozen=True)
class AdviceInfo:
    """A word of the advice (``advisor.decide.STRATEGIES``).

    Attributes:
        word: The word, as the JSON writes it.
        label: Its name in reports.
        colour: Its colour in reports.
        phrase: The word inside a sentence ("the advice stays freezing").
        headline: The CLI's one-line answer.
    """

    word: str
    label: str
    colour: str
    phrase: str
    headline: str


#: Every strategy, cheapest first (the registry's order).
STRATEGIES: dict[str, StrategyInfo] = {s.name: s for s in (
    StrategyInfo("freeze", 0, True, "freeze", "Freeze", "#2563eb",
                 "frozen backbone, BatchNorm in eval mode; a linear classifier on its cached embeddings",
                 suggests="freeze"),
    StrategyInfo("partial", 1, True, "finetune", "Partial fine-tune", "#7c3aed",
                 "only the last stage(s) of the backbone and the head train"),
    StrategyInfo("finetune", 2, True, "finetune", "Fine-tune", "#d97706",
                 "every layer trains, the backbone at a lower learning rate than the head", suggests="finetune"),
    StrategyInfo("freeze_unfreeze", 2, True, "finetune", "freeze unfreeze", None,
                 "the head alone for the first epochs, then every layer"),
    StrategyInfo("scratch", 2, False, "not_worth_using", "From scratch", "#6b7280",
                 "the same architecture from random weights, what 'not worth using' is measured against",
                 suggests="not_worth_using"),
)}

#: The advice's vocabulary.
ADVICE: dict[str, AdviceInfo] = {a.word: a for a in (
    AdviceInfo("freeze", STRATEGIES["freeze"].label, STRATEGIES["freeze"].colour, "freezing",
               "FREEZE the backbone and train a classifier on its features"),
    AdviceInfo("finetune", STRATEGIES["finetune"].label, STRATEGIES["finetune"].colour, "fine-tuning",
               "FINE-TUNE the pretrained backbone"),
    AdviceInfo("not_worth_using", "Not worth using", "#dc2626", "not worth using",
               "The pretrained model is NOT WORTH USING: train from scratch or get more data"),
    AdviceInfo("insufficient_data", "Too few images", "#6b7280", "too few images",
               "CANNOT MEASURE: too few images (see the reason below)"),
)}


def get_strategy_info(name: str) -> StrategyInfo:
    """The catalogue's entry for ``name``.

    Raises:
        ValueError: Unknown name; the message lists the valid ones.
    """
    try:
        return STRATEGIES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown strategy {name!r}; valid strategies: {', '.join(STRATEGIES)}") from None


def suggested_strategy(word: str) -> str:
    """The strategy whose recipe carries out the advice ``word`` (freeze, finetune, scratch)."""
    for s in STRATEGIES.values():
        if s.suggests == word:
            return s.name
    raise ValueError(f"no strategy carries out the advice {word!r}; advice with one: "
                     + ", ".join(s.suggests for s in STRATEGIES.values() if s.suggests))


def carried_by(word: str) -> tuple[str, ...]:
    """The strategies whose runs carry out the advice ``word``: the suggested one first, then the
    others the verdict calls by that word; ``(word,)`` for a word no strategy carries out."""
    names = [s.name for s in STRATEGIES.values() if s.verdict == word]
    first = [s.name for s in STRATEGIES.values() if s.suggests == word]
    return tuple(dict.fromkeys(first + names)) or (word,)


def label(key: str) -> str:
    """The report's name of a strategy or an advice word; an unknown key in words."""
    entry = STRATEGIES.get(key) or ADVICE.get(key)
    return entry.label if entry else key.replace("_", " ")


def colours() -> dict[str, str]:
    """Strategies and advice words with a colour of their own, strategies first (cheapest first)."""
    out = {s.name: s.colour for s in STRATEGIES.values() if s.colour}
    out.update({a.word: a.colour for a in ADVICE.values() if a.word not in out})
    return out
