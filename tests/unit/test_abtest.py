"""mail.campaigns.abtest: false winners stay rare, real differences win, small samples never
decide, the same counts always give the same decision; and the `[campaigns]` settings."""

from __future__ import annotations

import math
import random
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from mail.campaigns.abtest import (
    AbDecision,
    Method,
    VariantCounts,
    chosen_by_hand,
    decide,
    decide_with,
    probability_best,
    probability_greater,
    two_proportion_p_value,
)
from mail.config import load_settings
from mail.errors import ConfigError
from models.settings import CampaignSettings

fuzz = hypothesis_settings(
    max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
METHODS: list[Method] = ["bayes", "ztest"]


def _counts(*pairs: tuple[int, int]) -> list[VariantCounts]:
    return [
        VariantCounts(variant_id=chr(ord("A") + index), sent=sent, successes=successes)
        for index, (sent, successes) in enumerate(pairs)
    ]


def _simulate(rng: random.Random, rates: list[float], sent: int) -> list[VariantCounts]:
    return _counts(*((sent, sum(rng.random() < rate for _ in range(sent))) for rate in rates))


# --- the statistics ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "rates", "sent", "simulations", "most_false_winners"),
    [
        # Two-sided 5% for the z-test; P(best) >= 0.95 for either of two equal variants is ~10%.
        ("ztest", [0.2, 0.2], 800, 200, 0.09),
        ("bayes", [0.2, 0.2], 800, 200, 0.15),
        ("ztest", [0.05, 0.05, 0.05], 1500, 80, 0.09),
        ("bayes", [0.05, 0.05, 0.05], 1500, 80, 0.15),
    ],
)
def test_equal_rates_rarely_declare_a_winner(
    method: Method, rates: list[float], sent: int, simulations: int, most_false_winners: float
) -> None:
    rng = random.Random(7)
    false_winners = sum(
        decide(_simulate(rng, rates, sent), metric="open", method=method, draws=2000).significant
        for _ in range(simulations)
    )
    assert false_winners / simulations <= most_false_winners


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    ("rates", "best"), [([0.20, 0.28], "B"), ([0.04, 0.07, 0.04], "B"), ([0.3, 0.2, 0.2, 0.2], "A")]
)
def test_a_large_real_difference_wins(method: Method, rates: list[float], best: str) -> None:
    rng = random.Random(11)
    wins = 0
    for _ in range(20):
        decision = decide(_simulate(rng, rates, 2000), metric="click", method=method, draws=4000)
        assert decision.winner == best or not decision.significant
        wins += decision.significant
    assert wins >= 18


@given(
    sent=st.lists(st.integers(min_value=0, max_value=99), min_size=2, max_size=4),
    data=st.data(),
    method=st.sampled_from(METHODS),
)
@fuzz
def test_samples_below_the_minimum_never_decide(sent: list[int], data: st.DataObject, method: Method) -> None:
    pairs = [(count, data.draw(st.integers(min_value=0, max_value=count))) for count in sent]
    decision = decide(_counts(*pairs), metric="open", method=method, min_sample=100, draws=500)
    assert not decision.significant
    assert decision.reason is not None and decision.reason.startswith("too few sends")


def test_one_variant_short_of_the_minimum_holds_a_clear_difference_back() -> None:
    decision = decide(_counts((5000, 2500), (99, 0)), metric="open")
    assert not decision.significant
    assert decision.reason == "too few sends: variant B has 99 of the 100 needed"
    assert decision.winner == "A" and decision.fallback == "highest"


@given(
    pairs=st.lists(
        st.integers(min_value=0, max_value=3000).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n))),
        min_size=2,
        max_size=3,
    ),
    method=st.sampled_from(METHODS),
)
@fuzz
def test_the_same_counts_give_the_same_decision(pairs: list[tuple[int, int]], method: Method) -> None:
    counts = _counts(*pairs)
    first = decide(counts, metric="open", method=method, min_sample=1, draws=500)
    again = decide(list(counts), metric="open", method=method, min_sample=1, draws=500)
    assert msgspec.json.encode(first) == msgspec.json.encode(again)
    assert math.isclose(sum(result.probability_best for result in first.variants), 1.0, abs_tol=1e-9)


@given(
    a=st.integers(min_value=0, max_value=2000).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n))),
    b=st.integers(min_value=0, max_value=2000).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n))),
)
@fuzz
def test_two_variants_are_exact_and_symmetric(a: tuple[int, int], b: tuple[int, int]) -> None:
    forward = probability_best(_counts(a, b))
    backward = probability_best(_counts(b, a))
    assert math.isclose(forward[0], backward[1], abs_tol=1e-9)
    assert 0.0 <= forward[1] <= 1.0


@pytest.mark.parametrize(("a", "b"), [((1000, 200), (1000, 230)), ((50, 3), (60, 9)), ((400, 0), (400, 2))])
def test_monte_carlo_agrees_with_the_exact_sum(a: tuple[int, int], b: tuple[int, int]) -> None:
    exact = probability_best(_counts(a, b))[1]
    # Three variants where the third never wins: its draws cannot change the other two's order.
    monte_carlo = probability_best(_counts(a, b, (10_000, 0)), draws=20_000)
    assert monte_carlo[2] == 0.0
    assert abs(monte_carlo[1] - exact) < 0.01


def test_known_values() -> None:
    # Beta(2, 1) against Beta(1, 2): P = 5/6.
    assert math.isclose(probability_greater(2, 1, 1, 2), 5 / 6, rel_tol=1e-12)
    assert math.isclose(probability_greater(1, 1, 1, 1), 0.5, rel_tol=1e-12)
    # 200/1000 against 230/1000: pooled 0.215, z = 1.6329, two-sided p = 0.1025.
    p_value = two_proportion_p_value(*_counts((1000, 200), (1000, 230)))
    assert math.isclose(p_value, 0.1025, abs_tol=1e-4)
    assert two_proportion_p_value(*_counts((100, 0), (100, 0))) == 1.0
    # Large counts take the normal approximation, continuous with the exact sum.
    big = probability_greater(300_001, 700_001, 299_001, 701_001)
    assert 0.9 < big < 1.0
    assert abs(probability_greater(200_000, 800_000, 199_500, 800_500) - big) < 0.2


def test_holm_corrects_the_comparisons_with_the_leader() -> None:
    counts = _counts((2000, 300), (2000, 380), (2000, 330))
    decision = decide(counts, metric="click", method="ztest", min_sample=100)
    by_id = {result.variant_id: result for result in decision.variants}
    assert by_id["B"].p_value is None  # the leader
    raw_a = two_proportion_p_value(counts[1], counts[0])
    raw_c = two_proportion_p_value(counts[1], counts[2])
    assert raw_a < raw_c
    assert by_id["A"].p_value == pytest.approx(2 * raw_a)
    assert by_id["C"].p_value == pytest.approx(max(2 * raw_a, raw_c))
    assert decision.significant == (max(2 * raw_a, raw_c) < 0.05)


@pytest.mark.parametrize(("fallback", "winner"), [("highest", "B"), ("first", "A"), ("none", None)])
def test_without_a_winner_the_fallback_chooses(fallback: str, winner: str | None) -> None:
    decision = decide(_counts((500, 100), (500, 110)), metric="open", fallback=fallback)  # type: ignore[arg-type]
    assert not decision.significant and decision.winner == winner and decision.fallback == fallback
    assert decision.reason is not None and decision.reason.startswith("no variant is best")


def test_a_decision_encodes_to_camel_case_json() -> None:
    decision = decide(_counts((5000, 1000), (5000, 1300)), metric="open", method="ztest")
    encoded = msgspec.json.decode(msgspec.json.encode(decision))
    assert encoded["winner"] == "B" and encoded["significant"] is True and encoded["reason"] is None
    assert set(encoded["variants"][0]) == {
        "variantId",
        "sent",
        "successes",
        "rate",
        "probabilityBest",
        "pValue",
    }
    assert encoded["minSample"] == 100
    assert msgspec.json.decode(msgspec.json.encode(decision), type=AbDecision) == decision


@pytest.mark.parametrize(
    ("pairs", "chosen", "significant", "reason"),
    [
        (((5000, 1000), (5000, 1300)), "B", True, None),  # the method's own winner
        (((5000, 1000), (5000, 1300)), "A", False, "chosen by hand over B, which the method found best"),
        (((500, 100), (500, 110)), "A", False, "chosen by hand; the method found no winner: no variant"),
    ],
)
def test_a_winner_chosen_by_hand_keeps_the_statistics_and_says_who_chose(
    pairs: tuple[tuple[int, int], ...], chosen: str, significant: bool, reason: str | None
) -> None:
    measured = decide(_counts(*pairs), metric="click", fallback="none")
    decision = chosen_by_hand(measured, chosen, "user-7")
    assert (decision.winner, decision.significant, decision.chosen_by) == (chosen, significant, "user-7")
    assert decision.fallback is None and decision.variants == measured.variants
    if reason is None:
        assert decision.reason is None
    else:
        assert decision.reason is not None and decision.reason.startswith(reason)
    assert msgspec.json.decode(msgspec.json.encode(decision))["chosenBy"] == "user-7"
    with pytest.raises(ValueError, match="not one of the decision's variants"):
        chosen_by_hand(measured, "C", "user-7")


@pytest.mark.parametrize(
    ("counts", "message"),
    [
        (_counts((10, 1)), "at least two variants"),
        ([VariantCounts(variant_id="A", sent=1, successes=0)] * 2, "distinct"),
    ],
)
def test_bad_input_is_refused(counts: list[VariantCounts], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decide(counts, metric="open")


def test_successes_cannot_exceed_sends() -> None:
    with pytest.raises(ValueError, match="successes"):
        VariantCounts(variant_id="A", sent=10, successes=11)


# --- settings -----------------------------------------------------------------------------------


def _settings(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> CampaignSettings:
    config = tmp_path / "settings.toml"
    config.write_text(text, encoding="utf-8")
    return load_settings(path=config, environ=environ or {}).campaigns


def test_campaign_settings_default_and_decide_with_them(tmp_path: Path) -> None:
    settings = _settings(tmp_path, "")
    assert settings == CampaignSettings(
        ab_method="bayes", ab_threshold=0.95, ab_min_sample=100, ab_fallback="highest"
    )
    custom = _settings(
        tmp_path,
        '[campaigns]\nab_method = "ztest"\nab_threshold = 0.99\nab_min_sample = 500\nab_fallback = "none"\n',
        {"MAILRAY_CAMPAIGNS__AB_MIN_SAMPLE": "50"},
    )
    assert (custom.ab_method, custom.ab_threshold, custom.ab_min_sample, custom.ab_fallback) == (
        "ztest", 0.99, 50, "none",
    )  # fmt: skip
    decision = decide_with(custom, _counts((60, 10), (60, 12)), "click")
    assert (decision.method, decision.threshold, decision.min_sample, decision.winner) == (
        "ztest",
        0.99,
        50,
        None,
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[campaigns]\nab_threshold = 0.5\n", "settings: campaigns.ab_threshold (MAILRAY_CAMPAIGNS__AB_THRESHOLD): expected more than 0.5 and less than 1"),
        ("[campaigns]\nab_threshold = 1.0\n", "campaigns.ab_threshold"),
        ("[campaigns]\nab_min_sample = 0\n", "settings: campaigns.ab_min_sample (MAILRAY_CAMPAIGNS__AB_MIN_SAMPLE): expected at least 1, got 0"),
        ('[campaigns]\nab_method = "frequentist"\n', "expected one of 'bayes', 'ztest'"),
        ('[campaigns]\nab_fallback = "random"\n', "expected one of 'first', 'highest', 'none'"),
        ("[campaigns]\nab_threshold = \"high\"\n", "settings: campaigns.ab_threshold (MAILRAY_CAMPAIGNS__AB_THRESHOLD): expected float"),
    ],
)  # fmt: skip
def test_bad_campaign_settings_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        _settings(tmp_path, text)
    assert message in str(raised.value)
