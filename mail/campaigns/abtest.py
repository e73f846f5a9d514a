"""A/B test decisions: which variant wins on opens or clicks, and how sure that is.

Input: per variant, the recipients it was sent to and how many of them opened (or clicked).
Output: an `AbDecision` with the winner (or None), every variant's counts, rate, probability to
be best and p-value, and, when nothing was significant, why and which fallback chose.

Two methods (`[campaigns] ab_method`):

- `bayes`: each variant's rate has the posterior Beta(1 + successes, 1 + failures) (a uniform
  prior). A variant wins when the probability that its rate is the highest reaches `threshold`.
  Two variants: exact (Evan Miller's closed form: a sum over the smaller count, in log space).
  More: Monte Carlo, `draws` samples per variant from `random.Random(seed)` (stdlib: no numpy),
  so the same counts always give the same numbers. Between two variants with equal true rates
  P(best) >= 0.95 happens for one or the other about 10% of the time; 0.975 matches the z-test.
- `ztest`: the leader (the highest observed rate; the first of equals) against every other
  variant, each a two-sided pooled two-proportion z-test, the p-values corrected with Holm's
  step-down method over those k - 1 comparisons. The leader wins when every corrected p-value is
  below 1 - threshold. With two variants that is the plain test at alpha = 1 - threshold.

Both: no decision before every variant has been sent to `min_sample` recipients: small samples
never decide, whatever their rates. The decision is made once, when the test's wait is over (a
test peeked at repeatedly would need a sequential method). Without a winner `fallback` picks:
`highest` (the observed leader: with no proof of a difference it is still the better bet),
`first` (the first variant, the control) or `none`. A person may choose the winner instead
(`chosen_by_hand`): the decision then keeps the method's statistics and says who chose.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Literal

import msgspec

from models.settings import CampaignSettings

Metric = Literal["open", "click"]
Method = Literal["bayes", "ztest"]
Fallback = Literal["first", "highest", "none"]

MONTE_CARLO_DRAWS = 20_000
MONTE_CARLO_SEED = 20_240_601
# Past this many successes in both variants the exact sum gets long; the posteriors are then
# normal to far better than the threshold needs.
EXACT_LIMIT = 200_000


class VariantCounts(msgspec.Struct, frozen=True, kw_only=True):
    """One variant's sends and successes (unique opens or clicks, as the metric says)."""

    variant_id: str
    sent: int
    successes: int

    def __post_init__(self) -> None:
        if not 0 <= self.successes <= self.sent:
            raise ValueError(
                f"variant {self.variant_id}: successes must be from 0 to sent ({self.sent}), got {self.successes}"
            )


class VariantResult(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    variant_id: str
    sent: int
    successes: int
    rate: float
    # Posterior probability that this variant's rate is the highest.
    probability_best: float
    # The z-test's Holm-corrected p-value against the leader; None for the leader itself.
    p_value: float | None


class AbDecision(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    winner: str | None
    # Whether the winner is the method's (True) or the fallback's (False).
    significant: bool
    metric: Metric
    method: Method
    threshold: float
    min_sample: int
    variants: tuple[VariantResult, ...]
    # Why the method chose no winner, and the fallback that chose instead.
    reason: str | None = None
    fallback: Fallback | None = None
    # The user who chose the winner by hand (chosen_by_hand); None when the method or fallback did.
    chosen_by: str | None = None


def decide_with(settings: CampaignSettings, counts: Sequence[VariantCounts], metric: Metric) -> AbDecision:
    """`decide` with the `[campaigns]` settings."""
    return decide(
        counts,
        metric=metric,
        method=settings.ab_method,
        threshold=settings.ab_threshold,
        min_sample=settings.ab_min_sample,
        fallback=settings.ab_fallback,
    )


def decide(
    counts: Sequence[VariantCounts],
    *,
    metric: Metric,
    method: Method = "bayes",
    threshold: float = 0.95,
    min_sample: int = 100,
    fallback: Fallback = "highest",
    draws: int = MONTE_CARLO_DRAWS,
    seed: int = MONTE_CARLO_SEED,
) -> AbDecision:
    """The winner among `counts` (in the campaign's variant order) by `method`, else `fallback`'s."""
    if len(counts) < 2:
        raise ValueError(f"an A/B decision needs at least two variants, got {len(counts)}")
    if len({count.variant_id for count in counts}) != len(counts):
        raise ValueError("variant ids must be distinct")
    if not 0.5 < threshold < 1:
        raise ValueError(f"threshold must be more than 0.5 and less than 1, got {threshold}")

    rates = [count.successes / count.sent if count.sent else 0.0 for count in counts]
    leader = max(range(len(counts)), key=lambda index: (rates[index], -index))
    probabilities = probability_best(counts, draws=draws, seed=seed)
    p_values = _holm(
        {
            index: two_proportion_p_value(counts[leader], count)
            for index, count in enumerate(counts)
            if index != leader
        }
    )
    results = tuple(
        VariantResult(
            variant_id=count.variant_id,
            sent=count.sent,
            successes=count.successes,
            rate=rates[index],
            probability_best=probabilities[index],
            p_value=p_values.get(index),
        )
        for index, count in enumerate(counts)
    )

    winner: int | None = None
    short = [count for count in counts if count.sent < min_sample]
    if short:
        fewest = min(short, key=lambda count: count.sent)
        reason = f"too few sends: variant {fewest.variant_id} has {fewest.sent} of the {min_sample} needed"
    elif method == "bayes":
        best = max(range(len(counts)), key=lambda index: (probabilities[index], -index))
        if probabilities[best] >= threshold:
            winner = best
        reason = (
            f"no variant is best with probability {threshold:g} or more "
            f"(highest: {counts[best].variant_id}, {probabilities[best]:.3f})"
        )
    else:
        alpha = 1 - threshold
        weakest = max(p_values, key=lambda index: p_values[index])
        if p_values[weakest] < alpha:
            winner = leader
        reason = (
            f"{counts[leader].variant_id} leads, but not significantly against "
            f"{counts[weakest].variant_id} (Holm-corrected p = {p_values[weakest]:.3g}, "
            f"needed below {alpha:.3g})"
        )
    significant = winner is not None
    if winner is not None:
        chosen: str | None = counts[winner].variant_id
    else:
        chosen = {"first": counts[0].variant_id, "highest": counts[leader].variant_id, "none": None}[fallback]
    return AbDecision(
        winner=chosen,
        significant=significant,
        metric=metric,
        method=method,
        threshold=threshold,
        min_sample=min_sample,
        variants=results,
        reason=None if significant else reason,
        fallback=None if significant else fallback,
    )


def chosen_by_hand(decision: AbDecision, variant_id: str, user_id: str) -> AbDecision:
    """`decision` (what the method says of the counts at the time) with a person's choice as the
    winner: significant only where the method found that same variant best, and otherwise the
    reason says what the method found."""
    if variant_id not in {result.variant_id for result in decision.variants}:
        raise ValueError(f"{variant_id} is not one of the decision's variants")
    agrees = decision.significant and decision.winner == variant_id
    if agrees:
        reason = None
    elif decision.significant:
        reason = f"chosen by hand over {decision.winner}, which the method found best"
    else:
        reason = f"chosen by hand; the method found no winner: {decision.reason}"
    return msgspec.structs.replace(
        decision, winner=variant_id, significant=agrees, reason=reason, fallback=None, chosen_by=user_id
    )


# --- the z-test ----------------------------------------------------------------------------------


def two_proportion_p_value(first: VariantCounts, second: VariantCounts) -> float:
    """The two-sided p-value of a pooled two-proportion z-test (1.0 where it cannot tell)."""
    if not first.sent or not second.sent:
        return 1.0
    pooled = (first.successes + second.successes) / (first.sent + second.sent)
    variance = pooled * (1 - pooled) * (1 / first.sent + 1 / second.sent)
    if variance <= 0:
        return 1.0  # both all-or-nothing alike: no difference to see
    z = (first.successes / first.sent - second.successes / second.sent) / math.sqrt(variance)
    return math.erfc(abs(z) / math.sqrt(2))


def _holm(p_values: dict[int, float]) -> dict[int, float]:
    """Holm's step-down adjusted p-values (monotone, at most 1), by the same keys."""
    ordered = sorted(p_values.items(), key=lambda item: item[1])
    count = len(ordered)
    adjusted: dict[int, float] = {}
    running = 0.0
    for rank, (key, p_value) in enumerate(ordered):
        running = max(running, min(1.0, (count - rank) * p_value))
        adjusted[key] = running
    return adjusted


# --- the probability to be best ------------------------------------------------------------------


def probability_best(
    counts: Sequence[VariantCounts], *, draws: int = MONTE_CARLO_DRAWS, seed: int = MONTE_CARLO_SEED
) -> list[float]:
    """Each variant's posterior probability of having the highest rate (they sum to 1)."""
    posteriors = [(1 + count.successes, 1 + count.sent - count.successes) for count in counts]
    if len(posteriors) == 2:
        (alpha_a, beta_a), (alpha_b, beta_b) = posteriors
        b_better = probability_greater(alpha_b, beta_b, alpha_a, beta_a)
        return [1 - b_better, b_better]
    rng = random.Random(seed)  # noqa: S311 - a seeded simulation, not a secret
    wins = [0] * len(posteriors)
    betavariate = rng.betavariate
    for _ in range(draws):
        samples = [betavariate(alpha, beta) for alpha, beta in posteriors]
        wins[samples.index(max(samples))] += 1
    return [won / draws for won in wins]


def probability_greater(alpha_b: int, beta_b: int, alpha_a: int, beta_a: int) -> float:
    """P(X_b > X_a) for independent X_b ~ Beta(alpha_b, beta_b), X_a ~ Beta(alpha_a, beta_a).

    Exact: sum over i < alpha_b of B(alpha_a + i, beta_a + beta_b) /
    ((beta_b + i) B(1 + i, beta_b) B(alpha_a, beta_a)), summed over the smaller alpha (by
    symmetry, P(X_b > X_a) = 1 - P(X_a > X_b)). Beyond EXACT_LIMIT, the normal approximation.
    """
    if min(alpha_a, alpha_b) > EXACT_LIMIT:
        return _normal_greater(alpha_b, beta_b, alpha_a, beta_a)
    if alpha_b > alpha_a:
        return 1.0 - probability_greater(alpha_a, beta_a, alpha_b, beta_b)
    log_beta_a = _log_beta(alpha_a, beta_a)
    total = 0.0
    for i in range(alpha_b):
        total += math.exp(
            _log_beta(alpha_a + i, beta_a + beta_b)
            - math.log(beta_b + i)
            - _log_beta(1 + i, beta_b)
            - log_beta_a
        )
    return min(1.0, max(0.0, total))


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def _normal_greater(alpha_b: int, beta_b: int, alpha_a: int, beta_a: int) -> float:
    def moments(alpha: int, beta: int) -> tuple[float, float]:
        total = alpha + beta
        return alpha / total, alpha * beta / (total * total * (total + 1))

    mean_b, var_b = moments(alpha_b, beta_b)
    mean_a, var_a = moments(alpha_a, beta_a)
    return 0.5 * math.erfc(-(mean_b - mean_a) / math.sqrt(2 * (var_a + var_b)))
