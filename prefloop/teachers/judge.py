"""AI judges (RLAIF): an LLM asked which response is better, in both orders, cached on disk.

Lee et al., "RLAIF vs. RLHF: Scaling Reinforcement Learning from Human Feedback with AI
Feedback" (2023) and Bai et al., "Constitutional AI" (2022) replace the human labeler with an
LLM and read the preference from the probabilities of the answer labels; Zheng et al.,
"Judging LLM-as-a-Judge with MT-Bench and Chatbot Arena" (2023) ask both orders and call a
disagreement a tie, because LLM judges favour a position.

One judgment of (x, a, b):

    q_ab = P(label "A") / (P("A") + P("B"))   next-token probabilities, a shown as A, b as B
    q_ba = the same with b shown as A and a as B       (= the judge's P(b ≻ a) in that order)
    probability  p = (q_ab + (1 − q_ba)) / 2           the soft label P(a ≻ b)
    verdict      a if q_ab > ½ and q_ba < ½; b if q_ab < ½ and q_ba > ½; else a tie (MT-bench)
    position bias: the two orders disagree in verdict (counted in `stats`)
    clamp        optional [lo, hi] applied to p (constitutional AI's 40–60 % with reasoning)

A label's probability is the sum over its spellings in the vocabulary ("A", " A"). With
`reasoning=True` the judge first writes a short explanation (greedy), which goes back in as its
own turn before the question "answer with one letter" whose next-token probabilities are read.

Backends (`JudgeBackend`): `LocalBackend` runs any causal LM in-process (the embedded default,
`tiny`, a local path; batched); `HTTPBackend` calls an OpenAI-compatible chat-completions
endpoint (vLLM, llama.cpp, a hosted API, `prefloop serve-judge`) with max_tokens=1,
logprobs and top_logprobs=20 and sums the listed probabilities of each label's spellings. An
answer where neither label is among the listed tokens is an error (a label missing from the
list counts as 0 when the other one is there). `logit_bias` (token id -> bias, the same for
both labels) lifts the labels into the list without changing their ratio.

Cache: an SQLite file keyed by sha256 of (judge name, rubric hash, kind, prompt, the ordered
texts); every batch is committed as it finishes, so a judge that fails half-way keeps what it
answered and a rerun asks only the rest. Reruns of the same labels cost nothing.

`rank` orders by expected wins Σ_j P(i ≻ j) over all pairs (soft Copeland); `rate` is the expected digit 1..9 under the next-token
probabilities of the digits after a rating question; `judge_binary` is P("Yes") > P("No").
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from prefloop.data.records import PromptText
from prefloop.teachers.base import Preference, order_to_ranks

Chat = list[dict[str, str]]

DEFAULT_RUBRIC = (
    "You are a careful, impartial judge of an AI assistant's replies. A better reply answers the "
    "user's request helpfully, honestly and harmlessly, in a warm and clear way, and is concise. "
    "Ignore the order in which the replies are shown and their length beyond what the request needs."
)
PAIR_QUESTION = "Which reply is better? Answer with a single letter: A or B."
REASONING_ASK = "First explain in two or three sentences which reply is better and why. End with 'So the answer is A' or 'So the answer is B'."
FINAL_ASK = "Now answer with a single letter, A or B."
RATE_QUESTION = "Rate the reply from 1 (very bad) to 9 (excellent). Answer with a single digit."
BINARY_QUESTION = "Is this a good reply to the request? Answer Yes or No."


class JudgeError(RuntimeError):
    """A judge endpoint that failed or answered without the label tokens (message names both)."""


def prompt_text(prompt: PromptText) -> str:
    """A prompt as plain text: a string as is, chat messages as 'role: content' lines."""
    if isinstance(prompt, str):
        return prompt
    return "\n".join(f"{m.get('role', 'user')}: {m.get('content', '')}" for m in prompt)


def _short(text: str, n: int = 48) -> str:
    text = " ".join(str(text).split())
    return repr(text if len(text) <= n else text[: n - 1] + "…")


def rubric_hash(rubric: str) -> str:
    return hashlib.sha256(rubric.encode()).hexdigest()[:16]


def pair_chat(
    rubric: str, prompt: PromptText, first: str, second: str, question: str = PAIR_QUESTION
) -> Chat:
    """The judge's messages for one ordered pair: the rubric as system, the pair and question as user."""
    user = f"[User request]\n{prompt_text(prompt)}\n\n[Reply A]\n{first}\n\n[Reply B]\n{second}\n\n{question}"
    return [{"role": "system", "content": rubric}, {"role": "user", "content": user}]


def single_chat(rubric: str, prompt: PromptText, response: str, question: str) -> Chat:
    user = f"[User request]\n{prompt_text(prompt)}\n\n[Reply]\n{response}\n\n{question}"
    return [{"role": "system", "content": rubric}, {"role": "user", "content": user}]


# --------------------------------------------------------------------------- backends


class JudgeBackend(Protocol):
    """Where the judge's model runs."""

    name: str
    endpoint: str

    def label_probs(self, chats: Sequence[Chat], labels: Sequence[str]) -> list[list[float]]:
        """P(label) of the first reply token, for each chat and label (unnormalized)."""
        ...

    def chat(self, chats: Sequence[Chat], max_tokens: int) -> list[str]:
        """Greedy replies."""
        ...


class LocalBackend:
    """A causal LM in this process (`prefloop.teachers.lm.LocalChatModel`)."""

    def __init__(self, model: str = "default", device: str = "cpu", batch_size: int = 8):
        from prefloop.teachers.lm import LocalChatModel

        self.lm = LocalChatModel(model, device=device, batch_size=batch_size)
        self.name = self.lm.name
        self.endpoint = f"local model {model!r}"
        self._label_ids: dict[str, list[int]] = {}

    def label_probs(self, chats: Sequence[Chat], labels: Sequence[str]) -> list[list[float]]:
        for label in labels:
            if label not in self._label_ids:
                self._label_ids[label] = self.lm.label_token_ids(label)
                if not self._label_ids[label]:
                    raise JudgeError(
                        f"{self.endpoint}: no token of the vocabulary spells the label {label!r}"
                    )
        probs = self.lm.next_token_logprobs(list(chats)).exp()
        return [[float(row[self._label_ids[lab]].sum()) for lab in labels] for row in probs]

    def chat(self, chats: Sequence[Chat], max_tokens: int) -> list[str]:
        return self.lm.chat(list(chats), max_tokens=max_tokens)


class HTTPBackend:
    """An OpenAI-compatible chat-completions endpoint (`url` is the base, e.g. http://host:8000/v1).

    Args:
        url: the API base; requests go to `url` + "/chat/completions".
        model: the "model" field sent (what the server calls its model).
        api_key: sent as "Authorization: Bearer ..." when given.
        timeout: seconds per request.
        retries: extra attempts after a timeout, a connection error, HTTP 429 or 5xx
            (other 4xx fail at once), with exponential backoff from `backoff` seconds.
        top_logprobs: how many first-token alternatives to ask for (OpenAI allows up to 20).
        logit_bias: token id -> bias sent with label questions (see the module docstring).
        concurrency: requests in flight at once.
    """

    def __init__(
        self,
        url: str,
        model: str = "default",
        api_key: str | None = None,
        timeout: float = 30.0,
        retries: int = 2,
        backoff: float = 0.5,
        top_logprobs: int = 20,
        logit_bias: Mapping[int, float] | None = None,
        concurrency: int = 4,
    ):
        import httpx

        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"judge URL must be http(s)://host[:port]/..., got {url!r}")
        self.url = url.rstrip("/")
        self.endpoint = self.url + "/chat/completions"
        self.model = model
        self.name = f"{model}@{parsed.netloc}"
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self.top_logprobs = top_logprobs
        self.logit_bias = {str(k): float(v) for k, v in (logit_bias or {}).items()}
        self.concurrency = max(1, concurrency)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(timeout=timeout, headers=headers)

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        import httpx

        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                r = self._client.post(self.endpoint, json=body)
            except httpx.TimeoutException:
                last = f"no answer within {self.timeout:g} s"
                continue
            except httpx.HTTPError as exc:
                last = f"cannot connect ({type(exc).__name__}: {exc})"
                continue
            if r.status_code == 429 or r.status_code >= 500:
                last = f"HTTP {r.status_code}: {r.text[:200]}"
                continue
            if r.status_code >= 400:
                raise JudgeError(f"{self.endpoint}: HTTP {r.status_code}: {r.text[:300]}")
            try:
                return r.json()
            except ValueError:
                raise JudgeError(f"{self.endpoint}: the answer is not JSON: {r.text[:200]!r}") from None
        raise JudgeError(f"{self.endpoint}: {last} (after {self.retries + 1} attempts)")

    def _map(self, fn, chats: Sequence[Chat]) -> list:
        if self.concurrency == 1 or len(chats) == 1:
            return [fn(c) for c in chats]
        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(fn, chats))

    def _one_label_probs(self, chat: Chat, labels: Sequence[str]) -> list[float]:
        body = {
            "model": self.model,
            "messages": chat,
            "max_tokens": 1,
            "temperature": 0,
            "logprobs": True,
            "top_logprobs": self.top_logprobs,
        }
        if self.logit_bias:
            body["logit_bias"] = self.logit_bias
        answer = self._post(body)
        try:
            content = answer["choices"][0]["logprobs"]["content"]
            top = content[0]["top_logprobs"] or [
                {"token": content[0]["token"], "logprob": content[0]["logprob"]}
            ]
        except (KeyError, IndexError, TypeError):
            raise JudgeError(
                f"{self.endpoint}: the answer has no choices[0].logprobs.content[0].top_logprobs"
            ) from None
        import math

        probs = [sum(math.exp(t["logprob"]) for t in top if str(t["token"]).strip() == lab) for lab in labels]
        if not any(probs):
            listed = [t["token"] for t in top]
            raise JudgeError(
                f"{self.endpoint}: answer without the label tokens {list(labels)} (top tokens: {listed[:10]})"
            )
        return probs

    def label_probs(self, chats: Sequence[Chat], labels: Sequence[str]) -> list[list[float]]:
        return self._map(lambda c: self._one_label_probs(c, labels), chats)

    def chat(self, chats: Sequence[Chat], max_tokens: int) -> list[str]:
        def one(c: Chat) -> str:
            answer = self._post(
                {"model": self.model, "messages": c, "max_tokens": max_tokens, "temperature": 0}
            )
            try:
                return str(answer["choices"][0]["message"]["content"])
            except (KeyError, IndexError, TypeError):
                raise JudgeError(f"{self.endpoint}: the answer has no choices[0].message.content") from None

        return self._map(one, chats)


def make_backend(judge: str, **kwargs: Any) -> JudgeBackend:
    """'http(s)://...' -> HTTPBackend, anything else (default, tiny, a path) -> LocalBackend."""
    if judge.startswith(("http://", "https://")):
        return HTTPBackend(judge, **{k: v for k, v in kwargs.items() if k not in ("device", "batch_size")})
    return LocalBackend(judge, **{k: v for k, v in kwargs.items() if k in ("device", "batch_size")})


# --------------------------------------------------------------------------- cache


class JudgeCache:
    """Answers on disk (SQLite), keyed by (judge, rubric hash, kind, prompt, ordered texts)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, judge TEXT, rubric TEXT, kind TEXT,"
            " value TEXT NOT NULL, created REAL NOT NULL)"
        )
        self._db.commit()

    @staticmethod
    def key(judge: str, rubric: str, kind: str, prompt: PromptText, texts: Sequence[str]) -> str:
        blob = json.dumps([judge, rubric_hash(rubric), kind, prompt, list(texts)], ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()

    def get_many(self, keys: Sequence[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        with self._lock:
            for start in range(0, len(keys), 500):
                chunk = list(keys[start : start + 500])
                marks = ",".join("?" * len(chunk))
                for k, v in self._db.execute(f"SELECT key, value FROM answers WHERE key IN ({marks})", chunk):
                    out[k] = json.loads(v)
        return out

    def put_many(self, judge: str, rubric: str, kind: str, items: Mapping[str, Any]) -> None:
        now = time.time()
        rows = [(k, judge, rubric_hash(rubric), kind, json.dumps(v), now) for k, v in items.items()]
        with self._lock:
            self._db.executemany("INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?, ?)", rows)
            self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM answers").fetchone()[0])

    def close(self) -> None:
        self._db.close()


class _NoCache:
    path = None

    def get_many(self, keys):
        return {}

    def put_many(self, *args):
        pass

    def __len__(self) -> int:
        return 0


# --------------------------------------------------------------------------- the judge


def new_stats() -> dict[str, float]:
    return {
        "pairs": 0,
        "ties": 0,
        "position_inconsistent": 0,
        "first_position_wins": 0,
        "ordered_verdicts": 0,
        "queries": 0,
        "cache_hits": 0,
        "seconds": 0.0,
    }


class AIJudge:
    """A `Teacher` backed by an LLM (see the module docstring for the formulas).

    Args:
        backend: a `JudgeBackend` (`make_backend("default" | "tiny" | path | url)`).
        rubric: the system prompt (preamble) stating what "better" means.
        reasoning: ask for a short explanation before the verdict.
        reasoning_tokens: the explanation's token budget.
        cache: an SQLite path or `JudgeCache` (None: no cache).
        batch_size: chats per backend call (and per cache commit).
        clamp: optional (lo, hi) bounds on the soft label p.
        name: the annotator name ("ai:<backend name>" by default).
    """

    rating_range = (1.0, 9.0)  # what `rate` returns

    def __init__(
        self,
        backend: JudgeBackend,
        rubric: str = DEFAULT_RUBRIC,
        reasoning: bool = False,
        reasoning_tokens: int = 96,
        cache: str | Path | JudgeCache | None = None,
        batch_size: int = 8,
        clamp: tuple[float, float] | None = None,
        name: str | None = None,
        labels: tuple[str, str] = ("A", "B"),
    ):
        if clamp is not None and not 0.0 <= clamp[0] <= 0.5 <= clamp[1] <= 1.0:
            raise ValueError(f"clamp must be (lo, hi) with 0 <= lo <= 0.5 <= hi <= 1, got {clamp}")
        self.backend = backend
        self.rubric = rubric
        self.reasoning = reasoning
        self.reasoning_tokens = reasoning_tokens
        self.cache = JudgeCache(cache) if isinstance(cache, (str, Path)) else (cache or _NoCache())
        self.batch_size = max(1, batch_size)
        self.clamp = clamp
        self.labels = labels
        self.name = name or f"ai:{backend.name}"
        self.stats = new_stats()

    # ---------------------------------------------------------------- ordered queries

    def _ask_pairs(
        self, rubric: str, queries: Sequence[tuple[PromptText, str, str]], question: str | None = None
    ) -> list[dict[str, Any]]:
        """q = P(first label) normalized, for each ordered (prompt, first, second); cached."""
        kind = "pair+reasoning" if self.reasoning else "pair"
        if question is not None:
            kind += ":" + rubric_hash(question)
        ask = question or PAIR_QUESTION
        if self.reasoning:
            ask = (question + " " if question else "") + REASONING_ASK
        keys = [JudgeCache.key(self.name, rubric, kind, p, [f, s]) for p, f, s in queries]
        found = self.cache.get_many(list(dict.fromkeys(keys)))
        self.stats["queries"] += len(queries)
        self.stats["cache_hits"] += sum(k in found for k in keys)
        todo = list(dict.fromkeys(i for i, k in enumerate(keys) if k not in found))
        todo_unique = list({keys[i]: i for i in todo}.values())
        starts = range(0, len(todo_unique), self.batch_size)
        if len(starts) > 4:  # long work shows progress (stderr; no bar when it is not a terminal)
            from tqdm.auto import tqdm

            starts = tqdm(
                starts, desc=f"judge {self.name}", unit="batch", file=sys.stderr, leave=False, disable=None
            )
        for start in starts:
            idx = todo_unique[start : start + self.batch_size]
            chats = [pair_chat(rubric, *queries[i], question=ask) for i in idx]
            try:
                reasons = None
                if self.reasoning:
                    reasons = self.backend.chat(chats, self.reasoning_tokens)
                    chats = [
                        c + [{"role": "assistant", "content": r}, {"role": "user", "content": FINAL_ASK}]
                        for c, r in zip(chats, reasons)
                    ]
                probs = self.backend.label_probs(chats, self.labels)
            except JudgeError as exc:
                p, f, s = queries[idx[0]]
                more = f" (and {len(idx) - 1} more in this batch)" if len(idx) > 1 else ""
                where = (
                    f"; {len(self.cache)} answers are kept in {self.cache.path}, a rerun resumes"
                    if self.cache.path
                    else ""
                )
                raise JudgeError(
                    f"judge {self.name}: {exc}; pair: prompt {_short(prompt_text(p))}, "
                    f"A={_short(f)}, B={_short(s)}{more}{where}"
                ) from None
            new = {}
            for j, i in enumerate(idx):
                pa, pb = probs[j]
                new[keys[i]] = {
                    "q": pa / (pa + pb) if pa + pb > 0 else 0.5,
                    "mass": pa + pb,
                    **({"reasoning": reasons[j]} if reasons is not None else {}),
                }
            self.cache.put_many(self.name, rubric, kind, new)
            found.update(new)
        return [found[k] for k in keys]

    # ---------------------------------------------------------------- Teacher API

    def compare_batch(
        self,
        triples: Sequence[tuple[PromptText, str, str]],
        rubric: str | None = None,
        question: str | None = None,
    ) -> list[Preference]:
        """Judge many (prompt, a, b): both orders each, batched and cached.

        `rubric` replaces the system prompt and `question` the closing question for this call
        (constitutional AI asks each pair under a principle); both are part of the cache key."""
        started = time.perf_counter()
        rubric = self.rubric if rubric is None else rubric
        queries = [(p, a, b) for p, a, b in triples] + [(p, b, a) for p, a, b in triples]
        answers = self._ask_pairs(rubric, queries, question)
        n = len(triples)
        out = []
        for t in range(n):
            q_ab, q_ba = answers[t]["q"], answers[n + t]["q"]
            first = "a" if q_ab > 0.5 else "b" if q_ab < 0.5 else "tie"
            second = "b" if q_ba > 0.5 else "a" if q_ba < 0.5 else "tie"
            which = first if first == second else "tie"
            p = (q_ab + (1.0 - q_ba)) / 2.0
            if self.clamp is not None:
                p = min(max(p, self.clamp[0]), self.clamp[1])
            meta = {
                "annotator": self.name,
                "q_ab": q_ab,
                "q_ba": q_ba,
                "position_consistent": first == second,
            }
            if "reasoning" in answers[t]:
                meta["reasoning"] = [answers[t]["reasoning"], answers[n + t]["reasoning"]]
            out.append(Preference(which, p, abs(2.0 * p - 1.0), meta))  # type: ignore[arg-type]
            self.stats["pairs"] += 1
            self.stats["ties"] += which == "tie"
            self.stats["position_inconsistent"] += first != second
            self.stats["first_position_wins"] += (q_ab > 0.5) + (q_ba > 0.5)
            self.stats["ordered_verdicts"] += 2
        self.stats["seconds"] += time.perf_counter() - started
        return out

    def compare(self, prompt: PromptText, a: str, b: str) -> Preference:
        return self.compare_batch([(prompt, a, b)])[0]

    def rank(self, prompt: PromptText, responses: Sequence[str]) -> list[int] | None:
        """Order by expected wins Σ_j P(i ≻ j) over all pairs (soft Copeland): position-debiased
        soft labels rarely tie, so a judge whose verdicts are often ties still gives an order."""
        k = len(responses)
        if k == 0:
            raise ValueError("rank needs at least one response")
        pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
        prefs = self.compare_batch([(prompt, responses[i], responses[j]) for i, j in pairs])
        wins = [0.0] * k
        for (i, j), pref in zip(pairs, prefs):
            p = 0.5 if pref.probability is None else pref.probability  # a judge answer always carries one
            wins[i] += p
            wins[j] += 1.0 - p
        return order_to_ranks(wins)

    def _single(
        self, kind: str, question: str, labels: Sequence[str], prompt: PromptText, response: str
    ) -> list[float]:
        key = JudgeCache.key(self.name, self.rubric, kind, prompt, [response])
        hit = self.cache.get_many([key])
        if key in hit:
            return hit[key]
        try:
            probs = self.backend.label_probs([single_chat(self.rubric, prompt, response, question)], labels)[
                0
            ]
        except JudgeError as exc:
            raise JudgeError(
                f"judge {self.name}: {exc}; reply {_short(response)} to {_short(prompt_text(prompt))}"
            ) from None
        self.cache.put_many(self.name, self.rubric, kind, {key: probs})
        return probs

    def rate(self, prompt: PromptText, response: str) -> float:
        """E[digit] under the normalized next-token probabilities of "1".."9" (a score in [1, 9])."""
        digits = [str(d) for d in range(1, 10)]
        probs = self._single("rate", RATE_QUESTION, digits, prompt, response)
        total = sum(probs)
        return sum((d + 1) * p for d, p in enumerate(probs)) / total if total else 5.0

    def judge_binary(self, prompt: PromptText, response: str) -> bool | None:
        yes, no = self._single("binary", BINARY_QUESTION, ["Yes", "No"], prompt, response)
        return None if yes == no else yes > no

    # ---------------------------------------------------------------- reporting

    def summary(self) -> dict[str, float]:
        """Counts and rates so far: position-bias rate, tie rate, cache hits, labels per second."""
        s = dict(self.stats)
        pairs = max(s["pairs"], 1)
        s["position_bias_rate"] = s["position_inconsistent"] / pairs
        s["tie_rate"] = s["ties"] / pairs
        s["first_position_win_rate"] = s["first_position_wins"] / max(s["ordered_verdicts"], 1)
        s["cache_hit_rate"] = s["cache_hits"] / max(s["queries"], 1)
        s["labels_per_s"] = s["pairs"] / s["seconds"] if s["seconds"] > 0 else float("nan")
        return s
