"""The clock spec the controller writes and the clock shim reads: its arithmetic, its text, its
words in the history, and bad specs refused with the reason."""

import pytest

from chaos.provision.clockshim import REAL_TIME, ClockSpec
from chaos.provision.docker import check_clock_spec


def test_the_skew_grows_by_rate_minus_one_per_real_second_from_the_anchor():
    spec = ClockSpec(anchor=100.0, skew=5.0, rate=0.5, mono_offset=2.0)
    assert spec.skew_at(100.0) == 5.0 and spec.mono_skew_at(100.0) == 7.0
    assert spec.skew_at(110.0) == 0.0     # ten real seconds at half speed: five lost
    assert spec.skew_at(90.0) == 10.0


def test_a_strobe_is_up_in_its_even_periods_then_stays_where_its_last_period_left_it():
    spec = ClockSpec(anchor=0.0, skew=1.0, strobe_start=10.0, strobe_delta=-3.0, strobe_period=0.5, strobe_count=3)
    assert [spec.skew_at(t) for t in (9.0, 10.1, 10.6, 11.1, 11.6, 50.0)] == [-2.0, -2.0, 1.0, -2.0, -2.0, -2.0]
    even = ClockSpec(strobe_start=0.0, strobe_delta=2.0, strobe_period=1.0, strobe_count=4)
    assert even.skew_at(100.0) == 0.0      # an even count ends down, where it began
    assert even.base_skew(0.5) == 0.0 and even.skew_at(0.5) == 2.0


def test_the_text_round_trips_through_parse():
    specs = [REAL_TIME, ClockSpec(anchor=12345.678901234, skew=-2.5, rate=0.05),
             ClockSpec(anchor=1.5, skew=300.0, rate=2.0, strobe_start=1.5, strobe_delta=0.2,
                       strobe_period=0.05, strobe_count=20),
             ClockSpec(mono_offset=300.0)]
    for spec in specs:
        assert ClockSpec.parse(spec.text()) == spec
        assert check_clock_spec(spec.text()) == spec.text()
    assert REAL_TIME.text() == "anchor=0 skew=0 rate=1"


@pytest.mark.parametrize("spec, words", [
    (ClockSpec(), "+0 x1"), (ClockSpec(skew=5), "+5 x1"), (ClockSpec(skew=-2.5, rate=0.5), "-2.5 x0.5"),
    (ClockSpec(skew=-0.0001), "+0 x1"), (ClockSpec(skew=1e6, rate=2), "+1000000 x2"),
    (ClockSpec(skew=1, strobe_delta=2, strobe_period=0.2, strobe_count=20),
     "+1 x1 (strobe +2 s every 0.2 s, 20 flips)"),
])
def test_the_history_shows_skew_and_rate_in_a_few_characters(spec, words):
    assert spec.describe(spec.anchor) == words


@pytest.mark.parametrize("text, message", [
    ("anchor=1 skew=2", "rate is missing"),
    ("anchor=1 skew=2 rate=0", "rate must be positive"),
    ("anchor=1 skew=two rate=1", "skew must be a number"),
    ("anchor=1 offset=2 rate=1", "unknown item 'offset=2'"),
    ("rate=1 strobe_count=2.5 strobe_period=1", "strobe_count must be an integer"),
    ("+5 x0.5", "unknown item '\\+5'"),
])
def test_a_bad_spec_is_refused_naming_what_is_wrong(text, message):
    with pytest.raises(ValueError, match=message):
        ClockSpec.parse(text)


def test_a_spec_is_one_line():
    with pytest.raises(ValueError, match="one line"):
        check_clock_spec("anchor=0 skew=0 rate=1\nrate=2")
