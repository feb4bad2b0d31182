"""Benchmarks: item counts, HolisticBiasR structure, slices, default decoding, the CLI."""
from __future__ import annotations

import json
from collections import Counter

import pytest

from valueharms import benchmarks, holisticbiasr, sources
from valueharms.errors import InputError


@pytest.fixture(scope="module")
def hbr(data_dir):
    return benchmarks.load_items("holisticbiasr", data_dir=str(data_dir))


@pytest.mark.parametrize("name,count,categories,per_category", [
    ("hexphi", 330, 11, 30), ("beavertails", 700, 14, 50), ("advbench", 520, 0, None),
    ("rtp", 3000, 0, None)])
def test_counts(data_dir, name, count, categories, per_category):
    items = benchmarks.load_items(name, data_dir=str(data_dir))
    assert len(items) == count
    assert len({it.id for it in items}) == count
    per = Counter(it.category for it in items if it.category is not None)
    assert len(per) == categories
    if per_category:
        assert set(per.values()) == {per_category}


def test_rtp_is_the_first_3000_prompts_of_the_file(data_dir):
    everything = sources.read_rtp(sources.locate("rtp", str(data_dir)))
    items = benchmarks.load_items("rtp", data_dir=str(data_dir))
    assert [it.text for it in items] == everything[:3000]
    assert len(everything) > 3000


def test_holisticbiasr_counts_match_the_published_builder(hbr, data_dir):
    # 21,446 noun phrases x 10 templates = 214,460 prompts, the size of the published set.
    assert len(hbr) == 214_460
    phrases = benchmarks.noun_phrases(str(data_dir))
    assert len(phrases) == 21_446
    # The same total from the JSON files by counting alone.
    nouns = json.loads(sources.locate("holisticbias-nouns", str(data_dir)).read_text())
    descriptors = json.loads(sources.locate("holisticbias-descriptors", str(data_dir)).read_text())
    standalone = json.loads(
        sources.locate("holisticbias-standalone_noun_phrases", str(data_dir)).read_text())
    per_gender = {g: len(pairs) for g, pairs in nouns.items()}
    n_nouns = sum(per_gender.values())
    expected = n_nouns  # the bare nouns ("a woman")
    for buckets in descriptors.values():
        for entries in buckets.values():
            for e in entries:
                gender = e.get("gender") if isinstance(e, dict) else None
                expected += per_gender[gender] if gender else n_nouns
    for entries in standalone.values():
        for e in entries:
            phrase = e if isinstance(e, str) else e["noun_phrase"]
            expected += n_nouns if "{noun}" in phrase else 1
    assert len(phrases) == expected
    assert Counter(p["noun_phrase_type"] for p in phrases).keys() == set(benchmarks.NOUN_PHRASE_TYPES)


def test_holisticbiasr_items_carry_what_the_regard_scorer_needs(hbr):
    assert Counter(it.meta["template"] for it in hbr) == {t: 21_446 for t in benchmarks.REGARD_TEMPLATES}
    for it in hbr[::997]:
        m = it.meta
        assert {"axis", "bucket", "descriptor", "preference", "noun_phrase", "template",
                "noun_phrase_type", "original_noun_phrase"} <= m.keys()
        # Masking the noun phrase as XYZ gives back the template.
        assert it.text == m["template"].replace("XYZ", m["noun_phrase"])
        assert it.text.replace(m["noun_phrase"], "XYZ") == m["template"]
        assert m["noun_phrase"].startswith("The ")
        assert it.category == m["axis"]
        shown = benchmarks.definite(benchmarks.styled(m["original_noun_phrase"],
                                                      m["remove_descriptor_hyphens"],
                                                      m["lowercase_descriptor"]))
        assert shown == m["noun_phrase"]


def test_holisticbiasr_variants_are_seeded_and_about_half(hbr, data_dir):
    share = sum(it.meta["lowercase_descriptor"] for it in hbr) / len(hbr)
    assert 0.48 < share < 0.52
    share = sum(it.meta["remove_descriptor_hyphens"] for it in hbr) / len(hbr)
    assert 0.48 < share < 0.52
    again = holisticbiasr.build(str(data_dir))  # a fresh build, not the cached one
    assert [it.text for it in again[:5000]] == [it.text for it in hbr[:5000]]
    hyphenated = [it for it in hbr if "-" in it.meta["original_noun_phrase"]]
    assert any(it.meta["remove_descriptor_hyphens"] and "-" not in it.meta["noun_phrase"]
               for it in hyphenated)


def test_dispreferred_subset_keeps_ids(hbr, data_dir):
    sub = benchmarks.load_items("holisticbiasr", "dispreferred", str(data_dir))
    by_id = {it.id: it for it in hbr}
    assert len(sub) == sum(it.meta["preference"] == "dispreferred" for it in hbr) == 17_700
    assert all(by_id[it.id] == it for it in sub)
    descriptors = {it.meta["descriptor"] for it in sub}
    assert {"retarded", "crippled", "wheelchair-bound"} <= descriptors


def test_slices(data_dir):
    d = str(data_dir)
    items = benchmarks.load_items("hexphi", data_dir=d, categories=["malware", "adult_content"],
                                  limit=40)
    assert len(items) == 40 and {it.category for it in items} == {"malware", "adult_content"}
    assert [it.id for it in benchmarks.load_items("advbench", data_dir=d, limit=3)] == ["0", "1", "2"]
    with pytest.raises(InputError, match="not a category of hexphi"):
        benchmarks.load_items("hexphi", data_dir=d, categories=["nope"])
    with pytest.raises(InputError, match="rtp has no categories"):
        benchmarks.load_items("rtp", data_dir=d, categories=["x"])
    with pytest.raises(InputError, match="--subset"):
        benchmarks.load_items("hexphi", "dispreferred", d)
    with pytest.raises(InputError, match="--limit"):
        benchmarks.load_items("hexphi", data_dir=d, limit=0)
    with pytest.raises(InputError, match="unknown benchmark"):
        benchmarks.load_items("toxigen", data_dir=d)


def test_default_decoding_follows_the_paper():
    b = benchmarks.BENCHMARKS
    assert {n: (x.decoding.samples, x.decoding.max_new_tokens) for n, x in b.items()} == {
        "rtp": (10, 64), "holisticbiasr": (1, 128), "hexphi": (1, 64), "beavertails": (1, 64),
        "advbench": (1, 64)}
    assert {(x.decoding.temperature, x.decoding.top_p) for x in b.values()} == {(0.1, 0.75)}
    assert {n for n, x in b.items() if x.form == benchmarks.QUESTION} == {
        "hexphi", "beavertails", "advbench"}
    for x in b.values():  # a question's answer stops where a new question would begin
        assert x.decoding.stop == (("\nQUESTION:",) if x.form == benchmarks.QUESTION else ())


def test_missing_data_file_names_it(tmp_path, monkeypatch):
    monkeypatch.delenv("VALUEHARMS_DATA", raising=False)
    monkeypatch.setenv("VALUEHARMS_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match="hex-phi.csv"):
        benchmarks.load_items("hexphi", data_dir=str(tmp_path))


@pytest.mark.needs_data()
@pytest.mark.slow
def test_cli_benchmarks_list(cli):
    r = cli("benchmarks", "list")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "rtp all 3000", "holisticbiasr all 214460", "holisticbiasr dispreferred 17700",
        "hexphi all 330", "beavertails all 700", "advbench all 520"]


@pytest.mark.needs_data()
@pytest.mark.slow
def test_cli_benchmarks_categories_and_bad_input(cli, tmp_path):
    r = cli("benchmarks", "categories", "hexphi")
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 11
    bad = tmp_path / "data"
    bad.mkdir()
    (bad / "hex-phi.csv").write_text("category,prompt\nmalware,\n")
    r = cli("benchmarks", "categories", "hexphi", "--data-dir", str(bad))
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "row 1" in r.stderr and "'prompt'" in r.stderr
