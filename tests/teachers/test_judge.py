"""The AI judge: both orders, soft labels, MT-bench ties, SQLite cache, local and HTTP backends.

The happy HTTP path runs against a real `prefloop serve-judge --model tiny` process; the fault
paths against a real stdlib HTTP server in a thread that misbehaves on purpose (500s, a slow
answer, a 400, answers without the label tokens, an answer that dies half-way through a run).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from prefloop.teachers.base import Teacher
from prefloop.teachers.judge import (
    AIJudge,
    HTTPBackend,
    JudgeCache,
    JudgeError,
    make_backend,
    pair_chat,
)

TRIPLES = [
    ("Say something kind.", "You are wonderful and I am glad you asked!", "No."),
    ("How do I boil an egg?", "Put it in boiling water for nine minutes.", "Eggs are bad."),
    ([{"role": "user", "content": "Greet me."}], "Hello! Lovely to see you.", "What do you want?"),
]


class Counting:
    """Wraps a backend and counts the chats it is asked about (to see what the cache saved)."""

    def __init__(self, backend):
        self.backend, self.name, self.endpoint, self.chats = backend, backend.name, backend.endpoint, 0

    def label_probs(self, chats, labels):
        self.chats += len(chats)
        return self.backend.label_probs(chats, labels)

    def chat(self, chats, max_tokens):
        return self.backend.chat(chats, max_tokens)


def test_both_orders_average_and_mt_bench_rule(tiny_backend):
    judge = AIJudge(tiny_backend)
    assert isinstance(judge, Teacher) and judge.name == "ai:tiny"
    prefs = judge.compare_batch(TRIPLES)
    for pref in prefs:
        q_ab, q_ba = pref.meta["q_ab"], pref.meta["q_ba"]
        assert 0 < q_ab < 1 and 0 < q_ba < 1
        assert pref.probability == pytest.approx((q_ab + 1 - q_ba) / 2)
        expected = "tie" if (q_ab > 0.5) != (q_ba < 0.5) else ("a" if q_ab > 0.5 else "b")
        assert pref.which == expected
        assert pref.meta["position_consistent"] == (expected != "tie")
    # asking (b, a) is the same two queries: exactly the complementary soft label
    swapped = judge.compare_batch([(p, b, a) for p, a, b in TRIPLES])
    for pref, sw in zip(prefs, swapped):
        assert sw.probability == pytest.approx(1 - pref.probability, abs=1e-12)
    s = judge.summary()
    assert s["pairs"] == 6 and s["queries"] == 12 and s["cache_hits"] == 0
    assert s["position_bias_rate"] == pytest.approx(s["position_inconsistent"] / 6)


def test_batched_equals_one_at_a_time(tiny_backend):
    chats = [pair_chat("Judge.", p, a, b) for p, a, b in TRIPLES]
    together = tiny_backend.label_probs(chats, ["A", "B"])
    alone = [tiny_backend.label_probs([c], ["A", "B"])[0] for c in chats]
    for t, a in zip(together, alone):
        assert t == pytest.approx(a, rel=1e-4)


def test_label_spellings_are_summed(tiny_backend):
    ids = tiny_backend.lm.label_token_ids("A")
    texts = {tiny_backend.lm.token_text(i) for i in ids}
    assert "A" in texts and " A" in texts and all(t.strip() == "A" for t in texts)


def test_cache_makes_reruns_free(tiny_backend, tmp_path):
    db = tmp_path / "judge.sqlite"
    counting = Counting(tiny_backend)
    first = AIJudge(counting, cache=db, batch_size=2).compare_batch(TRIPLES)
    assert counting.chats == 6 and len(JudgeCache(db)) == 6
    rerun_judge = AIJudge(counting, cache=db)
    again = rerun_judge.compare_batch(TRIPLES)
    assert counting.chats == 6  # nothing asked again
    assert [p.probability for p in again] == [p.probability for p in first]
    assert rerun_judge.summary()["cache_hit_rate"] == 1.0
    # another rubric is another key
    AIJudge(counting, cache=db, rubric="Prefer short replies.").compare(*TRIPLES[0])
    assert counting.chats == 8


def test_clamp_reasoning_rank_rate_binary(tiny_backend):
    judge = AIJudge(tiny_backend, reasoning=True, reasoning_tokens=8, clamp=(0.4, 0.6))
    pref = judge.compare(*TRIPLES[0])
    assert 0.4 <= pref.probability <= 0.6 and len(pref.meta["reasoning"]) == 2
    plain = AIJudge(tiny_backend)
    ranks = plain.rank("p", ["one", "two", "three"])
    assert sorted(set(ranks)) == list(range(len(set(ranks))))
    assert 1.0 <= plain.rate(*TRIPLES[0][:2]) <= 9.0
    assert plain.judge_binary(*TRIPLES[0][:2]) in (True, False)
    with pytest.raises(ValueError, match="clamp"):
        AIJudge(tiny_backend, clamp=(0.6, 0.7))


# ----------------------------------------------------------------------------- HTTP, real server


def test_http_backend_against_a_real_tiny_server_matches_local(tiny_judge_server, tiny_backend):
    lm = tiny_backend.lm
    # The random tiny model rarely puts "A"/"B" in its top 20: lift both labels (every spelling)
    # by the same bias, which keeps their ratio, so the normalized soft label is unchanged.
    bias = {i: 30.0 for lab in ("A", "B") for i in lm.label_token_ids(lab)}
    http = make_backend(tiny_judge_server, model="tiny", logit_bias=bias, concurrency=2)
    assert isinstance(http, HTTPBackend) and http.name.startswith("tiny@127.0.0.1:")
    remote = AIJudge(http, name="ai:tiny").compare_batch(TRIPLES)
    local = AIJudge(tiny_backend).compare_batch(TRIPLES)
    for r, loc in zip(remote, local):
        assert r.probability == pytest.approx(loc.probability, abs=1e-4)
        assert r.which == loc.which
    # greedy chat goes through the same server
    assert isinstance(http.chat([pair_chat("Judge.", *TRIPLES[0])], 4)[0], str)


def test_http_answer_without_label_tokens_names_endpoint_and_pair(tiny_judge_server):
    # Without the bias the tiny model's top 20 first tokens hold neither label (checked here).
    judge = AIJudge(make_backend(tiny_judge_server, model="tiny", retries=0))
    with pytest.raises(JudgeError) as err:
        judge.compare(*TRIPLES[0])
    msg = str(err.value)
    assert "answer without the label tokens" in msg and tiny_judge_server in msg
    assert "Say something kind." in msg and "You are wonderful" in msg


# ----------------------------------------------------------------------------- HTTP faults


class Misbehaving(BaseHTTPRequestHandler):
    """mode: 'ok' (answers A with p=0.7), '500', '400', 'slow', 'ok-then-500' (after `budget` requests)."""

    mode = "ok"
    budget = 0
    requests = 0
    lock = threading.Lock()

    def log_message(self, *args):  # keep test output clean
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with Misbehaving.lock:
            Misbehaving.requests += 1
            n = Misbehaving.requests
        mode = Misbehaving.mode
        if mode == "ok-then-500":
            mode = "ok" if n <= Misbehaving.budget else "500"
        if mode == "slow":
            time.sleep(1.5)
            mode = "ok"
        if mode in ("500", "400"):
            self.send_response(int(mode))
            self.end_headers()
            self.wfile.write(b"broken on purpose")
            return
        # A fixed soft label that depends on which text is shown first, so order matters.
        first_is_kind = "[Reply A]\nYou are wonderful" in body["messages"][-1]["content"]
        p_a = 0.7 if first_is_kind else 0.4
        top = [{"token": " A", "logprob": _log(p_a)}, {"token": "B", "logprob": _log(1 - p_a)}]
        answer = {
            "choices": [
                {
                    "message": {"content": "A"},
                    "logprobs": {
                        "content": [{"token": " A", "logprob": top[0]["logprob"], "top_logprobs": top}]
                    },
                }
            ]
        }
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError):  # the client gave up (the timeout test)
            self.wfile.write(data)


def _log(p):
    import math

    return math.log(p)


@pytest.fixture()
def bad_server():
    Misbehaving.mode, Misbehaving.budget, Misbehaving.requests = "ok", 0, 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), Misbehaving)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_soft_label_from_listed_logprobs(bad_server):
    pref = AIJudge(HTTPBackend(bad_server, concurrency=1)).compare(*TRIPLES[0])
    # kind reply first: q_ab = 0.7; shown second: q_ba = 0.4 -> p = (0.7 + 0.6) / 2 = 0.65; verdicts agree on a
    assert pref.meta["q_ab"] == pytest.approx(0.7) and pref.meta["q_ba"] == pytest.approx(0.4)
    assert pref.probability == pytest.approx(0.65) and pref.which == "a"


def test_http_500_is_retried_then_fails_clearly(bad_server):
    Misbehaving.mode = "500"
    backend = HTTPBackend(bad_server, retries=2, backoff=0.01, concurrency=1)
    with pytest.raises(JudgeError, match=r"HTTP 500.*after 3 attempts.*pair: prompt 'Say something kind.'"):
        AIJudge(backend, batch_size=1).compare(*TRIPLES[0])
    assert Misbehaving.requests == 3


def test_http_400_fails_at_once_and_timeout_is_reported(bad_server):
    Misbehaving.mode = "400"
    with pytest.raises(JudgeError, match="HTTP 400"):
        AIJudge(HTTPBackend(bad_server, retries=3, backoff=0.01, concurrency=1)).compare(*TRIPLES[0])
    assert Misbehaving.requests == 1
    Misbehaving.mode = "slow"
    with pytest.raises(JudgeError, match=r"no answer within 0.3 s \(after 2 attempts\)") as err:
        AIJudge(HTTPBackend(bad_server, timeout=0.3, retries=1, backoff=0.01)).compare(*TRIPLES[0])
    assert bad_server in str(err.value)


def test_failure_keeps_the_cache_and_a_rerun_resumes(bad_server, tmp_path):
    db = tmp_path / "judge.sqlite"
    Misbehaving.mode, Misbehaving.budget = "ok-then-500", 4  # answers 4 queries, then only 500s
    backend = HTTPBackend(bad_server, retries=0, concurrency=1)
    with pytest.raises(JudgeError, match="4 answers are kept in .*judge.sqlite, a rerun resumes"):
        AIJudge(backend, cache=db, batch_size=2).compare_batch(TRIPLES)
    assert len(JudgeCache(db)) == 4
    Misbehaving.mode, Misbehaving.requests = "ok", 0
    prefs = AIJudge(backend, cache=db, batch_size=2).compare_batch(TRIPLES)
    assert Misbehaving.requests == 2  # only the 6 - 4 missing ordered queries
    assert len(prefs) == 3 and len(JudgeCache(db)) == 6


def test_bad_url():
    with pytest.raises(ValueError, match="judge URL"):
        HTTPBackend("ftp://example")
