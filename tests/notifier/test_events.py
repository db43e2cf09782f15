"""Publishing and streaming run events through the notifier process: numbering,
durability, the replay/live seam, resume, restart, back-pressure, heartbeats."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from automl.v1 import common_pb2, event_pb2
from automl.v1 import notifier_service_pb2 as pb
from tests.notifier.conftest import start_services, stop_services


def stop_event(run, i: int, padding: int = 0) -> event_pb2.Event:
    return event_pb2.Event(
        run=run.name,
        experiment=run.experiment,
        stop_requested=event_pb2.StopRequested(
            reason=common_pb2.STOP_REASON_USER, message=f"event {i}".ljust(padding, ".")
        ),
    )


async def publish(stub, run, count: int, batch: int = 10, start: int = 0, padding: int = 0) -> None:
    end = start + count
    for first in range(start, end, batch):
        events = [stop_event(run, i, padding) for i in range(first, min(first + batch, end))]
        await stub.Publish(pb.PublishRequest(events=events))


async def collect(stub, request: pb.StreamEventsRequest, count: int, timeout: float = 60) -> list[event_pb2.Event]:
    """Read `count` events; when the server cuts the stream off for falling behind,
    resume after the last event received, as the error message says."""
    events: list[event_pb2.Event] = []
    async with asyncio.timeout(timeout):
        while len(events) < count:
            call = stub.StreamEvents(request)
            try:
                async for message in call:
                    events += message.batch.events
                    if len(events) >= count:
                        break
            except grpc.aio.AioRpcError as exc:
                if exc.code() is not grpc.StatusCode.RESOURCE_EXHAUSTED:
                    raise
                resumed = pb.StreamEventsRequest()
                resumed.CopyFrom(request)
                if request.run:
                    resumed.after_sequence = events[-1].sequence if events else 0
                else:
                    resumed.after_global_sequence = events[-1].global_sequence if events else 0
                request = resumed
            finally:
                call.cancel()
    return events[:count]  # a client that stops reading here resumes after the last one it kept


async def test_publish_numbers_events_and_sets_their_type(services):
    run = services.new_run()
    channel, stub = services.aio_notifier()
    async with channel:
        reply = await stub.Publish(pb.PublishRequest(events=[stop_event(run, 0), stop_event(run, 1)]))
    assert [e.sequence for e in reply.events] == [1, 2]
    assert all(e.type == event_pb2.EVENT_TYPE_STOP_REQUESTED for e in reply.events)
    assert reply.events[0].global_sequence < reply.events[1].global_sequence
    assert reply.events[0].HasField("create_time")


async def test_replay_and_live_seam_under_concurrent_publishing(services):
    runs = [services.new_run(), services.new_run()]
    per_run = 1500
    channel, stub = services.aio_notifier()
    async with channel:
        early = [asyncio.create_task(collect(stub, pb.StreamEventsRequest(run=r.name), per_run)) for r in runs]
        await asyncio.sleep(0.3)  # live-only subscribers are registered
        publishers = [asyncio.create_task(publish(stub, r, per_run // 2, start=k * per_run // 2))
                      for r in runs for k in range(2)]  # fmt: skip
        await asyncio.sleep(0.5)  # publishing is under way: late subscribers replay, then go live
        late = [
            asyncio.create_task(collect(stub, pb.StreamEventsRequest(run=r.name, after_sequence=0), per_run))
            for r in runs
        ]
        experiment_wide = asyncio.create_task(
            collect(stub, pb.StreamEventsRequest(experiment=runs[0].experiment, after_global_sequence=0), per_run)
        )
        await asyncio.gather(*publishers)
        results = await asyncio.gather(*early, *late, experiment_wide)
    for events in results:
        assert [e.sequence for e in events] == list(range(1, per_run + 1)), "every sequence exactly once, in order"
        assert len({e.global_sequence for e in events}) == per_run
    assert {e.run for e in results[-1]} == {runs[0].name}


async def test_resume_after_a_disconnect_misses_nothing(services):
    run = services.new_run()
    channel, stub = services.aio_notifier()
    async with channel:
        await publish(stub, run, 100)
        first = await collect(stub, pb.StreamEventsRequest(run=run.name, after_sequence=0), 40)
        await publish(stub, run, 50, start=100)
        rest = await collect(stub, pb.StreamEventsRequest(run=run.name, after_sequence=first[-1].sequence), 110)
    assert [e.sequence for e in first + rest] == list(range(1, 151))


async def test_restart_of_the_notifier_loses_nothing(own_services):
    run = own_services.new_run()
    channel, stub = own_services.aio_notifier()
    async with channel:
        await publish(stub, run, 300)
        seen = await collect(stub, pb.StreamEventsRequest(run=run.name, after_sequence=0), 120)
    assert own_services.stop_notifier() == 0
    own_services.start_notifier()
    channel, stub = own_services.aio_notifier()
    async with channel:
        reply = await stub.Publish(pb.PublishRequest(events=[stop_event(run, 300)]))
        assert reply.events[0].sequence == 301, "numbering continues from the durable log"
        await publish(stub, run, 99, batch=9, start=301)
        rest = await collect(stub, pb.StreamEventsRequest(run=run.name, after_sequence=seen[-1].sequence), 280)
    assert [e.sequence for e in seen + rest] == list(range(1, 401))


async def test_a_stuck_subscriber_is_cut_off_without_slowing_others(services):
    run = services.new_run()
    total = 4000  # of 4 KiB: more than the transport buffers of a stream that is not read
    channel, stub = services.aio_notifier()
    async with channel:
        stuck = stub.StreamEvents(pb.StreamEventsRequest(run=run.name))
        await stuck.wait_for_connection()
        fast = asyncio.create_task(collect(stub, pb.StreamEventsRequest(run=run.name), total))
        await asyncio.sleep(0.3)
        await publish(stub, run, total, batch=100, padding=4096)
        assert [e.sequence for e in await fast] == list(range(1, total + 1))
        received = 0
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async with asyncio.timeout(30):
                async for message in stuck:
                    received += len(message.batch.events)
    assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"resume with after_sequence={received}" in caught.value.details()
    assert received < total


async def test_idle_streams_get_heartbeats(services):
    run = services.new_run()
    channel, stub = services.aio_notifier()
    async with channel:
        await publish(stub, run, 3)
        call = stub.StreamEvents(pb.StreamEventsRequest(run=run.name, after_sequence=0))
        messages = []
        async with asyncio.timeout(10):
            async for message in call:
                messages.append(message)
                if len(messages) == 3:
                    break
        call.cancel()
    assert [e.sequence for e in messages[0].batch.events] == [1, 2, 3], "the replay, in one message"
    assert [m.WhichOneof("content") for m in messages[1:]] == ["heartbeat", "heartbeat"]
    assert [m.heartbeat.last_sequence for m in messages[1:]] == [3, 3]


async def test_a_run_stream_can_end_with_the_run(services):
    run = services.new_run()
    channel, stub = services.aio_notifier()
    async with channel:
        await publish(stub, run, 2)
        finished = event_pb2.Event(
            run=run.name,
            experiment=run.experiment,
            run_finished=event_pb2.RunFinished(state=common_pb2.RUN_STATE_SUCCEEDED),
        )
        await stub.Publish(pb.PublishRequest(events=[finished]))
        request = pb.StreamEventsRequest(run=run.name, after_sequence=0, end_with_run=True)
        events = [e async for m in stub.StreamEvents(request) for e in m.batch.events]
    assert [e.type for e in events][-1] == event_pb2.EVENT_TYPE_RUN_FINISHED and len(events) == 3


@pytest.mark.parametrize(
    ("event", "field"),
    [
        (event_pb2.Event(experiment="experiments/x", stop_requested=event_pb2.StopRequested()), "events[0].run"),
        (event_pb2.Event(run="runs/x", experiment="experiments/x"), "events[0].payload"),
    ],
)
async def test_bad_events_are_refused(services, event, field):
    channel, stub = services.aio_notifier()
    async with channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Publish(pb.PublishRequest(events=[event]))
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert field in caught.value.details()


async def test_unknown_run_and_other_tenants_are_not_found(services):
    run = services.new_run(tenant="alice")
    channel, stub = services.aio_notifier()
    async with channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Publish(pb.PublishRequest(events=[stop_event(run, 0)]), metadata=[("x-automl-tenant", "bob")])
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND


async def test_streams_share_a_message_budget_by_batching(tmp_path):
    """With a budget of 100 messages/s for 5 streams, each stream sends at most
    one message per 50 ms: events published faster arrive batched, all of them,
    in order."""
    services = start_services(tmp_path, {"AUTOML_STREAM_MESSAGES_PER_SECOND": "100"})
    try:
        run = services.new_run()
        channel, stub = services.aio_notifier()
        async with channel:
            calls = [stub.StreamEvents(pb.StreamEventsRequest(run=run.name)) for _ in range(5)]
            for call in calls:
                await call.wait_for_connection()
            await asyncio.sleep(0.3)
            await publish(stub, run, 40, batch=1)

            async def messages(call) -> list[list[int]]:
                out: list[list[int]] = []
                async with asyncio.timeout(20):
                    async for message in call:
                        out.append([e.sequence for e in message.batch.events])
                        if out[-1] and out[-1][-1] == 40:
                            return out
                return out

            received = await asyncio.gather(*(messages(call) for call in calls))
    finally:
        stop_services(services)
    for batches in received:
        assert [s for batch in batches for s in batch] == list(range(1, 41))
        assert len(batches) < 40, "events that came within one stream's share of a second went out together"


def with_id(event: event_pb2.Event, event_id: str) -> event_pb2.Event:
    event.id = event_id
    return event


async def test_a_repeated_publish_stores_and_delivers_one_copy(services):
    """A Publish retried with the same ids (its answer was lost) gets the stored
    events back: nothing stored, numbered or streamed twice, no gap after."""
    run = services.new_run()
    channel, stub = services.aio_notifier()
    async with channel:
        live = asyncio.create_task(collect(stub, pb.StreamEventsRequest(run=run.name), 5))
        await asyncio.sleep(0.3)  # the live subscriber is registered
        batch = [with_id(stop_event(run, i), f"event-{i}") for i in range(3)]
        first = await stub.Publish(pb.PublishRequest(events=batch))
        again = await stub.Publish(pb.PublishRequest(events=batch))
        assert [(e.id, e.sequence, e.global_sequence) for e in again.events] == [
            (e.id, e.sequence, e.global_sequence) for e in first.events
        ]
        # A repeated id, then a new one twice in one request: stored once, numbered next.
        new = with_id(stop_event(run, 3), "event-3")
        mixed = await stub.Publish(pb.PublishRequest(events=[batch[2], new, new]))
        assert [e.sequence for e in mixed.events] == [3, 4, 4]
        assert mixed.events[0].global_sequence == first.events[2].global_sequence
        after = await stub.Publish(pb.PublishRequest(events=[stop_event(run, 4)]))
        assert after.events[0].sequence == 5 and after.events[0].id, "no gap; an event without an id gets one"
        streamed = await live
        replayed = await collect(stub, pb.StreamEventsRequest(run=run.name, after_sequence=0), 5)
    for events in (streamed, replayed):
        assert [e.sequence for e in events] == [1, 2, 3, 4, 5]
        assert [e.stop_requested.message for e in events] == [f"event {i}" for i in range(5)]
        assert len({e.global_sequence for e in events}) == 5


async def test_ids_stored_before_a_restart_are_found_in_the_log(own_services):
    """After a restart the notifier knows nothing of earlier Publishes: storage
    finds the repeated id, numbers the new event without it, and the
    notifier's count of the run follows."""
    run = own_services.new_run()
    channel, stub = own_services.aio_notifier()
    batch = [with_id(stop_event(run, i), f"before-{i}") for i in range(3)]
    async with channel:
        first = await stub.Publish(pb.PublishRequest(events=batch))
    assert own_services.stop_notifier() == 0
    own_services.start_notifier()
    channel, stub = own_services.aio_notifier()
    async with channel:
        live = asyncio.create_task(collect(stub, pb.StreamEventsRequest(run=run.name), 2))
        await asyncio.sleep(0.3)
        reply = await stub.Publish(pb.PublishRequest(events=[batch[1], with_id(stop_event(run, 3), "after-3")]))
        assert [e.sequence for e in reply.events] == [2, 4]
        assert reply.events[0].global_sequence == first.events[1].global_sequence
        nxt = await stub.Publish(pb.PublishRequest(events=[with_id(stop_event(run, 4), "after-4")]))
        assert nxt.events[0].sequence == 5
        assert [e.sequence for e in await live] == [4, 5], "the repeated event is not streamed again"
        everything = await collect(stub, pb.StreamEventsRequest(run=run.name, after_sequence=0), 5)
    assert [e.stop_requested.message for e in everything] == [f"event {i}" for i in range(5)]


async def test_an_id_that_is_no_id_is_refused(services):
    run = services.new_run()
    channel, stub = services.aio_notifier()
    async with channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Publish(pb.PublishRequest(events=[with_id(stop_event(run, 0), "not/an id")]))
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "events[0].id" in caught.value.details()
