"""Generation: mixed-adapter batches, per-row seeds, stop strings, SIGKILL resume, the
OpenAI-compatible backend against a local fake server, vLLM request building, CLI errors."""
from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from valueharms import chat
from valueharms import cli as cli_main
from valueharms.errors import InputError
from valueharms.generate import GenRequest, row_seed, truncate_at_stop
from valueharms.records import BenchmarkItem, Decoding, System

GREEDY = Decoding(temperature=0.0, top_p=1.0, max_new_tokens=10)
PROMPTS = ["Hello there, my friend", "The cat sat on the", "QUESTION: how?\nANSWER:", "x y"]


@pytest.fixture(scope="module")
def adapters(tiny_model_dir, tmp_path_factory) -> list[str]:
    """Two LoRA adapters with random, non-zero A and B, so each changes the model."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    out = []
    for k in range(2):
        torch.manual_seed(100 + k)
        base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
        config = LoraConfig(r=8, lora_alpha=32, target_modules=["q_proj", "v_proj"],
                            init_lora_weights=False)
        path = tmp_path_factory.mktemp(f"adapter{k}")
        get_peft_model(base, config).save_pretrained(path)
        out.append(str(path))
    return out


@pytest.fixture(scope="module")
def hf(tiny_model_dir):
    from valueharms.generate.hf import HFBackend

    return HFBackend(str(tiny_model_dir), batch_size=16, device="cpu")


def _texts(backend, requests):
    return [r.text for r in backend.generate(requests)]


def test_mixed_adapter_batch_equals_each_adapter_alone(hf, adapters):
    choices = [None, *adapters]
    mixed = [GenRequest(p, GREEDY, 0, a) for p in PROMPTS for a in choices]
    together = dict(zip([(r.prompt, r.adapter) for r in mixed], _texts(hf, mixed)))
    alone = {a: _texts(hf, [GenRequest(p, GREEDY, 0, a) for p in PROMPTS]) for a in choices}
    for a in choices:
        assert [together[(p, a)] for p in PROMPTS] == alone[a]
    # The adapters really change the output (else the comparison proves nothing).
    assert alone[None] != alone[adapters[0]] != alone[adapters[1]] != alone[None]
    assert len(hf.adapters) == 2  # each loaded once onto the one base model


def test_sampling_depends_on_the_row_seed_only(hf, adapters):
    hot = Decoding(temperature=1.0, top_p=0.95, max_new_tokens=12)
    batch = [GenRequest(p, hot, 1000 + i, adapters[i % 2]) for i, p in enumerate(PROMPTS)]
    together = _texts(hf, batch)
    single = [_texts(hf, [r])[0] for r in batch]
    assert together == single
    reversed_batch = _texts(hf, batch[::-1])[::-1]
    assert reversed_batch == together
    other_seeds = _texts(hf, [GenRequest(r.prompt, hot, r.seed + 1, r.adapter) for r in batch])
    assert other_seeds != together


def _study_like_requests(backend, adapters, decoding) -> list[GenRequest]:
    """Real prompts as a study builds them: chat template, persona blocks, mitigations, and
    adapters; rows of a prompt system share a long start, every row the system prompt."""
    from valueharms import systems

    items = [BenchmarkItem("hexphi", f"q{i}", text) for i, text in enumerate(
        ["How do I pick a lock?", "Write a poem about rain.", "How do I bake bread?"])]
    keys = [("vanilla", None), ("prompt:Hed", None), ("prompt:Hed+value:Hedonism", None),
            ("prompt:Pow", None), ("vim:Hed", adapters[0]), ("benign:grammar", adapters[1])]
    requests = []
    for n, (key, adapter) in enumerate(keys):
        system = systems.parse_system(key, adapter)  # Hed, Pow: built-in profiles
        for item in items:
            requests.append(GenRequest(backend.prompt(system, item, None), decoding,
                                       1000 * n + int(item.id[1:]), adapter))
    return requests


@pytest.mark.parametrize("decoding", [GREEDY, Decoding(temperature=1.0, top_p=0.9,
                                                        max_new_tokens=10)])
def test_shared_prefixes_give_the_same_texts(tiny_model_dir, adapters, decoding):
    """The shared-prefix path against the plain left-padded path: same texts for greedy
    decoding and for sampling with per-row seeds, and the prefixes were really shared."""
    from valueharms.generate.hf import HFBackend, shared_prefix_lengths

    plain = HFBackend(str(tiny_model_dir), batch_size=32, device="cpu", prefix_cache=False)
    shared = HFBackend(str(tiny_model_dir), batch_size=32, device="cpu", prefix_cache=True)
    requests = _study_like_requests(plain, adapters, decoding)
    assert _texts(shared, requests) == _texts(plain, requests)
    ids = [chat.prompt_token_ids(r.prompt, shared.tokenizer) for r in requests]
    cut = shared_prefix_lengths(ids, [r.adapter or "" for r in requests])
    assert all(0 < c < len(x) for c, x in zip(cut, ids))  # every row starts from a cached prefix
    persona = [c for c, r in zip(cut, requests) if "Hed" in r.prompt and r.adapter is None]
    assert min(persona) > 100  # the persona block is part of the shared prefix
    # One prefix per (adapter, shared start): personas of Hed (both mitigations) and Pow,
    # the base model's system prompt, one per adapter.
    assert len(shared._prefixes) < len(requests) / 2
    assert not plain._prefixes


@pytest.mark.parametrize("adapter", [None, 0])
def test_choice_logprobs_with_shared_prefixes_equal_the_plain_path(tiny_model_dir, adapters,
                                                                   adapter):
    """The alignment check's next-token reading through the prefix cache (survey items behind
    one persona, with and without a LoRA adapter) gives the plain path's log-probabilities."""
    from valueharms.align import check
    from valueharms.generate.hf import HFBackend
    from valueharms.targets import find

    plain = HFBackend(str(tiny_model_dir), batch_size=4, device="cpu", prefix_cache=False)
    shared = HFBackend(str(tiny_model_dir), batch_size=4, device="cpu", prefix_cache=True)
    persona = find("close_Self-Enhancement_10")
    prompts = [check.render_prompt(check.survey_text(q, persona), plain.tokenizer)
               for q in ("He likes to be in charge.", "Being free matters to her a lot.",
                         "He thinks people should be treated equally, always.",
                         "Tradition is important to her.", "He seeks every chance for fun.")]
    lora = None if adapter is None else adapters[adapter]
    got = shared.choice_logprobs(prompts, list(check.CHOICES), lora)
    assert shared._prefixes and not plain._prefixes  # the persona block came from the cache
    assert np.allclose(got, plain.choice_logprobs(prompts, list(check.CHOICES), lora), atol=1e-4)


def test_a_prefix_is_shared_only_within_one_adapter():
    from valueharms.generate.hf import MIN_PREFIX, shared_prefix_lengths

    start = list(range(MIN_PREFIX + 4))
    ids = [start + [1], start + [2], start + [3]]
    assert shared_prefix_lengths(ids, ["a", "a", "b"]) == [len(start)] * 2 + [0]
    assert shared_prefix_lengths([start[:5] + [1], start[:5] + [2]], ["a", "a"]) == [0, 0]
    assert shared_prefix_lengths([start, start], ["a", "a"]) == [len(start) - 1] * 2


def test_row_sampler_follows_the_distribution_and_the_nucleus():
    import torch

    from valueharms.generate.hf import RowSampler

    logits = torch.log(torch.tensor([0.6, 0.3, 0.1])).repeat(4000, 1)
    ids = torch.zeros((4000, 1), dtype=torch.long)
    picked = RowSampler(list(range(4000)), 1.0, 1.0)(ids, logits).argmax(dim=-1)
    freq = torch.bincount(picked, minlength=3) / 4000
    assert torch.allclose(freq, torch.tensor([0.6, 0.3, 0.1]), atol=0.03)
    nucleus = RowSampler(list(range(4000)), 1.0, 0.5)(ids, logits).argmax(dim=-1)
    assert set(nucleus.tolist()) == {0}  # top-p 0.5 keeps only the 0.6 token
    again = RowSampler(list(range(4000)), 1.0, 1.0)(ids, logits).argmax(dim=-1)
    assert torch.equal(again, picked)


def test_stop_strings_cut_the_text(hf):
    assert truncate_at_stop("abc\nQUESTION: x", ("\nQUESTION:",)) == "abc"
    assert truncate_at_stop("a STOP b END", ("END", "STOP")) == "a "
    assert truncate_at_stop("abc", ()) == "abc"
    free = _texts(hf, [GenRequest(PROMPTS[1], GREEDY, 0)])[0]
    stop = free[len(free) // 2:len(free) // 2 + 3]
    assert len(stop) == 3 and stop.strip()
    cut = _texts(hf, [GenRequest(PROMPTS[1], Decoding(temperature=0.0, max_new_tokens=10,
                                                      stop=(stop,)), 0)])[0]
    assert cut == free[:free.index(stop)]


def test_row_seed_is_a_pure_function_of_its_key():
    a = row_seed(42, "vanilla", "rtp", "7", 3)
    assert a == row_seed(42, "vanilla", "rtp", "7", 3)
    assert len({a, row_seed(43, "vanilla", "rtp", "7", 3), row_seed(42, "vim:Hed", "rtp", "7", 3),
                row_seed(42, "vanilla", "rtp", "8", 3), row_seed(42, "vanilla", "rtp", "7", 4)}) == 5
    assert 0 <= a < 2 ** 63


# --------------------------------------------------------------------------- resume


def _args(model, adapter, out, batch_size=2):
    return ["generate", "--system", "vanilla", "--system", "vim:Hed", "--adapter", adapter,
            "--benchmark", "advbench", "--limit", "5", "--samples", "3", "--temperature", "0.8",
            "--max-new-tokens", "6", "--batch-size", str(batch_size), "--model", str(model),
            "--out", str(out), "--no-progress"]


def main(*args: str) -> tuple[int, str, str]:
    """The CLI in this process (no start-up cost): exit code, stdout, stderr."""
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = cli_main.main(list(args))
        except SystemExit as exc:  # argparse errors
            rc = exc.code
    return rc, out.getvalue(), err.getvalue()


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


@pytest.mark.slow
def test_sigkill_then_rerun_gives_the_uninterrupted_file(tiny_model_dir, adapters, tmp_path, data_dir,
                                                        monkeypatch):
    monkeypatch.setenv("VALUEHARMS_DATA", str(data_dir))
    reference = tmp_path / "reference.jsonl"
    assert cli_main.main(_args(tiny_model_dir, adapters[0], reference)) == 0
    expected = reference.read_bytes()
    rows = [json.loads(line) for line in expected.splitlines()]
    assert len(rows) == 2 * 5 * 3
    assert len({(r["system"], r["prompt_id"], r["sample"]) for r in rows}) == 30
    exe = Path(sys.executable).with_name("valueharms")
    for seed in (1, 2):
        out = tmp_path / f"killed{seed}.jsonl"
        stop_after = random.Random(seed).randrange(1, 28)
        proc = subprocess.Popen([str(exe), *_args(tiny_model_dir, adapters[0], out)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env={**os.environ, "VALUEHARMS_DATA": str(data_dir)})
        deadline = time.time() + 300
        while _lines(out) < stop_after and proc.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed_at = _lines(out)
        assert 0 < killed_at < 30, f"seed {seed}: kill landed at {killed_at} lines"
        assert cli_main.main(_args(tiny_model_dir, adapters[0], out)) == 0
        assert out.read_bytes() == expected
    assert main(*_args(tiny_model_dir, adapters[0], out))[1].startswith(f"{out}: 0 generations")
    assert out.read_bytes() == expected


def test_rerun_with_other_settings_is_refused(tiny_model_dir, adapters, tmp_path, data_dir,
                                              monkeypatch):
    out = tmp_path / "g.jsonl"
    args = _args(tiny_model_dir, adapters[0], out)
    args[args.index("--limit") + 1] = "1"
    args[args.index("--samples") + 1] = "1"
    monkeypatch.setenv("VALUEHARMS_DATA", str(data_dir))
    assert cli_main.main(args) == 0
    before = out.read_bytes()
    args[args.index("--temperature") + 1] = "0.5"
    rc, _, err = main(*args)
    assert rc == 2 and "different decoding" in err
    assert out.read_bytes() == before


# --------------------------------------------------------------------------- OpenAI-compatible


def fake_reply(prompt: str) -> str:
    return "reply-" + hashlib.sha256(prompt.encode()).hexdigest()[:12] + "\nQUESTION: more"


class FakeOpenAI:
    """/v1/chat/completions and /v1/completions on 127.0.0.1. The first requests take the
    modes in ``first`` (e.g. 500 then 429); a prompt containing ``poison`` always gets 500."""

    def __init__(self, first=(), poison=None):
        self.first = list(first)
        self.poison = poison
        self.seen: list[dict] = []
        self.lock = threading.Lock()

    def __enter__(self):
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                chat = self.path.endswith("/chat/completions")
                prompt = body["messages"][-1]["content"] if chat else body["prompt"]
                with owner.lock:
                    mode = owner.first.pop(0) if owner.first else "ok"
                    owner.seen.append({"path": self.path, "body": body, "mode": mode,
                                       "auth": self.headers.get("Authorization")})
                if owner.poison and owner.poison in prompt:
                    mode = "500"
                if mode != "ok":
                    self.send_response(int(mode))
                    if mode == "429":
                        self.send_header("Retry-After", "0")
                    payload = json.dumps({"error": {"message": f"injected {mode}"}}).encode()
                else:
                    choice = ({"index": 0, "message": {"role": "assistant",
                                                       "content": fake_reply(prompt)},
                               "finish_reason": "stop"} if chat else
                              {"index": 0, "text": fake_reply(prompt), "finish_reason": "stop"})
                    payload = json.dumps({"id": "x", "object": "chat.completion" if chat else
                                          "text_completion", "created": 0, "model": body["model"],
                                          "choices": [choice]}).encode()
                    self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_openai_backend_retries_and_records_failures(tmp_path, data_dir, monkeypatch):
    from valueharms import benchmarks

    items = benchmarks.load_items("advbench", data_dir=str(data_dir), limit=4)
    secret = "sk-test-" + "s3cr3t" * 4
    out = tmp_path / "api.jsonl"
    args = ["generate", "--backend", "openai", "--model", "fake-model", "--system", "vanilla",
            "--system", "prompt:Hed", "--benchmark", "advbench", "--limit", "4", "--out", str(out),
            "--backoff", "0.01", "--attempts", "3", "--qps", "0", "--concurrency", "4",
            "--no-progress"]
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    monkeypatch.setenv("VALUEHARMS_DATA", str(data_dir))
    with FakeOpenAI(first=["500", "429"], poison=items[2].text) as server:
        rc, stdout, stderr = main(*args, "--base-url", server.url)
    assert rc == 1, stderr
    assert "2 generations failed" in stderr and stderr.count("\n") == 1
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted((g["system"], g["prompt_id"]) for g in rows) == sorted(
        (s, i) for s in ("vanilla", "prompt:Hed") for i in ("0", "1", "3"))
    for g in rows:  # the server's text, cut at the stop string; the prompt is what was sent
        assert g["text"] == fake_reply(g["prompt"]).split("\nQUESTION:")[0]
        assert g["model"] == "fake-model" and g["meta"]["item_text"] in g["prompt"]
    failed = [json.loads(line) for line in (tmp_path / "api.failed.jsonl").read_text().splitlines()]
    assert sorted(f["system"] for f in failed) == ["prompt:Hed", "vanilla"]
    assert {f["prompt_id"] for f in failed} == {"2"} and all("500" in f["error"] for f in failed)
    # The two injected faults were retried; each poisoned prompt was tried 3 times, no more.
    assert [s["mode"] for s in server.seen[:2]] == ["500", "429"]
    per_prompt: dict[str, int] = {}
    for s in server.seen:
        text = s["body"]["messages"][-1]["content"]
        per_prompt[text] = per_prompt.get(text, 0) + 1
    assert len(per_prompt) == 8
    assert sorted(n for t, n in per_prompt.items() if items[2].text in t) == [3, 3]
    assert sum(per_prompt.values()) == 8 + 2 * 2 + sum(
        s["mode"] != "ok" and items[2].text not in s["body"]["messages"][-1]["content"]
        for s in server.seen)
    assert {s["auth"] for s in server.seen} == {f"Bearer {secret}"}
    assert all(s["path"] == "/v1/chat/completions" for s in server.seen)
    assert {s["body"]["temperature"] for s in server.seen} == {0.1}
    for f in tmp_path.iterdir():
        assert secret not in f.read_text()
    assert secret not in stdout + stderr

    with FakeOpenAI() as server:  # the service recovers: only the failed pair is asked again
        rc, _, stderr = main(*args, "--base-url", server.url)
    assert rc == 0, stderr
    assert len(server.seen) == 2
    assert len(out.read_text().splitlines()) == 8
    assert not (tmp_path / "api.failed.jsonl").exists()


def test_openai_completions_mode(tmp_path, monkeypatch):
    from valueharms.generate.openai_compat import OpenAIBackend
    from valueharms.generate.run import generate

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # a local server needs no key
    items = [BenchmarkItem("rtp", str(i), f"Once upon a time {i}") for i in range(3)]
    with FakeOpenAI(first=["503"]) as server:
        backend = OpenAIBackend("m", base_url=server.url, mode="completions", backoff=0.01, qps=0)
        summary = generate([System("vanilla", "vanilla")], items, backend, tmp_path / "c.jsonl",
                           decoding=Decoding(samples=2, max_new_tokens=5), progress=False)
    assert (summary.written, summary.failed) == (6, 0)
    rows = [json.loads(line) for line in (tmp_path / "c.jsonl").read_text().splitlines()]
    assert {r["prompt"] for r in rows} == {it.text for it in items}  # base form: text as is
    assert all(s["path"] == "/v1/completions" for s in server.seen)
    seeds = {s["body"]["seed"] for s in server.seen if s["mode"] == "ok"}
    assert len(seeds) == 6  # one seed per (prompt, sample)


def test_openai_backend_bad_configuration(monkeypatch):
    from valueharms.generate.openai_compat import OpenAIBackend

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(InputError, match=r"\$OPENAI_API_KEY is not set"):
        OpenAIBackend("gpt-4o-mini")
    with pytest.raises(InputError, match="--model"):
        OpenAIBackend(None, base_url="http://127.0.0.1:9/v1")
    backend = OpenAIBackend("m", base_url="http://127.0.0.1:9/v1")
    with pytest.raises(InputError, match="adapter"):
        backend.load_adapters(["/some/adapter"])


# --------------------------------------------------------------------------- vLLM


def test_vllm_request_building_without_vllm(adapters, tmp_path):
    from valueharms.generate import vllm as v

    d = Decoding(temperature=0.1, top_p=0.75, max_new_tokens=64, stop=("\nQUESTION:",))
    assert v.sampling_kwargs(d, 7) == {"n": 1, "temperature": 0.1, "top_p": 0.75, "max_tokens": 64,
                                       "seed": 7, "stop": ["\nQUESTION:"],
                                       "include_stop_str_in_output": False,
                                       "repetition_penalty": 1.0}
    assert v.sampling_kwargs(GREEDY, 1)["temperature"] == 0.0
    assert v.sampling_kwargs(Decoding(temperature=0.0, top_p=0.5), 1)["top_p"] == 1.0
    table = v.LoraTable()
    reqs = [GenRequest("p0", d, 11, adapters[1]), GenRequest("p1", d, 12, None),
            GenRequest("p2", d, 13, adapters[0]), GenRequest("p3", d, 14, adapters[1] + "/")]
    parts = v.engine_requests(reqs, table)
    assert [p for p, _, _ in parts] == ["p0", "p1", "p2", "p3"]
    assert [kw["seed"] for _, kw, _ in parts] == [11, 12, 13, 14]
    loras = [s for _, _, s in parts]
    assert loras[1] is None and loras[0] == loras[3]  # one id per directory, however spelled
    assert (loras[0].id, loras[2].id) == (1, 2) and loras[0].name != loras[2].name
    assert Path(loras[2].path) == Path(adapters[0]).resolve()
    assert len(table) == 2 and table.max_rank() == 8
    with pytest.raises(InputError, match="adapter_config.json"):
        table.get(str(tmp_path))


def test_vllm_missing_is_a_clear_error():
    try:
        import vllm  # noqa: F401
    except ImportError:
        from valueharms.generate.vllm import VLLMBackend

        with pytest.raises(InputError, match="vLLM is not installed"):
            VLLMBackend(None)
    else:
        pytest.skip("vLLM is installed here")


# --------------------------------------------------------------------------- CLI errors


@pytest.mark.parametrize("extra,message", [
    (["--benchmark", "nope"], "unknown benchmark"),
    (["--benchmark", "hexphi", "--subset", "dispreferred"], "--subset"),
    (["--benchmark", "hexphi", "--limit", "0"], "--limit"),
    (["--benchmark", "hexphi", "--top-p", "1.5"], "--top-p"),
    (["--benchmark", "hexphi", "--temperature", "-1"], "--temperature"),
    (["--benchmark", "hexphi", "--categories", "nope"], "not a category"),
    (["--benchmark", "hexphi", "--system", "vim:Hed"], "needs a LoRA adapter"),
    (["--benchmark", "hexphi", "--system", "vim:Hed", "--adapter", "/nonexistent"], "adapter_config"),
    (["--benchmark", "hexphi", "--adapter", "/a", "--adapter", "/b"], "--adapter"),
    (["--benchmark", "hexphi", "--system", "vim:NoSuchTarget"], "unknown target"),
    (["--benchmark", "hexphi", "--system", "wat"], "system 'wat'"),
    (["--benchmark", "hexphi", "--backend", "openai"], "--model"),
    (["--benchmark", "hexphi", "--model", "/tmp"], "config.json"),
])
def test_cli_bad_input_exits_2_without_output(tmp_path, data_dir, monkeypatch, extra, message):
    monkeypatch.setenv("VALUEHARMS_DATA", str(data_dir))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    out = tmp_path / "out.jsonl"
    rc, _, err = main("generate", "--system", "vanilla", "--out", str(out), *extra)
    assert rc == 2, err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.slow
@pytest.mark.needs_data('hexphi', 'advbench')
def test_cli_entry_point_bad_input(cli, tmp_path):
    out = tmp_path / "out.jsonl"
    r = cli("generate", "--system", "vanilla", "--benchmark", "hexphi", "--categories", "nope",
            "--out", str(out))
    assert r.returncode == 2 and r.stderr.startswith("valueharms: error: --categories 'nope'")
    assert not out.exists()
