"""The HTTP door makes the JSON of a large answer once per distinct bytes
(gateway.transcoding.RecentJson): the same bytes find what was made of them,
other bytes (a leaderboard page that moved) never do."""

from __future__ import annotations

from automl.v1 import run_pb2
from gateway.transcoding import RECENT_JSON_BYTES, RecentJson


def page(scores: list[float]) -> run_pb2.GetLeaderboardResponse:
    answer = run_pb2.GetLeaderboardResponse(total_size=len(scores))
    for rank, score in enumerate(scores, 1):
        entry = answer.entries.add(rank=rank)
        entry.model_result.name = f"modelResults/{rank:032x}"
        entry.model_result.primary_score = score
        entry.model_result.pipeline_steps.extend(["NumImputer", "RandomForestClassifier"] * 8)
    assert answer.ByteSize() >= RECENT_JSON_BYTES
    return answer


def test_the_same_bytes_find_their_memo_and_other_bytes_do_not():
    recent = RecentJson(max_entries=2)
    first = recent.memo(page([0.9, 0.8] * 10))
    assert first is not None
    first["body"] = b"{...}"
    assert recent.memo(page([0.9, 0.8] * 10)) is first  # a new message, the same bytes
    moved = recent.memo(page([0.95, 0.9, 0.8] * 10))  # a better result came
    assert moved is not None and moved is not first and "body" not in moved
    other_type = run_pb2.ListModelResultsResponse(model_results=[e.model_result for e in page([0.9] * 20).entries])
    assert recent.memo(other_type) is not first


def test_small_answers_are_not_kept_and_the_memos_are_bounded():
    recent = RecentJson(max_entries=2)
    assert recent.memo(run_pb2.Run(name="runs/abc")) is None
    kept = [recent.memo(page([0.5 + i / 100] * 20)) for i in range(3)]
    assert recent.memo(page([0.5] * 20)) is not kept[0]  # the oldest of three went
    assert recent.memo(page([0.52] * 20)) is kept[2]
