"""The safety benchmarks: their items, prompt forms and the paper's decoding (temperature 0.1,
top-p 0.75; RTP 10 samples x 64 tokens, HolisticBiasR 1 x 128, question benchmarks 1 x 64).

``load_items(name)`` turns a data file into :class:`~valueharms.records.BenchmarkItem` s with
stable ids (the row in the source file; for HolisticBiasR the position in the full set, so an
item keeps its id in every subset and slice).

HolisticBiasR is built by :mod:`valueharms.holisticbiasr` from the HolisticBias v1.1 files.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, replace

from . import holisticbiasr, sources
from .config import STOP_POLICIES
from .errors import InputError
from .holisticbiasr import (  # noqa: F401  (also imported from here, their old home)
    MASK,
    NOUN_PHRASE_TYPES,
    REGARD_TEMPLATES,
    VARIANT_SEED,
    definite,
    noun_phrases,
    styled,
)
from .records import BenchmarkItem, Decoding

COMPLETION, QUESTION = "completion", "question"
ALL = "all"
RTP_ITEMS = 3000  # the paper evaluates the first 3,000 prompts of the file


@dataclass(frozen=True)
class Benchmark:
    """What a benchmark is: its files, subsets, prompt form, paper-default decoding, the
    measures that fit its answers (the first is the one its paper used) and its headline
    metrics (``higher_is_worse``: every headline metric grows with harm)."""

    name: str
    title: str
    files: tuple[str, ...]  # keys in sources.DATASETS
    form: str  # completion: the text is continued; question: QUESTION: ... ANSWER:
    decoding: Decoding
    measures: tuple[str, ...]  # kinds in valueharms.measures.MEASURES
    headline: tuple[str, ...]
    subsets: tuple[str, ...] = (ALL,)
    higher_is_worse: bool = True


def _decoding(samples: int, max_new_tokens: int, stop: tuple[str, ...] = ()) -> Decoding:
    return Decoding(temperature=0.1, top_p=0.75, max_new_tokens=max_new_tokens, samples=samples,
                    stop=stop)


# A question-form answer ends where the model starts to write the next question itself.
_QUESTION_STOP = ("\nQUESTION:",)
# Any answer can also be scored for toxicity (e.g. Perspective on HEx-PHI answers).
_JUDGED = ("judge", "toxicity")
# Stop policies (config.STOP_POLICIES): "benchmark" = the benchmark's stops for every system
# (the fair default); "reference" = the paper's code's per-arm stops (:func:`reference_stops`).


def reference_stops(kind: str, benchmark: str) -> tuple[str, ...]:
    """The stop strings the paper's code used for a system kind on a benchmark: vanilla stops
    at the first newline or "." on the continuation benchmarks (nowhere on questions), the
    prompting baseline at the first newline everywhere, adapters (VIM, benign) nowhere.
    So its VIM-vs-vanilla gap mixes alignment with answer length; this reproduces it."""
    if kind == "vanilla":
        return ("\n", ".") if get(benchmark).form == COMPLETION else ()
    if kind == "prompt":
        return ("\n",)
    return ()


def stops_for(policy: str, kind: str, benchmark: str, decoding: Decoding) -> Decoding:
    """``decoding`` with the stop strings the policy gives system ``kind`` on ``benchmark``."""
    if policy not in STOP_POLICIES:
        raise InputError(f"stops {policy!r}: expected one of {', '.join(STOP_POLICIES)}")
    if policy == "benchmark":
        return decoding
    return replace(decoding, stop=reference_stops(kind, benchmark))

BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in [
    Benchmark("rtp", "RealToxicityPrompts, first 3,000 toxic prompts", ("rtp",), COMPLETION,
              _decoding(10, 64), ("toxicity",),
              ("expected_max_toxicity", "toxicity_probability")),
    Benchmark("holisticbiasr", "HolisticBias noun phrases in the 10 regard templates",
              ("holisticbias-descriptors", "holisticbias-nouns",
               "holisticbias-standalone_noun_phrases"), COMPLETION, _decoding(1, 128),
              ("regard", "toxicity"), ("negative_regard_rate", "bias_score"),
              subsets=(ALL, "dispreferred")),
    Benchmark("hexphi", "HEx-PHI harmful instructions (11 categories x 30)", ("hexphi",),
              QUESTION, _decoding(1, 64, _QUESTION_STOP), _JUDGED,
              ("mean_harm_score", "harmfulness_rate")),
    Benchmark("beavertails", "BeaverTails evaluation prompts (14 categories x 50)",
              ("beavertails",), QUESTION, _decoding(1, 64, _QUESTION_STOP), ("flag", "toxicity"),
              ("flagged_rate",)),
    Benchmark("advbench", "AdvBench harmful behaviours", ("advbench",), QUESTION,
              _decoding(1, 64, _QUESTION_STOP), _JUDGED, ("mean_harm_score", "harmfulness_rate")),
]}


def family(benchmark: str) -> str:
    """The benchmark a (possibly suffixed) name belongs to: ``holisticbiasr:dispreferred``,
    ``rtp-small`` -> holisticbiasr, rtp."""
    return str(benchmark).replace("-", "_").split("_")[0].split(":")[0]


def declared(benchmark: str) -> Benchmark | None:
    """The declaration of the benchmark ``benchmark`` belongs to (None for one we don't know)."""
    return BENCHMARKS.get(family(benchmark))


def get(name: str) -> Benchmark:
    """The benchmark named ``name``; InputError when there is none."""
    if name not in BENCHMARKS:
        raise InputError(f"--benchmark {name!r}: unknown benchmark; expected one of "
                         f"{', '.join(BENCHMARKS)}")
    return BENCHMARKS[name]


def load_items(benchmark: str, subset: str | None = None, data_dir: str | None = None,
               limit: int | None = None, categories: list[str] | None = None) -> list[BenchmarkItem]:
    """The items of ``benchmark`` (optionally a subset, some categories, the first ``limit``)."""
    bench = get(benchmark)
    subset = subset or bench.subsets[0]
    if subset not in bench.subsets:
        raise InputError(f"--subset {subset!r}: {benchmark} has subsets {', '.join(bench.subsets)}")
    if limit is not None and limit < 1:
        raise InputError(f"--limit {limit}: must be a positive number of items")
    items = list(_all_items(benchmark, data_dir))
    if subset == "dispreferred":
        items = [it for it in items if it.meta.get("preference") == "dispreferred"]
    if categories:
        items = _select_categories(benchmark, items, categories)
    return items[:limit] if limit else items


def _select_categories(benchmark: str, items: list[BenchmarkItem],
                       categories: list[str]) -> list[BenchmarkItem]:
    known = list(dict.fromkeys(it.category for it in items if it.category is not None))
    if not known:
        raise InputError(f"--categories: {benchmark} has no categories")
    unknown = [c for c in categories if c not in known]
    if unknown:
        raise InputError(f"--categories {unknown[0]!r}: not a category of {benchmark}; expected "
                         f"some of {', '.join(known)}")
    wanted = set(categories)
    return [it for it in items if it.category in wanted]


def categories_of(benchmark: str, data_dir: str | None = None) -> list[str]:
    """The categories of ``benchmark``'s items, sorted."""
    items = _all_items(get(benchmark).name, data_dir)
    return list(dict.fromkeys(it.category for it in items if it.category is not None))


# --------------------------------------------------------------------------- loaders

@functools.lru_cache(maxsize=8)
def _all_items(benchmark: str, data_dir: str | None) -> tuple[BenchmarkItem, ...]:
    # HolisticBiasR takes seconds to build; a process that asks twice builds it once.
    return tuple(_LOADERS[benchmark](data_dir))


def _rtp(data_dir: str | None) -> list[BenchmarkItem]:
    texts = sources.read_rtp(sources.locate("rtp", data_dir))[:RTP_ITEMS]
    return [BenchmarkItem("rtp", str(i), t) for i, t in enumerate(texts)]


def _hexphi(data_dir: str | None) -> list[BenchmarkItem]:
    df = sources.read_hexphi(sources.locate("hexphi", data_dir))
    return [BenchmarkItem("hexphi", str(i), p, category=c)
            for i, (c, p) in enumerate(zip(df["category"], df["prompt"]))]


def _beavertails(data_dir: str | None) -> list[BenchmarkItem]:
    df = sources.read_beavertails(sources.locate("beavertails", data_dir))
    return [BenchmarkItem("beavertails", i or str(n), p, category=c,
                          meta={"category_id": cid})
            for n, (i, p, c, cid) in enumerate(zip(df["id"], df["prompt"], df["category"],
                                                   df["category_id"]))]


def _advbench(data_dir: str | None) -> list[BenchmarkItem]:
    df = sources.read_advbench(sources.locate("advbench", data_dir))
    return [BenchmarkItem("advbench", str(i), g, meta={"target": t})
            for i, (g, t) in enumerate(zip(df["goal"], df["target"]))]


_LOADERS = {"rtp": _rtp, "holisticbiasr": holisticbiasr.build, "hexphi": _hexphi,
            "beavertails": _beavertails, "advbench": _advbench}
