"""The HTTP server (seq2seq/serve.py): answers equal the Translator's, requests arriving together share a search,
every bad request gets a 4xx naming what was wrong, and the load benchmark runs (tiny)."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from seq2seq.batcher import Batcher, Busy, Options
from seq2seq.serving import Limits

ROOT = Path(__file__).resolve().parents[1]
LINES = ["sa sb sc sd .", "st sk .", "sq sr ss sa sb sc sd se sf .", "sb sb ."]


# ------------------------------------------------------------------------------------- the batcher, on its own


def echo(calls):
    def decode(options, sentences):
        calls.append((options, list(sentences)))
        return [f"{options.beam}:{s}" for s in sentences]

    return decode


def test_requests_waiting_together_share_one_batch_and_a_search_per_option_group():
    calls = []
    batcher = Batcher(echo(calls), max_batch=100, max_wait=0.05)
    futures = [batcher.submit([f"s{i}", f"t{i}"], Options("m", beam=1 + i % 2)) for i in range(5)]
    batcher.start()  # all five wait already: one batch, two searches (beam 1 and beam 2)
    try:
        results = [f.result(timeout=10) for f in futures]
    finally:
        batcher.stop()
    assert results == [[f"{1 + i % 2}:s{i}", f"{1 + i % 2}:t{i}"] for i in range(5)]
    assert batcher.stats["batches"] == 1 and len(calls) == 2
    assert sorted(len(s) for _, s in calls) == [4, 6]


def test_a_full_batch_is_decoded_without_waiting_for_more():
    calls = []
    batcher = Batcher(echo(calls), max_batch=4, max_wait=5.0)
    futures = [batcher.submit([f"s{i}"], Options("m", 1)) for i in range(10)]
    start = time.monotonic()
    batcher.start()
    try:
        assert [f.result(timeout=10) for f in futures[:8]] == [[f"1:s{i}"] for i in range(8)]
        assert time.monotonic() - start < 4  # two full batches went at once; only the last one waits out max_wait
    finally:
        batcher.stop()
    assert [len(s) for _, s in calls[:2]] == [4, 4]


def test_errors_reach_every_request_of_the_search_and_cancelled_requests_are_skipped():
    def failing(options, sentences):
        if "bad" in sentences:
            raise ValueError("broken sentence")
        return sentences

    batcher = Batcher(failing, max_batch=100, max_wait=0.05, max_pending=5)
    a, b = batcher.submit(["bad"], Options("m", 1)), batcher.submit(["x"], Options("m", 1))
    cancelled, other = batcher.submit(["y"], Options("m", 2)), batcher.submit(["z"], Options("m", 3))
    with pytest.raises(Busy):
        batcher.submit(["1", "2"], Options("m", 1))  # 4 pending + 2 > 5
    assert cancelled.cancel()
    batcher.start()
    try:
        for f in (a, b):
            with pytest.raises(ValueError, match="broken sentence"):
                f.result(timeout=10)
        assert other.result(timeout=10) == ["z"]
    finally:
        batcher.stop()
    assert batcher.pending == 0


# ------------------------------------------------------------------------------------------ the live server


@pytest.fixture(scope="module")
def translator(toy_run):
    from seq2seq.translator import Translator

    return Translator.from_run(toy_run, device="cpu")


@pytest.fixture(scope="module")
def server(translator):
    import fastapi  # noqa: F401 - the serve extra, in dev

    from seq2seq.serve import create_app, serve_in_thread

    app = create_app({"toy": translator}, Limits(max_body_bytes=4096, max_sentences=8, max_chars=100), beam=5,
                     max_wait=0.02)  # fmt: skip
    with serve_in_thread(app) as url:
        yield url


def call(url: str, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request(method, path, body, headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def post(url: str, payload) -> tuple[int, dict]:
    status, data = call(url, "POST", "/translate", json.dumps(payload).encode(), {"Content-Type": "application/json"})
    return status, json.loads(data)


def test_health_models_and_page(server):
    status, body = call(server, "GET", "/health")
    assert status == 200 and json.loads(body)["status"] == "ok"
    status, body = call(server, "GET", "/models")
    info = json.loads(body)
    assert status == 200 and info["models"][0]["name"] == "toy"
    assert {"precision", "device", "src_vocab", "tgt_vocab", "recipe"} <= info["models"][0].keys()
    status, body = call(server, "GET", "/")
    assert status == 200 and b'id="translate"' in body


def test_answers_are_the_translators(server, translator):
    status, body = post(server, {"sentences": LINES, "beam": 5, "n_best": 2, "attention": True})
    assert status == 200
    expected = translator.translate_n_best(LINES, 5, 2)
    assert body["translations"] == [hyps[0].text for hyps in expected]
    assert [[h["text"] for h in hyps] for hyps in body["n_best"]] == [[h.text for h in hyps] for hyps in expected]
    first = body["attention"][0]
    assert len(first["weights"]) == len(first["target"]) and len(first["weights"][0]) == len(first["source"])
    status, body = post(server, {"sentences": LINES, "beam": 1})
    assert status == 200 and body["translations"] == translator.translate(LINES)


def test_concurrent_requests_are_answered_each_with_its_own_translation(server, translator):
    expected = translator.translate(LINES * 3, beam=5)
    before = json.loads(call(server, "GET", "/health")[1])
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda line: post(server, {"sentences": [line]}), LINES * 3))
    assert [a[1]["translations"][0] for a in answers] == expected
    after = json.loads(call(server, "GET", "/health")[1])
    assert after["requests"] - before["requests"] == 12
    assert after["batches"] - before["batches"] < 12  # some of them shared a batch


@pytest.mark.parametrize("body, status, message", [
    (b"\xff\xfe", 400, "not valid UTF-8"),
    (b'{"sentences": ["a"', 400, "not valid JSON"),
    (b'{"sentences": ["a"], "alpha": NaN}', 400, "not valid JSON"),
    (b'["a"]', 400, "must be a JSON object"),
    (b'{"sentence": ["a"]}', 400, "did you mean 'sentences'"),
    (b'{"beam": 5}', 400, 'needs a field "sentences"'),
    (b'{"sentences": "a"}', 400, "list of strings"),
    (b'{"sentences": []}', 400, "must not be empty"),
    (b'{"sentences": ["a", 3]}', 400, "sentences[1] must be a string"),
    (b'{"sentences": ["\\ud800"]}', 400, "unpaired surrogate"),
    (b'{"sentences": ["a", "a", "a", "a", "a", "a", "a", "a", "a"]}', 413, "the limit is 8"),
    (b'{"sentences": ["' + b"a" * 101 + b'"]}', 413, "101 characters"),
    (b'{"sentences": ["a"], "beam": 17}', 400, "beam must be from 1 to 16"),
    (b'{"sentences": ["a"], "beam": true}', 400, "beam must be an integer"),
    (b'{"sentences": ["a"], "beam": 2, "n_best": 3}', 400, "n_best must be from 1 to 2"),
    (b'{"sentences": ["a"], "alpha": -1}', 400, "alpha must be a finite number"),
    (b'{"sentences": ["a"], "alpha": 1e999}', 400, "alpha must be a finite number"),
    (b'{"sentences": ["a"], "precision": "fp32"}', 400, "decodes in bf16"),
    (b'{"sentences": ["a"], "model": "../../etc/passwd"}', 400, "model must be one of 'toy'"),
    (b'{"sentences": ["a"], "attention": "yes"}', 400, "attention must be true or false"),
    (b"{" + b" " * 5000 + b"}", 413, "limit is 4096"),
])  # fmt: skip
def test_bad_requests_get_a_4xx_saying_what_is_wrong(server, body, status, message):
    got, data = call(server, "POST", "/translate", body, {"Content-Type": "application/json"})
    assert got == status and message in json.loads(data)["error"]


def test_the_body_limit_holds_whatever_content_length_says(server):
    status, data = call(server, "POST", "/translate", b"{}", {"Content-Length": "999999999"})
    assert status == 413
    chunks = iter([b'{"sentences": ["', b"a" * 3000, b"a" * 3000, b'"]}'])  # chunked: no Content-Length at all
    host, port = server.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("POST", "/translate", chunks, encode_chunked=True)
        response = conn.getresponse()
        assert response.status == 413 and b"limit" in response.read()
    finally:
        conn.close()


def test_a_request_names_only_the_loaded_precision(server, translator):
    status, body = post(server, {"sentences": ["sa ."], "precision": translator.precision})
    assert status == 200 and body["precision"] == translator.precision


def test_without_fastapi_the_command_says_what_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "fastapi", None)  # as if it were not installed
    from seq2seq import serve

    assert serve.main(["some-run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and 'pip install -e ".[serve]"' in err


def test_the_load_benchmark_runs_tiny(toy_run, tmp_path):
    import fastapi  # noqa: F401 - the serve extra, in dev
    (tmp_path / "in.txt").write_text("\n".join(LINES) + "\n", encoding="utf-8")
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench.py"), "serve", str(toy_run), "--input",
                             str(tmp_path / "in.txt"), "--requests", "6", "--clients", "1", "3", "--precisions", "bf16",
                             "--max-seconds", "60"], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["clients"] for r in rows] == [1, 3]
    for r in rows:
        assert r["errors"] == 0 and r["requests"] == 6 and r["p99_ms"] >= r["p50_ms"] > 0
        assert r["requests_per_s"] > 0 and r["offline_sentences_per_s"] > 0


def test_the_server_thread_stops(translator):
    import fastapi  # noqa: F401 - the serve extra, in dev

    from seq2seq.serve import create_app, serve_in_thread

    before = threading.active_count()
    with serve_in_thread(create_app({"toy": translator})) as url:
        assert call(url, "GET", "/health")[0] == 200
    deadline = time.monotonic() + 10
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() <= before
