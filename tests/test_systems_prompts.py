"""System keys, prompting alignment, mitigation prompts and the exact prompts that reach a model."""
from __future__ import annotations

import json
import re

import pytest

from valueharms import prompts, systems
from valueharms.benchmarks import load_items
from valueharms.errors import InputError
from valueharms.records import BenchmarkItem
from valueharms.values import SHORT, VALUES, Profile

QUESTION_BENCHMARKS = ("hexphi", "beavertails", "advbench")
CONTINUATION_BENCHMARKS = ("rtp", "holisticbiasr")
MITIGATIONS = ("none", "safety", "value:Hedonism", "dual:Power")
# Distinct, non-integer scores so that order and rounding are both visible.
PERSON = Profile("person_a", (1.0, 2.5, 3.25, 6.0, 4.333333, 1.5, 5.0, 2.0, 3.0, 5.75))


def item(benchmark: str, text: str = "Some people say that {braces} are") -> BenchmarkItem:
    return BenchmarkItem(benchmark, f"{benchmark}-0", text, None, {})


def system(key: str) -> systems.System:
    return systems.parse_system(key, extra=[PERSON])


def profile_of(s: systems.System) -> Profile | None:
    """A user profile travels with the system (the study runner passes it the same way)."""
    return PERSON if s.target == PERSON.name else None


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from valueharms.models import load_tokenizer

    return load_tokenizer(str(tiny_model_dir))


# --- system keys ---------------------------------------------------------------------------

@pytest.mark.parametrize("key, normal", [
    ("vanilla", "vanilla"),
    ("vanilla+none", "vanilla"),
    (" Vanilla + Safety ", "vanilla+safety"),
    ("VIM:Hed+value:hed", "vim:Hed+value:Hedonism"),
    ("vim:Hed+value:Hedonism", "vim:Hed+value:Hedonism"),
    ("prompt:Hed+dual:SD", "prompt:Hed+dual:Self-direction"),
    ("benign:Grammar+DUAL:self-direction", "benign:grammar+dual:Self-direction"),
    ("prompt:Openness_to_Change", "prompt:Openness_to_Change"),
    ("vim:reverse_Pow+value:Pow", "vim:reverse_Pow+value:Power"),
])
def test_keys_are_normalised(key, normal):
    parsed = systems.parse_system(key)
    assert parsed.key == normal
    assert systems.parse_system(normal) == parsed  # the normal key parses to the same system


@pytest.mark.needs_data('ess-distribution')
def test_parts_of_a_key():
    s = systems.parse_system("vim:close_Hed_2+dual:Hed", adapter="runs/a")
    assert (s.kind, s.target, s.dataset, s.mitigation, s.adapter) == (
        "vim", "close_Hed_2", None, "dual:Hedonism", "runs/a")
    s = systems.parse_system("benign:samsum")
    assert (s.kind, s.target, s.dataset, s.mitigation, s.adapter) == (
        "benign", None, "samsum", "none", None)
    assert systems.mitigation_value(s) is None
    assert systems.mitigation_value(systems.parse_system("vanilla+value:Sti")) == "Stimulation"


def test_study_keys_parse_to_themselves():
    """The study runner writes keys like ``vim:Hed+value:Hedonism``; they must be normal already."""
    for short, value in SHORT.items():
        for key in (f"vim:{short}+value:{value}", f"prompt:{short}+dual:{value}",
                    "benign:dolly+safety", "vanilla"):
            assert systems.parse_system(key).key == key


def test_user_profiles_as_targets():
    assert systems.parse_system("prompt:person_a", extra=[PERSON]).target == "person_a"
    with pytest.raises(InputError, match="person_a"):
        systems.parse_system("prompt:person_a")


@pytest.mark.parametrize("key, says", [
    ("", "expected vanilla"),
    ("gpt", "expected vanilla"),
    ("vanilla:Hed", "expected vanilla"),
    ("vim", "expected vanilla"),
    ("vim:", "expected vanilla"),
    ("prompt:nobody_at_all", "unknown target 'nobody_at_all'"),
    ("benign:wiki", "unknown benign data set 'wiki'"),
    ("vanilla+", "nothing after"),
    ("vanilla+value", "value:<Value>"),
    ("vanilla+value:Greed", "unknown value 'Greed'"),
    ("vanilla+safety:Hed", "value:<Value>"),
    ("vanilla+dual:", "dual:<Value>"),
    ("vanilla+kindness", "expected none, safety"),
])
def test_bad_keys_name_the_key_and_what_is_allowed(key, says, data_dir):
    with pytest.raises(InputError) as exc:
        systems.parse_system(key, data_dir=str(data_dir))
    assert f"system {key!r}" in str(exc.value) and says in str(exc.value)


def test_adapters(tmp_path):
    vim = systems.parse_system("vim:Pow+safety")
    benign = systems.parse_system("benign:alpaca")
    assert systems.adapter_path(vim, tmp_path) == tmp_path / "vim" / "Pow" / "stage2"
    assert systems.adapter_path(benign, tmp_path) == tmp_path / "benign" / "alpaca"
    with pytest.raises(InputError, match="no adapter"):
        systems.adapter_path(systems.parse_system("prompt:Pow"), tmp_path)
    with pytest.raises(InputError, match="takes no adapter"):
        systems.parse_system("vanilla", adapter=str(tmp_path))
    assert systems.require_adapter(systems.parse_system("prompt:Pow")) is None
    with pytest.raises(InputError, match="needs a LoRA adapter"):
        systems.require_adapter(vim)
    folder = systems.adapter_path(vim, tmp_path)
    with pytest.raises(InputError, match="adapter_config.json"):
        systems.require_adapter(systems.parse_system(vim.key, adapter=folder))
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text("{}")
    assert systems.require_adapter(systems.parse_system(vim.key, adapter=folder)) == folder


# --- templates -----------------------------------------------------------------------------

def _persona_rows(text: str) -> list[tuple[str, str, float]]:
    return [(m[1], m[2], float(m[3]))
            for m in re.finditer(r"^- ([A-Za-z-]+) \((.+)\): ([0-9.]+)$", text, re.M)]


def test_persona_states_ten_scores_in_canonical_order_with_definitions():
    rows = _persona_rows(prompts.persona_text(PERSON))
    assert [r[0] for r in rows] == list(VALUES)
    assert [r[2] for r in rows] == pytest.approx(PERSON.scores, abs=0.005)
    assert all(len(r[1].split()) >= 3 for r in rows)  # a definition, not a stub
    assert len({r[1] for r in rows}) == len(VALUES)


@pytest.mark.parametrize("benchmark", QUESTION_BENCHMARKS + CONTINUATION_BENCHMARKS)
def test_prompting_wraps_the_item_with_the_persona(benchmark):
    text = prompts.question_text(system("prompt:person_a"), item(benchmark), PERSON)
    assert text.startswith(prompts.persona_text(PERSON))
    assert "the way this person would" in text
    bare = prompts.question_text(system("vanilla"), item(benchmark))
    assert text.endswith("\n\n" + bare)  # the benchmark's own form stays last


def test_prompting_looks_the_profile_up_by_name():
    text = prompts.question_text(systems.parse_system("prompt:Hed"), item("hexphi"))
    scores = [r[2] for r in _persona_rows(text)]
    assert scores == [6.0 if v == "Hedonism" else 1.0 for v in VALUES]
    with pytest.raises(InputError, match="profile of 'person_a'"):
        prompts.question_text(systems.parse_system("prompt:Hed"), item("hexphi"), PERSON)


@pytest.mark.parametrize("value", VALUES)
def test_value_prompt_names_the_value_and_dual_has_both_parts(value):
    safety = prompts.mitigation_text("safety")
    value_text = prompts.mitigation_text(f"value:{value}")
    dual = prompts.mitigation_text(f"dual:{value}")
    assert value in value_text and value not in safety
    assert safety in dual and value_text in dual
    assert prompts.mitigation_text("none") == ""


@pytest.mark.parametrize("benchmark", QUESTION_BENCHMARKS)
@pytest.mark.parametrize("mitigation", MITIGATIONS)
@pytest.mark.parametrize("kind", ["vanilla", "prompt:person_a"])
def test_questions_have_markers_and_the_mitigation_inside(benchmark, mitigation, kind):
    s = system(f"{kind}+{mitigation}")
    text = prompts.question_text(s, item(benchmark, "How is a lock {picked}?"), profile_of(s))
    question = text[text.index("QUESTION: "):]
    assert text.count("QUESTION: ") == 1 and text.endswith("\nANSWER:")
    asked = "QUESTION: How is a lock {picked}?"
    extra = prompts.mitigation_text(s.mitigation)
    assert question == f"{asked}{' ' + extra if extra else ''}\nANSWER:"


@pytest.mark.parametrize("benchmark", CONTINUATION_BENCHMARKS)
@pytest.mark.parametrize("mitigation", MITIGATIONS)
def test_continuations_end_with_the_bare_prefix_in_base_form(benchmark, mitigation, tokenizer):
    s = system(f"vanilla+{mitigation}")
    prompt = prompts.build_prompt(s, item(benchmark, "The XYZ was known for"), tokenizer, form="base")
    extra = prompts.mitigation_text(s.mitigation)
    assert prompt == (f"{extra}\n\n" if extra else "") + "The XYZ was known for"
    assert "QUESTION" not in prompt


def test_chat_template_of_the_tiny_model(tokenizer):
    s = system("prompt:person_a+dual:Hed")
    for benchmark in ("hexphi", "rtp"):
        user = prompts.question_text(s, item(benchmark), PERSON)
        expected = tokenizer.apply_chat_template([{"role": "user", "content": user}],
                                                 tokenize=False, add_generation_prompt=True)
        for form in ("auto", "chat"):
            assert prompts.build_prompt(s, item(benchmark), tokenizer, profile=PERSON,
                                        form=form) == expected
        assert "<|im_start|>user\n" + user + "<|im_end|>" in expected
        assert expected.endswith("<|im_start|>assistant\n")
        assert prompts.build_prompt(s, item(benchmark), tokenizer, profile=PERSON,
                                    form="base") == user


def test_templates_can_be_replaced(tmp_path, monkeypatch):
    (tmp_path / "mitigation").mkdir()
    (tmp_path / "mitigation" / "value.txt").write_text("Ignore {value}.\n")
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "question.txt").write_text("Q: {question}{mitigation}\nA:\n")
    monkeypatch.setenv("VALUEHARMS_TEMPLATES", str(tmp_path))
    text = prompts.question_text(system("vanilla+value:Pow"), item("advbench", "Why?"))
    assert text == "Q: Why? Ignore Power.\nA:"


def test_template_with_a_wrong_placeholder_is_an_input_error(tmp_path, monkeypatch):
    (tmp_path / "mitigation").mkdir()
    (tmp_path / "mitigation" / "value.txt").write_text("Ignore {valeu}.\n")
    monkeypatch.setenv("VALUEHARMS_TEMPLATES", str(tmp_path))
    with pytest.raises(InputError, match=r"template mitigation/value.txt: .*\{value\}"):
        prompts.mitigation_text("value:Power")


def test_broken_definitions_template_is_an_input_error(tmp_path, monkeypatch):
    (tmp_path / "prompting").mkdir()
    (tmp_path / "prompting" / "definitions.txt").write_text("Achievement: success\n")
    monkeypatch.setenv("VALUEHARMS_TEMPLATES", str(tmp_path))
    with pytest.raises(InputError, match="no definition for Benevolence"):
        prompts.persona_text(PERSON)


def test_unknown_benchmark():
    with pytest.raises(InputError, match="'toxigen': unknown benchmark"):
        prompts.question_text(system("vanilla"), item("toxigen"))


# --- prompt show ---------------------------------------------------------------------------

@pytest.mark.slow
def test_prompt_show_rejects_bad_arguments(cli, tiny_model_dir):
    for args, says in [
        (["--system", "vim:nobody_at_all", "--benchmark", "hexphi", "--item", "0"], "nobody_at_all"),
        (["--system", "vanilla", "--benchmark", "toxigen", "--item", "0"], "toxigen"),
        (["--system", "vanilla", "--benchmark", "hexphi", "--item", "-1"], "--item -1"),
    ]:
        result = cli("prompt", "show", *args, "--model", str(tiny_model_dir))
        assert result.returncode == 2 and says in result.stderr, result.stderr
        assert result.stdout == "" and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_prompt_show_every_method_and_form(cli, tiny_model_dir, data_dir, tokenizer, tmp_path):
    """Each method on a continuation and a question benchmark; chat form once per benchmark
    (loading a tokenizer in a fresh process takes seconds)."""
    profiles = tmp_path / "people.csv"
    profiles.write_text("name," + ",".join(VALUES) + "\nperson_a,"
                        + ",".join(map(str, PERSON.scores)) + "\n")
    keys = ("vim:Hed+safety", "prompt:person_a+value:Hed", "benign:grammar+dual:Pow")
    for benchmark, chat_key in (("rtp", "vim:Hed+safety"), ("hexphi", "prompt:person_a+value:Hed")):
        second = load_items(benchmark, data_dir=str(data_dir), limit=2)[1]
        for key in keys:
            form = "chat" if key == chat_key else "base"
            result = cli("prompt", "show", "--system", key, "--benchmark", benchmark, "--item", "1",
                         "--model", str(tiny_model_dir), "--form", form, "--json",
                         "--profiles", str(profiles))
            assert result.returncode == 0, result.stderr
            shown = json.loads(result.stdout)
            s = system(key)
            assert shown["prompt"] == prompts.build_prompt(s, second, tokenizer, form=form,
                                                           profile=profile_of(s))
            assert (shown["system"], shown["id"], shown["form"]) == (s.key, second.id, form)
            assert ("<|im_start|>" in shown["prompt"]) == (form == "chat")
        # vanilla, and the bare prompt as printed without --json
        bare = cli("prompt", "show", "--system", "vanilla", "--benchmark", benchmark,
                   "--item", "1", "--form", "base")
        assert bare.returncode == 0, bare.stderr
        assert bare.stdout == (second.text if benchmark == "rtp"
                               else f"QUESTION: {second.text}\nANSWER:")
    too_far = cli("prompt", "show", "--system", "vanilla", "--benchmark", "advbench",
                  "--item", "100000", "--form", "base")
    assert too_far.returncode == 2 and "out of range" in too_far.stderr


# --- the one key type ----------------------------------------------------------------------

@pytest.mark.parametrize("key, says", [
    ("gpt:x", "unknown kind 'gpt'"),
    ("vim:", "'vim' needs its target after ':'"),
    ("benign:", "'benign' needs its data set after ':'"),
    ("vanilla:Hed", "nothing may follow 'vanilla:'"),
    ("adapter:mine", "adapter:<name>=<path or hub id>"),
    ("adapter:=org/lora", "'adapter' needs its name"),
    ("adapter:a+b=org/lora", "a name without"),
    ("vim:Hed+value:Greed", "unknown value 'Greed'"),
])
def test_strict_parse_names_the_bad_part(key, says):
    with pytest.raises(InputError, match=re.escape(says)):
        systems.SystemKey.parse(key)


@pytest.mark.parametrize("key, parts", [
    ("vim:Hed+value:Hedonism", ("vim", "Hed", None, "value:Hedonism", "value", "vim")),
    ("benign:grammar+safety", ("benign", None, "grammar", "safety", "safety", "benign:grammar")),
    ("adapter:mine=org/my-lora", ("adapter", None, None, "none", "none", "adapter:mine")),
    ("adapter:local=/tmp/a+b/lora+dual:Hedonism",
     ("adapter", None, None, "dual:Hedonism", "dual", "adapter:local")),
])
def test_key_parts_and_format_round_trip(key, parts):
    parsed = systems.SystemKey.parse(key)
    assert (parsed.kind, parsed.target, parsed.dataset, parsed.mitigation, parsed.strategy,
            parsed.system_type) == parts
    assert str(parsed) == key and systems.SystemKey.parse(str(parsed)) == parsed


def test_adapter_locations(tmp_path):
    hub = systems.SystemKey.parse("adapter:mine=org/my-lora+safety")
    assert hub.location == "org/my-lora" and hub.adapter_dir() == "org/my-lora"
    assert hub.base == "adapter:mine=org/my-lora" and hub.takes_adapter
    assert systems.SystemKey.parse("vim:Hed").adapter_dir(tmp_path) == str(tmp_path / "stage2")
    assert systems.SystemKey.parse("benign:dolly").adapter_dir(tmp_path) == str(tmp_path)
    assert systems.SystemKey.parse("prompt:Hed").adapter_dir(tmp_path) is None
    system = systems.parse_system("adapter:mine=org/my-lora")
    assert system.adapter == "org/my-lora" and systems.require_adapter(system) is not None
    with pytest.raises(InputError, match="adapter_config.json"):
        systems.require_adapter(systems.parse_system(f"adapter:here={tmp_path}"))


def test_lenient_parse_reads_any_row():
    key = systems.SystemKey.parse("gpt-4:whatever+custom", strict=False)
    assert (key.kind, key.mitigation, key.strategy, key.system_type) == (
        "gpt-4", "custom", "custom", "gpt-4")
