"""People as a `Teacher`: questions go to a campaign of the feedback server, answers come back.

The third implementation of the protocol, through the server's public REST API only (an admin
token): `compare(prompt, a, b)` adds the pair as an item of campaign `campaign`
(POST /api/campaigns/{cid}/items), then polls the campaign's judgments
(GET /api/campaigns/{cid}/judgments) until a person has judged that item (pairwise choice or
ranking), and returns it as a `Preference`: "a" / "b" / "tie" ("both_bad" is a tie, "cant_tell" a skip), no
probability (a person gives a verdict), strength from the chosen level
(significantly_better 1.0, better 0.75, slightly_better 0.5, negligibly_better 0.25). A
person who skips the task, or no answer within `wait_s`, is a "skip". `rank` does the same with
K responses; `rate` and `judge_binary` use the campaign's rating / thumbs.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from prefloop.data.records import PromptText
from prefloop.teachers.base import Preference

STRENGTH_VALUE = {
    "significantly_better": 1.0,
    "better": 0.75,
    "slightly_better": 0.5,
    "negligibly_better": 0.25,
}


def strength_level(strength: float | None) -> str | None:
    """A soft strength in [0, 1] as the server's nearest named level (None stays None)."""
    if strength is None:
        return None
    return min(STRENGTH_VALUE, key=lambda k: abs(STRENGTH_VALUE[k] - strength))


class FeedbackAPIError(RuntimeError):
    """The feedback server refused a request (message: method, path, status and its detail)."""


class FeedbackClient:
    """A few calls of the feedback server's REST API with one bearer token.

    `http` is an `httpx.Client` (or anything with its request method, e.g. FastAPI's TestClient)
    whose base URL is the server's root."""

    def __init__(self, http: Any, token: str):
        self.http = http
        self.headers = {"Authorization": f"Bearer {token}"}

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        r = self.http.request(method, path, headers=self.headers, **kwargs)
        if r.status_code >= 400:
            try:
                detail = r.json().get("detail", r.text)
            except ValueError:
                detail = r.text
            raise FeedbackAPIError(f"{method} {path}: HTTP {r.status_code}: {detail}")
        return r.json()


class PeopleTeacher:
    """People answering through a campaign (see the module docstring).

    Args:
        client: a `FeedbackClient` with an admin token.
        campaign: the campaign whose annotators answer (it must enable pairwise or ranking).
        wait_s: how long to wait for a person's answer before calling it a skip.
        poll_s: seconds between polls.
    """

    def __init__(self, client: FeedbackClient, campaign: int, wait_s: float = 3600.0, poll_s: float = 1.0):
        self.client, self.campaign = client, campaign
        self.wait_s, self.poll_s = wait_s, poll_s
        self.name = f"people:campaign-{campaign}"

    def _ask(self, prompt: PromptText, responses: Sequence[str]) -> tuple[dict[str, Any] | None, list[int]]:
        body = {"items": [{"prompt": prompt, "responses": [{"text": r} for r in responses]}]}
        item_id = self.client.call("POST", f"/api/campaigns/{self.campaign}/items", json=body)["item_ids"][0]
        deadline = time.monotonic() + self.wait_s
        while True:
            for j in self.client.call("GET", f"/api/campaigns/{self.campaign}/judgments"):
                if j["item_id"] == item_id:
                    return j, [r["id"] for r in j["responses"]]
            if time.monotonic() > deadline:
                return None, []
            time.sleep(self.poll_s)

    def compare(self, prompt: PromptText, a: str, b: str) -> Preference:
        j, ids = self._ask(prompt, [a, b])
        if j is None:
            return Preference("skip", meta={"annotator": self.name})
        return preference_of_judgment(j, ids[0], ids[1])

    def rank(self, prompt: PromptText, responses: Sequence[str]) -> list[int] | None:
        j, ids = self._ask(prompt, responses)
        if j is None or not j["payload"].get("ranking"):
            return None
        rank = {rid: g for g, group in enumerate(j["payload"]["ranking"]) for rid in group}
        return [rank[i] for i in ids]

    def rate(self, prompt: PromptText, response: str) -> float:
        j, ids = self._ask(prompt, [response])
        ratings = (j or {}).get("payload", {}).get("ratings") or {}
        if str(ids[0] if ids else "") not in ratings:
            raise FeedbackAPIError(f"campaign {self.campaign}: no rating came back for the reply")
        return float(ratings[str(ids[0])])

    def judge_binary(self, prompt: PromptText, response: str) -> bool | None:
        j, ids = self._ask(prompt, [response])
        thumbs = (j or {}).get("payload", {}).get("thumbs") or {}
        return thumbs.get(str(ids[0])) if ids else None


def preference_of_judgment(j: dict[str, Any], a: int, b: int) -> Preference:
    """A person's judgment (a `/judgments` row) of the pair of responses with database ids a, b as a
    `Preference`: its pairwise choice ("both_bad" is a tie, "cant_tell" a skip; strength from the
    chosen level), else the order of a and b in its ranking, else a skip."""
    meta = {"annotator": j["annotator"], "judgment_id": j["judgment_id"]}
    pw = j["payload"].get("pairwise")
    if pw is not None and {pw["a"], pw["b"]} == {a, b}:
        if pw["choice"] == "cant_tell":
            return Preference("skip", meta=meta)
        if pw["choice"] in ("tie", "both_bad"):
            return Preference("tie", None, None, meta)
        winner = pw["a"] if pw["choice"] == "a" else pw["b"]
        return Preference("a" if winner == a else "b", None, STRENGTH_VALUE.get(pw.get("strength")), meta)
    ranking = j["payload"].get("ranking")
    if ranking:
        rank = {rid: g for g, group in enumerate(ranking) for rid in group}
        ra, rb = rank[a], rank[b]
        return Preference("a" if ra < rb else "b" if rb < ra else "tie", None, None, meta)
    return Preference("skip", meta=meta)
