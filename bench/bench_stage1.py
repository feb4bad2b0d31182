"""Stage-1 VIM data for 182 profiles (paper 154 + reverse 14 + extremes 14) from
valueEval_10.csv: the toolkit (one [P, A] mask, texts rendered once) vs a row-by-row baseline
in the reference's style (pandas iterrows per profile, min over the annotated values, texts
formatted per row, each polarity shuffled and cut 80/10/10).

The baseline runs on every 26th profile (7 of 182) and is extrapolated linearly to 182;
both must give identical positive sets and split sizes on those profiles.
"""
from __future__ import annotations

import time

import numpy as np
import pandas as pd

from valueharms import sources, targets
from valueharms.align import vim_data
from valueharms.values import VALUES

THRESHOLD, SEED, EVERY = 3, 42, 26


def profiles() -> list:
    return (targets.load_set("paper") + targets.load_set("reverse")
            + targets.load_set("extremes"))


def toolkit(path) -> list[vim_data.Stage1Table]:
    texts = vim_data.Stage1Texts.of(sources.read_arguments(path))
    return vim_data.build_stage1_many(profiles(), texts, threshold=THRESHOLD, seed=SEED)


def row_by_row(df: pd.DataFrame, profile) -> dict[str, list[dict]]:
    """One profile the reference's way: every row visited in Python."""
    prompt, answer = vim_data._tpl("stage1.txt"), vim_data._tpl("stage1_answer.txt")
    scores = profile.as_dict()
    by_polarity: dict[str, list[dict]] = {"pos": [], "neg": []}
    for _, row in df.iterrows():
        values = [v for v in VALUES if int(row[v]) == 1]
        polarity = "pos" if min(scores[v] for v in values) >= THRESHOLD else "neg"
        by_polarity[polarity].append({
            "argument_id": int(row["id"]),
            "prompt": prompt.format(conclusion=row["Conclusion"], would=vim_data.WOULD[polarity]),
            "completion": answer.format(agree=vim_data.AGREE[row["Stance"]],
                                        premise=row["Premise"])})
    rng = np.random.default_rng(SEED)
    for rows in by_polarity.values():
        rows[:] = [rows[i] for i in rng.permutation(len(rows))]
        n = len(rows)
        train = round(0.8 * n)
        valid = round(0.5 * (n - train))
        for i, row in enumerate(rows):
            row["split"] = "train" if i < train else "valid" if i < train + valid else "test"
    return by_polarity


def main() -> None:
    path = sources.locate("valueeval")
    all_profiles = profiles()
    runs = []
    for _ in range(3):
        start, cpu = time.perf_counter(), time.process_time()
        tables = toolkit(path)
        runs.append((time.perf_counter() - start, time.process_time() - cpu))
    fast, fast_cpu = min(runs)

    df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False).rename(
        columns={"Unnamed: 0": "id"})
    subset = list(range(0, len(all_profiles), EVERY))
    start, cpu = time.perf_counter(), time.process_time()
    slow_out = {i: row_by_row(df, all_profiles[i]) for i in subset}
    slow_subset = time.perf_counter() - start
    scale = len(all_profiles) / len(subset)
    slow, slow_cpu = slow_subset * scale, (time.process_time() - cpu) * scale

    for i in subset:
        table, ref = tables[i], slow_out[i]
        mine = set(table.texts.ids[table.positive].tolist())
        theirs = {row["argument_id"] for row in ref["pos"]}
        assert mine == theirs, f"{all_profiles[i].name}: positive sets differ"
        counts = table.counts()
        for polarity in ("pos", "neg"):
            sizes = {s: sum(r["split"] == s for r in ref[polarity]) for s in vim_data.SPLITS}
            assert counts[polarity] == sizes, f"{all_profiles[i].name} {polarity}: split sizes differ"
    n_pos = sum(int(t.positive.sum()) for t in tables)
    print(f"profiles {len(all_profiles)}, arguments {len(tables[0].positive)}, "
          f"positive (profile, argument) pairs {n_pos}")
    print(f"toolkit      {fast:8.3f} s wall {fast_cpu:8.3f} s CPU  "
          f"(read + render + masks + splits, all 182, best of 3)")
    print(f"row-by-row   {slow:8.3f} s wall {slow_cpu:8.3f} s CPU  "
          f"(extrapolated from {len(subset)} profiles: {slow_subset:.2f} s wall)")
    print(f"identical positive sets and split sizes on {len(subset)} profiles")
    print(f"ratio stage1_data {slow / fast:.1f}")


if __name__ == "__main__":
    main()
