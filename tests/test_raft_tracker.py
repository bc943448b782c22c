"""The leader's view of one follower (raftnode.tracker): states, the in-flight window, and the
snapshot transfer with one chunk in flight."""

import pytest

from raftnode.tracker import (STATE_PROBE, STATE_REPLICATE, STATE_SNAPSHOT, Inflights,
                              Progress)


def progress(next_index=11, match=0, msgs=4, bytes_=1000):
    pr = Progress(next_index, msgs, bytes_)
    pr.match = match
    return pr


# -- the in-flight window ------------------------------------------------------------------------

def test_the_window_is_full_at_its_message_limit():
    window = Inflights(max_msgs=2, max_bytes=1000)
    window.add(5, 10)
    assert not window.full() and window.room() == 990
    window.add(9, 10)
    assert window.full() and window.room() == 0 and window.count == 2


def test_the_window_is_full_at_its_byte_limit_and_room_says_how_much_may_still_go():
    window = Inflights(max_msgs=10, max_bytes=100)
    window.add(5, 60)
    assert window.room() == 40 and not window.full()
    window.add(6, 40)
    assert window.full() and window.room() == 0 and window.bytes == 100


def test_an_acknowledged_index_frees_every_append_ending_at_or_below_it():
    window = Inflights(max_msgs=10, max_bytes=1000)
    for last, size in ((5, 10), (9, 20), (14, 30)):
        window.add(last, size)
    window.free_to(8)
    assert (window.count, window.bytes) == (2, 50)
    window.free_to(9)
    assert (window.count, window.bytes) == (1, 30)
    window.free_to(100)
    assert (window.count, window.bytes) == (0, 0)


def test_appends_in_flight_end_at_increasing_indexes():
    window = Inflights(max_msgs=10, max_bytes=1000)
    window.add(5, 10)
    with pytest.raises(ValueError, match="increasing"):
        window.add(5, 10)


def test_a_window_without_room_for_one_message_is_refused():
    with pytest.raises(ValueError, match="at least one message"):
        Inflights(max_msgs=0, max_bytes=10)


# -- probe and replicate -------------------------------------------------------------------------

def test_a_new_follower_is_probed_one_append_at_a_time():
    pr = progress()
    assert pr.state == STATE_PROBE and not pr.paused
    pr.sent_append(12, 50)
    assert pr.paused and pr.next == 11 and pr.inflights.count == 0


def test_replicate_pipelines_until_the_window_is_full():
    pr = progress(match=10)
    pr.become_replicate()
    assert pr.next == 11
    for last in (12, 14, 16, 18):
        assert not pr.paused
        pr.sent_append(last, 100)
    assert pr.next == 19 and pr.paused and pr.inflights.count == 4


def test_an_acknowledgement_moves_match_and_next_forward_only_and_frees_the_window():
    pr = progress(match=10)
    pr.become_replicate()
    pr.sent_append(15, 100)
    pr.sent_append(20, 100)
    assert pr.acknowledged(15) and pr.match == 15 and pr.next == 21
    assert pr.inflights.count == 1
    assert not pr.acknowledged(12), "an older acknowledgement is no news"
    assert pr.match == 15


def test_a_rejection_of_the_probe_in_flight_moves_next_back_to_the_hint():
    pr = progress(next_index=21, match=3)
    pr.sent_append(20, 0)
    assert pr.rejected(20, 8) and pr.state == STATE_PROBE and pr.next == 8 and not pr.paused


def test_next_never_goes_below_match_plus_one_nor_above_the_rejected_index():
    pr = progress(next_index=21, match=5)
    assert pr.rejected(20, 2) and pr.next == 6
    pr = progress(next_index=21, match=5)
    assert pr.rejected(20, 50) and pr.next == 20


def test_a_probing_follower_ignores_rejections_of_older_probes():
    pr = progress(next_index=21)
    assert not pr.rejected(15, 3)
    assert pr.next == 21


def test_a_replicating_follower_ignores_rejections_at_or_below_its_match():
    pr = progress(match=10)
    pr.become_replicate()
    pr.sent_append(20, 100)
    assert not pr.rejected(10, 3) and pr.state == STATE_REPLICATE and pr.next == 21


def test_a_replicating_follower_rejecting_an_append_is_probed_again_with_an_empty_window():
    pr = progress(match=10)
    pr.become_replicate()
    pr.sent_append(20, 100)
    assert pr.rejected(15, 13)
    assert pr.state == STATE_PROBE and pr.next == 13 and pr.inflights.count == 0


def test_going_back_to_probe_restarts_after_the_last_known_match():
    pr = progress(match=10)
    pr.become_replicate()
    pr.sent_append(30, 100)
    pr.become_probe()
    assert pr.next == 11 and pr.inflights.bytes == 0 and not pr.paused


# -- snapshot transfer ---------------------------------------------------------------------------

def snapshotting(data=b"0123456789"):
    pr = progress()
    pr.become_snapshot(40, 3, data)
    return pr


def send(pr, now=0, chunk=4):
    offset, data, done = pr.next_chunk(chunk)
    pr.chunk_sent(len(data), now)
    return offset, data, done


def test_a_snapshot_goes_one_chunk_at_a_time():
    pr = snapshotting()
    assert pr.state == STATE_SNAPSHOT and send(pr) == (0, b"0123", False)
    assert pr.paused and pr.next_chunk(4) is None, "nothing more while a chunk is in flight"
    assert pr.chunk_reply(True, 4)
    assert send(pr) == (4, b"4567", False)
    assert pr.chunk_reply(True, 8)
    assert send(pr) == (8, b"89", True)


def test_a_duplicate_or_unexpected_success_is_ignored():
    pr = snapshotting()
    send(pr)
    pr.chunk_reply(True, 4)
    send(pr)                                   # chunk [4, 8) in flight
    assert not pr.chunk_reply(True, 4), "a duplicate answer to the first chunk"
    assert not pr.chunk_reply(True, 6), "an offset no chunk ends at"
    assert pr.next_chunk(4) is None


def test_a_failure_at_the_offset_in_flight_is_ignored_since_that_chunk_is_coming():
    pr = snapshotting()
    send(pr)
    pr.chunk_reply(True, 4)
    send(pr)
    assert not pr.chunk_reply(False, 4) and pr.next_chunk(4) is None


def test_a_failure_elsewhere_resumes_where_the_follower_is():
    pr = snapshotting()
    send(pr)
    pr.chunk_reply(True, 4)
    send(pr)
    assert pr.chunk_reply(False, 0), "e.g. the follower restarted and holds nothing"
    assert pr.next_chunk(4) == (0, b"0123", False)


def test_a_failure_behind_the_chunk_in_flight_is_believed_only_after_a_timeout():
    pr = snapshotting()
    send(pr)
    pr.chunk_reply(True, 4)
    send(pr)
    pr.chunk_reply(True, 8)
    send(pr)                                   # chunk [8, 10) in flight
    assert not pr.chunk_reply(False, 4), "likely its refusal of a duplicate of chunk [0, 4)"
    pr.resend_chunk()
    send(pr)
    assert pr.chunk_reply(False, 4) and pr.next_chunk(4) == (4, b"4567", False)


def test_a_failure_ahead_of_the_chunk_in_flight_resumes_there():
    pr = snapshotting()
    send(pr)
    assert pr.chunk_reply(False, 4), "our chunk arrived; its reply is still on its way"
    assert pr.next_chunk(4)[0] == 4


def test_a_failure_offset_outside_the_snapshot_restarts_the_transfer():
    pr = snapshotting()
    send(pr)
    assert pr.chunk_reply(False, 99) and pr.next_chunk(4)[0] == 0


def test_a_chunk_without_an_answer_is_sent_again_only_after_the_timeout():
    pr = snapshotting()
    send(pr, now=100)
    assert not pr.chunk_timed_out(now=114, timeout=15)
    assert pr.chunk_timed_out(now=115, timeout=15)
    pr.resend_chunk()
    assert pr.chunks_resent == 1 and send(pr, now=115) == (0, b"0123", False)
    assert not pr.chunk_timed_out(now=120, timeout=15)


def test_the_snapshot_state_survives_heartbeat_answers_and_rejections():
    pr = snapshotting()
    send(pr)
    assert not pr.rejected(0, 1) and pr.state == STATE_SNAPSHOT
    pr.acknowledged(0)
    assert pr.state == STATE_SNAPSHOT and pr.next_chunk(4) is None


def test_leaving_the_snapshot_state_drops_the_snapshot_data():
    pr = snapshotting()
    send(pr)
    pr.acknowledged(40)
    pr.become_replicate()
    assert pr.state == STATE_REPLICATE and pr.next == 41 and pr.snapshot_data is None
    assert pr.next_chunk(4) is None
