"""`prefloop label` and `PeopleTeacher`: teachers working through the feedback server's REST API.

A real `prefloop serve` process (the `live_server` fixture); the simulated annotator labels over
HTTP (--url), the tiny AI judge in-process over the same database (--db), and a person answers a
`PeopleTeacher`'s question from another thread.
"""

from __future__ import annotations

import threading

import pytest

from prefloop.label import LabelConfig, run, submission
from prefloop.teachers.people import FeedbackClient, PeopleTeacher, strength_level
from prefloop.teachers.simulated import SimulatedTeacher

REPLIES = [
    "I love this, thank you so much!",
    "This is terrible and awful.",
    "Okay.",
    "What a wonderful, happy day!",
]


def items(n: int):
    return [
        {
            "prompt": f"Say something nice ({i})",
            "responses": [{"text": t, "model": f"m{j}"} for j, t in enumerate(REPLIES)],
        }
        for i in range(n)
    ]


def test_sim_teacher_labels_a_campaign_over_http_and_shows_in_the_report(live_server, tmp_path, capsys):
    camp = live_server.create_campaign(
        annotators=["alice"], items=items(3), feedback_types=["ranking", "pairwise", "binary", "rating"]
    )
    cfg = LabelConfig(
        campaign=camp.id,
        url=live_server.base_url,
        token=live_server.admin_token,
        teacher="sim",
        sim="oracle",
        raise_overlap=True,
    )
    result = run(cfg)
    assert result["annotator"] == "sim:oracle" and result["submitted"] == 3 and result["skipped"] == 0
    with live_server.admin() as c:
        judgments = [
            j for j in c.get(f"/api/campaigns/{camp.id}/judgments").json() if j["annotator"] == "sim:oracle"
        ]
        report = c.get(f"/api/campaigns/{camp.id}/report").json()
    assert len(judgments) == 3
    for j in judgments:
        text = {r["id"]: r["text"] for r in j["responses"]}
        best = [text[i] for i in j["payload"]["ranking"][0]]
        worst = [text[i] for i in j["payload"]["ranking"][-1]]
        assert best == ["What a wonderful, happy day!"] and worst == ["This is terrible and awful."]
        thumbs = {text[int(k)]: v for k, v in j["payload"]["thumbs"].items()}
        assert (
            thumbs["This is terrible and awful."] is False
            and thumbs["I love this, thank you so much!"] is True
        )
        assert all(1 <= v <= 7 for v in j["payload"]["ratings"].values())
    assert "sim:oracle" in {a["name"] for a in report["annotators"]}
    # a rerun finds nothing left to do and submits nothing twice
    assert run(cfg)["submitted"] == 0


def test_ai_judge_labels_in_process_over_the_db(live_server, tmp_path):
    camp = live_server.create_campaign(annotators=["alice"], items=items(2), feedback_types=["pairwise"])
    cache = tmp_path / "judge.sqlite"
    cfg = LabelConfig(
        campaign=camp.id,
        db=live_server.db_url,
        teacher="ai",
        judge="tiny",
        judge_cache=str(cache),
        raise_overlap=True,
    )
    result = run(cfg)
    assert result["annotator"] == "ai:tiny" and result["submitted"] == 2
    assert result["judge"]["pairs"] == 2 and result["judge"]["queries"] == 4
    with live_server.admin() as c:
        mine = [j for j in c.get(f"/api/campaigns/{camp.id}/judgments").json() if j["annotator"] == "ai:tiny"]
    assert len(mine) == 2 and all(j["payload"]["pairwise"]["choice"] in ("a", "b", "tie") for j in mine)


def test_label_bad_input(live_server):
    with pytest.raises(ValueError, match="--campaign"):
        run(LabelConfig(teacher="sim"))
    with pytest.raises(ValueError, match="--db URL .* or --url"):
        run(LabelConfig(campaign=1, teacher="sim"))
    with pytest.raises(Exception, match="campaign 99 not found"):
        run(LabelConfig(campaign=99, url=live_server.base_url, token=live_server.admin_token, teacher="sim"))


def test_skip_and_strength_mapping():
    class Gold:
        def __call__(self, prompts, completions):
            return [-0.5 for _ in completions]

    task = {
        "prompt": "p",
        "responses": [{"id": 1, "text": "x"}, {"id": 2, "text": "y"}],
        "feedback_types": ["pairwise"],
        "rating_scale": [1, 7],
    }
    assert submission(SimulatedTeacher(Gold(), skip_threshold=0.0), task) is None
    assert strength_level(0.9) == "significantly_better" and strength_level(0.3) == "negligibly_better"


def test_people_teacher_asks_a_person_through_the_server(live_server):
    camp = live_server.create_campaign(annotators=["alice"], items=items(1), feedback_types=["pairwise"])
    alice = live_server.client(camp.tokens["alice"])
    # alice first clears the task she already has
    task = alice.get(f"/api/campaigns/{camp.id}/next").json()["task"]
    alice.post(f"/api/tasks/{task['task_id']}/skip")

    def person():
        for _ in range(300):
            task = alice.get(f"/api/campaigns/{camp.id}/next").json()["task"]
            if task is not None:
                rs = task["responses"]
                b_text = next(r for r in rs if r["text"] == "second reply")
                a_text = next(r for r in rs if r["text"] == "first reply")
                body = {
                    "idempotency_key": "k1",
                    "pairwise": {"a": a_text["id"], "b": b_text["id"], "choice": "b", "strength": "better"},
                }
                alice.post(f"/api/tasks/{task['task_id']}/submit", json=body).raise_for_status()
                return
            threading.Event().wait(0.1)

    thread = threading.Thread(target=person)
    thread.start()
    with live_server.admin() as http:
        teacher = PeopleTeacher(FeedbackClient(http, live_server.admin_token), camp.id, wait_s=60, poll_s=0.1)
        pref = teacher.compare("Which is nicer?", "first reply", "second reply")
    thread.join()
    assert pref.which == "b" and pref.strength == 0.75 and pref.meta["annotator"] == "alice"
    assert pref.probability is None


def test_item_priority_orders_the_next_task(live_server):
    camp = live_server.create_campaign(annotators=["alice"], items=items(4), feedback_types=["pairwise"])
    item_ids = camp.item_ids
    alice = live_server.client(camp.tokens["alice"])
    first = alice.get(f"/api/campaigns/{camp.id}/next").json()["task"]["item_id"]
    assert first == item_ids[0]  # no priorities: task order
    with live_server.admin() as c:
        r = c.patch(
            f"/api/campaigns/{camp.id}/items/priority",
            json={"priorities": {str(item_ids[2]): 0.9, str(item_ids[1]): 0.4}},
        )
        assert r.status_code == 200 and r.json() == {"updated": 2}
        assert (
            c.patch(
                f"/api/campaigns/{camp.id}/items/priority", json={"priorities": {"999999": 1.0}}
            ).status_code
            == 404
        )
        assert c.patch(f"/api/campaigns/{camp.id}/items/priority", json={"priorities": {}}).status_code == 422
    order = []
    for _ in range(4):
        task = alice.get(f"/api/campaigns/{camp.id}/next").json()["task"]
        order.append(task["item_id"])
        alice.post(f"/api/tasks/{task['task_id']}/skip")
    assert order == [item_ids[2], item_ids[1], item_ids[0], item_ids[3]]
    # an item can carry its priority when it is added
    with live_server.admin() as c:
        new = c.post(
            f"/api/campaigns/{camp.id}/items",
            json={"items": [{"prompt": "p", "responses": [{"text": "x"}, {"text": "y"}], "priority": 5.0}]},
        ).json()["item_ids"][0]
    assert alice.get(f"/api/campaigns/{camp.id}/next").json()["task"]["item_id"] == new
