"""The decision log: schema, group commit, flush, lookups across processes' logs."""

from __future__ import annotations

import json
import time
import uuid

import numpy as np

from llmrec.service.decisions import DECISION_FIELDS, DecisionLog, choose_many, \
    feedback_line, new_decision


def _d(text="q", **kw):
    return new_decision(text, ["a", "b", "c"], [0.1, 0.7, 0.3], [1, 2, 0], 1, 1.0,
                        policy="greedy", router="knn", router_version="v1",
                        source="recommend", **kw)


def test_schema_of_a_decision():
    d = _d("What is 2+2?")
    assert set(DECISION_FIELDS) <= set(d) and d["text"] == "What is 2+2?"
    assert uuid.UUID(d["decision_id"]).version == 4 and len(d["decision_id"]) == 32
    assert d["prompt_id"] == "fb-52cb6b5e4a038af1"  # the feedback log's id of the text
    assert (d["chosen"], d["rank"], d["score"]) == ("b", 0, 0.7)
    assert d["scores"] == [0.1, 0.7, 0.3]
    assert _d(prompt_id="p-7")["prompt_id"] == "p-7"
    fb = feedback_line(dict(d, answered="c"), 0.5)
    assert fb["llm"] == "c" and fb["decision_id"] == d["decision_id"]


def test_group_commit_flush_and_lookup_from_the_file(tmp_path, monkeypatch):
    path = tmp_path / "decisions.jsonl"
    log = DecisionLog(path, log_texts=False, commit_interval=0.5)
    writes = []
    real = log._writer.append_json
    monkeypatch.setattr(log._writer, "append_json",
                        lambda objs: writes.append(len(objs)) or real(objs))
    ds = [_d(f"prompt {i}") for i in range(40)]
    for d in ds[:20]:
        log.record(d)
    log.record_many(ds[20:])
    t0 = time.monotonic()
    assert log.flush()
    assert time.monotonic() - t0 < 0.45  # a flush does not wait out the interval
    assert sum(writes) == 40 and len(writes) <= 3  # grouped, not one fsync each
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert [x["decision_id"] for x in lines] == [d["decision_id"] for d in ds]
    assert all("text" not in x and x["text_sha256"] for x in lines)
    log.close()
    other = DecisionLog(path)  # e.g. another worker: not in its memory, found in the file
    assert other.get(ds[3]["decision_id"])["prompt_id"] == ds[3]["prompt_id"]
    assert other.get("0" * 32) is None


def test_choose_many_greedy_and_policy():
    ranked = np.array([[2, 0, 1], [1, 2, 0]])
    scores = np.array([[0.2, 0.1, 0.9], [0.1, 0.8, 0.5]])
    c, p = choose_many(ranked, scores, None, None)
    assert c.tolist() == [2, 1] and p.tolist() == [1.0, 1.0]

    class Last:
        name = "last"

        def choose(self, s, mask=None, rng=None):
            return np.full(len(s), s.shape[1] - 1), np.full(len(s), 0.25)

    c, p = choose_many(ranked, scores, Last(), None)
    assert c.tolist() == [2, 2] and p.tolist() == [0.25, 0.25]
