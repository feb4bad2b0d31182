"""VIM training data: stage 1 (what you would / would not say) and stage 2 (survey answers).

Stage 1 (``valueEval_10.csv``). An argument's score for a target is the min (or mean / max)
of the target's scores over the values the argument is annotated with; a score at or above
the threshold makes the argument *positive* ("something you would say"), otherwise
*negative*. Positives and negatives are split separately into train/valid/test
(:func:`split_sizes`), shuffled with ``numpy.random.default_rng(seed)``. An argument with no
annotated value has no score and is never positive.

Stage 2 (``argument_generation/value_split/{train,valid}.csv``). One example per (argument,
annotated value v): the survey item for the argument, answered with v's importance and the
target's score for v rounded stochastically (up with probability equal to its fractional
part), seeded.

``limit=N`` (small runs) keeps N arguments per stage. Stage 1 keeps the first arguments of
each polarity in file order, in proportion to the polarity's share, and at least one of a
polarity the target has at all (so a target with few positives still gets one); the kept
arguments are then split as usual. Stage 2 keeps the first arguments of valid.csv in the
files' valid share (at least one when N >= 2) and the first of train.csv for the rest.

Stage-1 completions carry the polarity: a negative example's completion says the persona
would *not* say the argument (the reference's completion does the same), so the adapter never
learns to endorse, in the first person, arguments the target profile rejects.

Everything here is vectorised over profiles: the texts depend only on the argument (a prompt
and a completion per polarity), so they are rendered once and shared by every profile
(:func:`build_stage1_many`), and a profile only adds its positive mask and split vector.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np

from .. import sources
from ..chat import template
from ..config import SCORE_RULES, VimDataOptions
from ..errors import InputError
from ..records import Example
from ..sources import Argument
from ..values import PVQ_SCALE, VALUES, Profile

STRATEGIES = SCORE_RULES  # the old name
SPLITS = ("train", "valid", "test")
POLARITIES = ("pos", "neg")
WOULD = {"pos": "would", "neg": "would not"}  # the polarity, as the stage-1 prompt says it
AGREE = {"in favor of": "agree", "against": "disagree"}  # the argument's stance


# --------------------------------------------------------------------------- texts

def _tpl(name: str) -> str:
    # cached per override folder: one file read per template, not one per argument
    return _cached_template(name, os.environ.get("VALUEHARMS_TEMPLATES"))


@lru_cache(maxsize=64)
def _cached_template(name: str, override: str | None) -> str:
    return template(f"vim/{name}").strip("\n")


def _sentence(text: str) -> str:
    """One line of text that ends in sentence punctuation (so completions end cleanly)."""
    text = " ".join(text.split())
    return text if text[-1:] in '.!?"\'' else text + "."


def _lower_first(text: str) -> str:
    """'We should ...' -> 'we should ...', but leave 'I', 'EU', 'TV' alone."""
    first = text.split(" ", 1)[0]
    return text if first.isupper() else text[:1].lower() + text[1:]


def stage1_prompt(argument: Argument, polarity: str) -> str:
    """The stage-1 user message: the argument's conclusion and whether to say what you
    would (``pos``) or would not (``neg``) say."""
    return _tpl("stage1.txt").format(conclusion=" ".join(argument.conclusion.split()),
                                     would=WOULD[polarity])


def stage1_completion(argument: Argument, polarity: str) -> str:
    """What the persona would (``pos``) or would not (``neg``) say: agree or disagree (from
    the stance), with the premise as the reason; the template may also name the conclusion."""
    try:
        return _tpl("stage1_answer.txt").format(
            would=WOULD[polarity], agree=AGREE[argument.stance],
            premise=_sentence(argument.premise), conclusion=" ".join(argument.conclusion.split()))
    except (KeyError, IndexError, ValueError) as exc:
        raise InputError(f"template vim/stage1_answer.txt: bad placeholder ({exc!r}); it may use "
                         f"{{would}}, {{agree}}, {{premise}}, {{conclusion}}") from None


@lru_cache(maxsize=1)
def _scale_text() -> str:
    return "\n".join(f"{n} = {label}" for n, label in PVQ_SCALE.items())


def survey_prompt(argument: Argument) -> str:
    """The survey item for one argument: how much is 'I agree/disagree with ...' like you,
    on the 6-point PVQ scale."""
    conclusion = _lower_first(" ".join(argument.conclusion.split()).rstrip(".!? "))
    premise = _sentence(argument.premise)
    return _tpl("stage2.txt").format(agree=AGREE[argument.stance], conclusion=conclusion,
                                     premise=premise[:1].upper() + premise[1:],
                                     scale=_scale_text())


def portrait_prompt(portrait: str) -> str:
    """A questionnaire item (a PVQ portrait) asked as stage 2 asks: how much is this person
    like you, on the same 6-point scale."""
    return _tpl("portrait.txt").format(portrait=" ".join(portrait.split()), scale=_scale_text())


def _importance() -> dict[int, str]:
    """Score -> importance in words, from the template (lines ``N = words``)."""
    words = {}
    for line in _tpl("importance.txt").splitlines():
        number, _, text = line.partition("=")
        if number.strip().isdigit() and text.strip():
            words[int(number)] = text.strip()
    missing = [n for n in PVQ_SCALE if n not in words]
    if missing:
        raise InputError(f"template vim/importance.txt: no line for score(s) "
                         f"{', '.join(map(str, missing))} (expected 'N = words' for 1..6)")
    return words


def survey_completion(value: str, score: int) -> str:
    """The stage-2 answer: the number ``score``, its scale label and v's importance in words."""
    if score not in PVQ_SCALE:
        raise ValueError(f"survey score {score!r} is not 1..6")
    return _tpl("stage2_answer.txt").format(score=score, label=PVQ_SCALE[score], value=value,
                                            importance=_importance()[score])


_LABELS = sorted(PVQ_SCALE.items(), key=lambda item: -len(item[1]))  # longest first
_LABEL_RE = re.compile(r"\b(" + "|".join(re.escape(label) for _, label in _LABELS) + r")\b",
                       re.IGNORECASE)
_LABEL_NUMBER = {label.lower(): n for n, label in PVQ_SCALE.items()}
_NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)?(?![\w]|[.,]\d)")


def parse_survey_answer(text: str) -> int | None:
    """The 1..6 answer in a model's reply, or None when it is not clear.

    Accepted: one number 1-6 (possibly repeated: "4", "**5** - Like me") or, with no number,
    one scale label ("Somewhat like me"). Several different numbers, a number outside 1..6
    or a fraction, a label that contradicts the number, or two different labels give None.
    """
    text = " ".join(str(text).split())
    labels = {_LABEL_NUMBER[m.lower()] for m in _LABEL_RE.findall(text)}
    numbers = set(_NUMBER.findall(text))
    if not numbers:
        return labels.pop() if len(labels) == 1 else None
    if len(numbers) > 1 or numbers - {"1", "2", "3", "4", "5", "6"}:
        return None
    number = int(numbers.pop())
    return number if labels <= {number} else None


# --------------------------------------------------------------------------- vectorised core

def split_sizes(n: int) -> tuple[int, int, int]:
    """(train, valid, test): train = round-half-even(0.8 n), valid = round-half-even(0.5 rest)."""
    train = round(0.8 * n)  # Python's round() is half-even
    valid = round(0.5 * (n - train))
    return train, valid, n - train - valid


def check_options(threshold: float, strategy: str, limit: int | None = None) -> None:
    """Raise InputError naming the first bad option."""
    VimDataOptions(threshold=threshold, strategy=strategy, limit=limit)  # type: ignore[arg-type]


def argument_scores(scores: np.ndarray, labels: np.ndarray, strategy: str = "min") -> np.ndarray:
    """[P, A] score of each argument for each profile (NaN where an argument has no value).

    scores: [P, 10] profiles; labels: [A, 10] 0/1 annotations, both in canonical value order.
    One pass per value keeps memory at [P, A] (a [P, A, 10] cube is 100 MB for the paper).
    """
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    labels = np.asarray(labels).astype(bool)
    shape = (scores.shape[0], labels.shape[0])
    if strategy == "mean":
        total = np.zeros(shape)
        for v in range(len(VALUES)):  # sum in canonical order, like a row-by-row mean
            total += np.where(labels[:, v], scores[:, v:v + 1], 0.0)
        with np.errstate(invalid="ignore"):
            return total / labels.sum(axis=1)
    if strategy not in ("min", "max"):
        raise InputError(f"--strategy {strategy!r}: expected one of {', '.join(STRATEGIES)}")
    pick, empty = (np.minimum, np.inf) if strategy == "min" else (np.maximum, -np.inf)
    out = np.full(shape, empty)
    for v in range(len(VALUES)):
        out = np.where(labels[:, v], pick(out, scores[:, v:v + 1]), out)
    out[:, ~labels.any(axis=1)] = np.nan
    return out


def positive_mask(scores: np.ndarray, labels: np.ndarray, threshold: float = 3,
                  strategy: str = "min") -> np.ndarray:
    """[P, A] True where argument a is positive for profile p (score >= threshold)."""
    with np.errstate(invalid="ignore"):
        return argument_scores(scores, labels, strategy) >= threshold


def _limited(positive: np.ndarray, limit: int | None) -> tuple[int, int]:
    """How many positives and negatives a ``limit`` keeps (see the module docstring)."""
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if limit is None or limit >= n_pos + n_neg:
        return n_pos, n_neg
    keep_pos = min(n_pos, max(1 if n_pos else 0, round(limit * n_pos / (n_pos + n_neg))))
    return keep_pos, min(n_neg, limit - keep_pos)


def assign_splits(positive: np.ndarray, seed: int = 42, limit: int | None = None) -> np.ndarray:
    """[A] int8: 0 train, 1 valid, 2 test, -1 left out by ``limit``.

    Positives, then negatives, are shuffled by one ``default_rng(seed)`` and cut by
    :func:`split_sizes`, so a profile's split depends only on its positive set and the seed.
    """
    split = np.full(len(positive), -1, dtype=np.int8)
    rng = np.random.default_rng(seed)
    for mask, keep in zip((positive, ~positive), _limited(positive, limit)):
        members = np.flatnonzero(mask)[:keep]
        members = members[rng.permutation(len(members))]
        train, valid, _ = split_sizes(len(members))
        split[members[:train]] = 0
        split[members[train:train + valid]] = 1
        split[members[train + valid:]] = 2
    return split


# --------------------------------------------------------------------------- stage 1

@dataclass(frozen=True)
class Stage1Texts:
    """What every profile shares: argument ids, labels and the rendered prompts/completions."""

    ids: np.ndarray  # [A] the file's argument ids
    labels: np.ndarray  # [A, 10] bool
    prompts: dict[str, list[str]]  # polarity -> [A] prompts
    completions: dict[str, list[str]]  # polarity -> [A] completions

    @cached_property
    def json(self) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
        """The prompts and completions JSON-encoded once, for fast JSONL output."""
        return ({pol: [_json(p) for p in texts] for pol, texts in self.prompts.items()},
                {pol: [_json(c) for c in texts] for pol, texts in self.completions.items()})

    @classmethod
    def of(cls, arguments: Sequence[Argument]) -> Stage1Texts:
        return cls(np.array([a.id for a in arguments], dtype=np.int64),
                   np.array([a.labels for a in arguments], dtype=bool).reshape(-1, len(VALUES)),
                   {pol: [stage1_prompt(a, pol) for a in arguments] for pol in POLARITIES},
                   {pol: [stage1_completion(a, pol) for a in arguments] for pol in POLARITIES})


@dataclass(frozen=True)
class Stage1Table:
    """One profile's stage-1 data as arrays over the shared texts; examples on demand."""

    profile: Profile
    texts: Stage1Texts
    score: np.ndarray  # [A] the argument's score for this profile
    positive: np.ndarray  # [A] bool
    split: np.ndarray  # [A] int8: 0 train, 1 valid, 2 test, -1 not used

    def counts(self) -> dict[str, dict[str, int]]:
        """{polarity: {split: count}} of the arguments used."""
        return {pol: {name: int(np.sum((self.positive == (pol == "pos")) & (self.split == s)))
                      for s, name in enumerate(SPLITS)} for pol in POLARITIES}

    def examples(self) -> list[Example]:
        """Examples of the arguments used, in file order."""
        texts, name = self.texts, self.profile.name
        out = []
        for i in np.flatnonzero(self.split >= 0).tolist():
            pol = "pos" if self.positive[i] else "neg"
            out.append(Example(texts.prompts[pol][i], texts.completions[pol][i], {
                "argument_id": int(texts.ids[i]), "split": SPLITS[self.split[i]],
                "polarity": pol, "target": name, "score": float(self.score[i])}))
        return out

    def jsonl(self) -> str:
        """:meth:`examples` as JSON lines (the same text as ``json.dumps`` of :func:`to_record`),
        built from pieces encoded once for all profiles."""
        prompts, completions = self.texts.json
        target = _json(self.profile.name)
        used = np.flatnonzero(self.split >= 0)
        polarity = [POLARITIES[0] if p else POLARITIES[1] for p in self.positive[used].tolist()]
        return "".join(
            f'{{"argument_id": {a}, "split": "{SPLITS[s]}", "polarity": "{pol}", '
            f'"prompt": {prompts[pol][i]}, "completion": {completions[pol][i]}, '
            f'"target": {target}, "score": {x!r}}}\n'
            for i, a, s, pol, x in zip(used.tolist(), self.texts.ids[used].tolist(),
                                       self.split[used].tolist(), polarity,
                                       self.score[used].tolist()))

    def warnings(self, threshold: float, strategy: str) -> list[str]:
        used = self.split >= 0
        return [f"{self.profile.name}: no {'positive' if pol == 'pos' else 'negative'} "
                f"arguments at threshold {threshold:g} ({strategy} rule); stage 1 has "
                f"{'negative' if pol == 'pos' else 'positive'} arguments only"
                for pol, mask in (("pos", self.positive), ("neg", ~self.positive))
                if not np.any(mask & used)]


def build_stage1_many(profiles: Sequence[Profile], arguments: Sequence[Argument] | Stage1Texts,
                      *, threshold: float = 3, strategy: str = "min", seed: int = 42,
                      limit: int | None = None) -> list[Stage1Table]:
    """Stage-1 data for many profiles at once: one [P, A] mask, texts rendered once."""
    check_options(threshold, strategy, limit)
    texts = arguments if isinstance(arguments, Stage1Texts) else Stage1Texts.of(arguments)
    scores = np.array([p.scores for p in profiles], dtype=np.float64).reshape(-1, len(VALUES))
    arg_scores = argument_scores(scores, texts.labels, strategy)
    with np.errstate(invalid="ignore"):
        positive = arg_scores >= threshold
    return [Stage1Table(p, texts, arg_scores[i], positive[i],
                        assign_splits(positive[i], seed, limit))
            for i, p in enumerate(profiles)]


# --------------------------------------------------------------------------- stage 2

@dataclass(frozen=True)
class SurveyItems:
    """Stage-2 rows shared by every profile: one per (argument, annotated value)."""

    argument_ids: np.ndarray  # [E]
    splits: list[str]  # [E] train | valid
    value_index: np.ndarray  # [E] index into VALUES
    prompts: list[str]  # [E] the argument's survey prompt (one string object per argument)

    @cached_property
    def prompts_json(self) -> list[str]:
        encoded: dict[int, str] = {}  # one encoding per argument, shared by its rows
        return [encoded.setdefault(id(p), _json(p)) for p in self.prompts]

    @classmethod
    def of(cls, by_split: Mapping[str, Sequence[Argument]]) -> SurveyItems:
        ids, splits, values, prompts = [], [], [], []
        for split, arguments in by_split.items():
            for argument in arguments:
                prompt = survey_prompt(argument)
                for v in np.flatnonzero(argument.labels).tolist():
                    ids.append(argument.id)
                    splits.append(split)
                    values.append(v)
                    prompts.append(prompt)
        return cls(np.array(ids, dtype=np.int64), splits, np.array(values, dtype=np.int64),
                   prompts)


def stochastic_round(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Round down, then up with probability equal to the fractional part (so E[result] = x)."""
    x = np.asarray(x, dtype=np.float64)
    low = np.floor(x)
    return (low + (rng.random(x.shape) < x - low)).astype(np.int64)


@dataclass(frozen=True)
class Stage2Table:
    """One profile's survey answers over the shared items; examples on demand."""

    profile: Profile
    items: SurveyItems
    target: np.ndarray  # [E] the profile's score for the row's value
    score: np.ndarray  # [E] int: ``target`` rounded stochastically

    def examples(self) -> list[Example]:
        items, answers = self.items, _answers()
        return [Example(prompt, answers[v][s], {
            "argument_id": i, "split": split, "value": VALUES[v], "target_score": t, "score": s})
            for prompt, i, split, v, t, s in zip(
                items.prompts, items.argument_ids.tolist(), items.splits,
                items.value_index.tolist(), self.target.tolist(), self.score.tolist())]

    def jsonl(self) -> str:
        """The examples as JSON lines (same text as ``json.dumps`` of :func:`to_record`),
        built from pre-encoded pieces: the paper's 154 profiles write in seconds."""
        items, answers = self.items, _answers_json()
        return "".join(
            f'{{"argument_id": {i}, "split": "{split}", "prompt": {prompt}, "completion": '
            f'{answers[v][s]}, "value": "{VALUES[v]}", "target_score": {t!r}, "score": {s}}}\n'
            for prompt, i, split, v, t, s in zip(
                items.prompts_json, items.argument_ids.tolist(), items.splits,
                items.value_index.tolist(), self.target.tolist(), self.score.tolist()))


def _answers() -> list[dict[int, str]]:
    """[value index][score] -> completion text (60 strings, shared by every example)."""
    return [{s: survey_completion(value, s) for s in PVQ_SCALE} for value in VALUES]


def _answers_json() -> list[dict[int, str]]:
    return [{s: _json(text) for s, text in row.items()} for row in _answers()]


def _json(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def build_stage2(profile: Profile, items: SurveyItems, seed: int = 42) -> Stage2Table:
    """The survey answers of ``profile``: the target score of each row's value, rounded
    stochastically with ``default_rng(seed)`` (one draw per row, in row order)."""
    target = np.asarray(profile.scores, dtype=np.float64)[items.value_index]
    return Stage2Table(profile, items, target,
                       stochastic_round(target, np.random.default_rng(seed)))


def _stage2_slices(train: list[Argument], valid: list[Argument],
                   limit: int | None) -> dict[str, list[Argument]]:
    if limit is None or limit >= len(train) + len(valid):
        return {"train": train, "valid": valid}
    n_valid = 0 if limit < 2 else max(1, round(limit * len(valid) / (len(train) + len(valid))))
    n_valid = min(n_valid, len(valid))
    return {"train": train[:limit - n_valid], "valid": valid[:n_valid]}


# --------------------------------------------------------------------------- loading

def read_stage1_arguments(data_dir: str | None = None) -> list[Argument]:
    """The arguments stage 1 trains on (the train split of the argument files)."""
    return sources.read_arguments(sources.locate("valueeval", data_dir))


def read_stage2_arguments(data_dir: str | None = None) -> tuple[list[Argument], list[Argument]]:
    """(train, valid) arguments whose survey items stage 2 trains on."""
    return (sources.read_arguments(sources.locate("arguments-train", data_dir)),
            sources.read_arguments(sources.locate("arguments-valid", data_dir)))


def survey_items(data_dir: str | None = None, limit: int | None = None) -> SurveyItems:
    """The stage-2 survey items (train and valid; the first ``limit`` of each)."""
    return SurveyItems.of(_stage2_slices(*read_stage2_arguments(data_dir), limit))


# --------------------------------------------------------------------------- one profile

@dataclass(frozen=True)
class VimData:
    """Both stages' examples for one target profile."""

    profile: Profile
    stage1: list[Example]
    stage2: list[Example]
    warnings: tuple[str, ...] = ()  # e.g. "no positive arguments": said, never silent

    def split(self, stage: int | str, split: str) -> list[Example]:
        """Examples of ``stage`` (1, 2, "stage1" or "stage2") in ``split`` (train|valid|test)."""
        key = str(stage).removeprefix("stage")
        if key not in ("1", "2"):
            raise ValueError(f"stage {stage!r}: expected 1 or 2")
        if split not in SPLITS:
            raise ValueError(f"split {split!r}: expected one of {', '.join(SPLITS)}")
        return [ex for ex in (self.stage1 if key == "1" else self.stage2)
                if ex.meta["split"] == split]


def build_vim(profile: Profile, *, data_dir: str | None = None, threshold: float = 3,
              strategy: str = "min", seed: int = 42, limit: int | None = None) -> VimData:
    """Stage-1 and stage-2 examples for ``profile`` from the data files."""
    check_options(threshold, strategy, limit)
    table = build_stage1_many([profile], read_stage1_arguments(data_dir), threshold=threshold,
                              strategy=strategy, seed=seed, limit=limit)[0]
    stage2 = build_stage2(profile, survey_items(data_dir, limit), seed).examples()
    return VimData(profile, table.examples(), stage2, tuple(table.warnings(threshold, strategy)))


# --------------------------------------------------------------------------- files

STAGE1_FIELDS = ("argument_id", "split", "polarity", "prompt", "completion")
STAGE2_FIELDS = ("argument_id", "split", "prompt", "completion")


def to_record(example: Example, fields: Sequence[str]) -> dict:
    """One JSONL line: the named fields first, then the rest of the meta."""
    record = {**example.meta, "prompt": example.prompt, "completion": example.completion}
    return {**{f: record[f] for f in fields}, **record}


def jsonl_text(examples: Sequence[Example], fields: Sequence[str]) -> str:
    """``examples`` as JSON lines with the given fields."""
    return "".join(json.dumps(to_record(ex, fields), ensure_ascii=False) + "\n"
                   for ex in examples)
