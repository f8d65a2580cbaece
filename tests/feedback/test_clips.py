"""Clip items over the real HTTP API: media upload (sniffed, checked, deduplicated), items whose
responses show clips, serving a clip only through its annotator's task, "can't tell" choices."""

from __future__ import annotations

import io
from typing import Any

import pytest


def gif(color: tuple[int, int, int], frames: int = 2, size: tuple[int, int] = (8, 6)) -> bytes:
    from PIL import Image

    images = [Image.new("RGB", size, tuple(min(255, c + 40 * k) for c in color)) for k in range(frames)]
    out = io.BytesIO()
    images[0].save(out, format="GIF", save_all=True, append_images=images[1:], duration=100, loop=0)
    return out.getvalue()


def upload(server: Any, cid: int, data: bytes, token: str | None = None) -> Any:
    return server.api(
        "POST",
        f"/api/campaigns/{cid}/media",
        token=token or server.admin_token,
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )


def clip_campaign(server: Any, name: str, annotators: list[str]) -> tuple[Any, list[int]]:
    camp = server.create_campaign(
        name=name, annotators=[], items=server.make_items(1, 2, prefix=name), feedback_types=["pairwise"]
    )
    media = [upload(server, camp.id, gif(c)).json()["media_id"] for c in [(200, 0, 0), (0, 0, 200)]]
    items = [{"prompt": "Which clip is better?", "responses": [{"media_id": m} for m in media]}]
    r = server.api("POST", f"/api/campaigns/{camp.id}/items", token=server.admin_token, json={"items": items})
    assert r.status_code == 200, r.text
    r = server.api(
        "POST", f"/api/campaigns/{camp.id}/annotators", token=server.admin_token, json={"names": annotators}
    )
    r.raise_for_status()
    server.tokens.update({a["name"]: a["token"] for a in r.json()["annotators"] if a["token"]})
    return camp, media


def next_clip_task(server: Any, cid: int, token: str) -> dict[str, Any]:
    """The annotator's pending clip task (skipping the text item the campaign was made with)."""
    while True:
        task = server.api("GET", f"/api/campaigns/{cid}/next", token=token).json()["task"]
        if task is None or any(r["media"] for r in task["responses"]):
            return task
        a, b = (r["id"] for r in task["responses"])
        body = {"idempotency_key": f"text-{task['task_id']}", "pairwise": {"a": a, "b": b, "choice": "a"}}
        server.api("POST", f"/api/tasks/{task['task_id']}/submit", token=token, json=body).raise_for_status()


def test_media_upload_is_sniffed_checked_and_deduplicated(module_server: Any) -> None:
    s = module_server
    camp = s.create_campaign(name="uploads", annotators=["up-ann"], n_items=1, k=2)
    clip = gif((10, 200, 10))
    first = upload(s, camp.id, clip)
    assert first.status_code == 200, first.text
    info = first.json()
    assert info["content_type"] == "image/gif" and info["size"] == len(clip) and info["created"] is True
    again = upload(s, camp.id, clip).json()
    assert again["media_id"] == info["media_id"] and again["created"] is False
    # the type comes from the bytes: a text file is refused whatever its Content-Type says
    r = s.api(
        "POST", f"/api/campaigns/{camp.id}/media", token=s.admin_token, content=b"<script>alert(1)</script>",
        headers={"Content-Type": "image/gif"},
    )  # fmt: skip
    assert r.status_code == 415 and "not a GIF, PNG, WebP, MP4 or WebM" in r.json()["detail"]
    broken = upload(s, camp.id, b"GIF89a" + b"\x00" * 20)
    assert broken.status_code == 422 and "broken image/gif" in broken.json()["detail"]
    assert upload(s, camp.id, b"").status_code == 422
    # admins only; unknown campaign 404; no token 401
    assert upload(s, camp.id, clip, token=s.tokens["up-ann"]).status_code == 403
    assert upload(s, 999_999, clip).status_code == 404
    assert s.api("POST", f"/api/campaigns/{camp.id}/media", content=clip).status_code == 401
    got = s.api("GET", f"/api/media/{info['media_id']}", token=s.admin_token)
    assert got.status_code == 200 and got.content == clip and got.headers["content-type"] == "image/gif"
    assert s.api("GET", f"/api/media/{info['media_id']}", token=s.tokens["up-ann"]).status_code == 403


def test_clip_items_are_served_only_through_their_task(module_server: Any) -> None:
    s = module_server
    camp, media = clip_campaign(s, "clips-served", ["clip-alice"])
    other, _ = clip_campaign(s, "clips-other", ["clip-bob"])
    alice, bob = s.tokens["clip-alice"], s.tokens["clip-bob"]
    task = next_clip_task(s, camp.id, alice)
    assert task is not None and len(task["responses"]) == 2  # two clips, both with empty captions
    assert all(r["media"]["type"] == "image/gif" and r["text"] == "" for r in task["responses"])
    served = {}
    for r in task["responses"]:
        got = s.api("GET", r["media"]["url"], token=alice)
        assert got.status_code == 200 and got.headers["content-type"] == "image/gif"
        assert got.headers["content-disposition"].startswith("inline")
        assert got.headers["x-content-type-options"] == "nosniff"
        assert "default-src 'self'" in got.headers["content-security-policy"]
        served[r["id"]] = got.content
    originals = {s.api("GET", f"/api/media/{m}", token=s.admin_token).content for m in media}
    assert set(served.values()) == originals
    url = task["responses"][0]["media"]["url"]
    assert s.api("GET", url, token=bob).status_code == 404  # not bob's task: as if it did not exist
    assert s.api("GET", url).status_code == 401
    assert s.api("GET", f"/api/tasks/{task['task_id']}/media/123", token=alice).status_code == 404
    # an item may only name media of its own campaign; nothing is written otherwise
    before = s.api("GET", f"/api/campaigns/{other.id}", token=s.admin_token).json()["n_items"]
    bad = {"items": [{"prompt": "p", "responses": [{"media_id": media[0]}, {"text": "x"}]}]}
    r = s.api("POST", f"/api/campaigns/{other.id}/items", token=s.admin_token, json=bad)
    assert r.status_code == 422 and f"not found in campaign {other.id}" in r.json()["detail"]
    assert s.api("GET", f"/api/campaigns/{other.id}", token=s.admin_token).json()["n_items"] == before
    # a response needs a text or a clip
    r = s.api(
        "POST", f"/api/campaigns/{other.id}/items", token=s.admin_token,
        json={"items": [{"prompt": "p", "responses": [{"text": "  "}]}]},
    )  # fmt: skip
    assert r.status_code == 422 and "give a text or a media_id" in r.json()["detail"]


@pytest.mark.parametrize("choice", ["cant_tell", "tie"])
def test_cant_tell_is_a_judgment_without_an_outcome(module_server: Any, choice: str) -> None:
    s = module_server
    camp, _ = clip_campaign(s, f"clips-{choice}", [f"judge-{choice}"])
    token = s.tokens[f"judge-{choice}"]
    task = next_clip_task(s, camp.id, token)
    item = task["item_id"]
    status = s.api(
        "GET", f"/api/campaigns/{camp.id}/items/status", token=s.admin_token, params={"ids": str(item)}
    ).json()
    assert status == {str(item): {"pending": 1, "done": 0, "skipped": 0, "judgments": 0}}
    a, b = (r["id"] for r in task["responses"])
    body = {"idempotency_key": "k1", "pairwise": {"a": a, "b": b, "choice": choice, "strength": "better"}}
    r = s.api("POST", f"/api/tasks/{task['task_id']}/submit", token=token, json=body)
    assert r.status_code == 422 and "strength is only given with choice 'a' or 'b'" in r.text
    del body["pairwise"]["strength"]
    assert s.api("POST", f"/api/tasks/{task['task_id']}/submit", token=token, json=body).status_code == 200
    status = s.api(
        "GET", f"/api/campaigns/{camp.id}/items/status", token=s.admin_token, params={"ids": str(item)}
    ).json()
    assert status[str(item)] == {"pending": 0, "done": 1, "skipped": 0, "judgments": 1}
    stored = [
        j
        for j in s.api("GET", f"/api/campaigns/{camp.id}/judgments", token=s.admin_token).json()
        if j["item_id"] == item
    ]
    assert [j["payload"]["pairwise"]["choice"] for j in stored] == [choice]
    assert all("media_id" in r for r in stored[0]["responses"])
    from prefloop.feedback.quality import pair_outcomes

    assert len(pair_outcomes(stored[0])) == (0 if choice == "cant_tell" else 1)  # a tie is an outcome
    # the review page shows the clips (its script fetches them with the admin's token)
    html = s.api("GET", f"/api/campaigns/{camp.id}/review.html", token=s.admin_token).text
    assert all(f'data-media="/api/media/{r["media_id"]}"' in html for r in stored[0]["responses"])
    if choice == "cant_tell":
        # the letters follow the submitted order (a, b); the anonymous task shuffles which clip is a
        text = html.replace("&#39;", "'")
        assert "can't tell A from B" in text or "can't tell B from A" in text
    bad = s.api("GET", f"/api/campaigns/{camp.id}/items/status", token=s.admin_token, params={"ids": "1,x"})
    assert bad.status_code == 422
