"""The text analyses with the real all-MiniLM-L6-v2 (loaded from the installed package, offline):
the choices a person would make. About 8 s on two cores, most of it loading the model: not slow."""

from __future__ import annotations

from datetime import datetime

from mail.ai.analysis import analyze_text
from mail.ai.embedding import Embed
from mail.ai.replies import suggest_replies
from mail.ai.summary import summarize
from models.ai_analysis import ReplyContext
from tests.ai_helpers import minilm_embed

OUTAGE = """Hi all,

I hope everyone had a good weekend.
Quick note on what happened this morning.
Between 08:10 and 09:25 UTC the sync service stopped processing new mail for every EU customer because an expired TLS certificate broke the connection to Gmail.
We renewed the certificate at 09:20, and the backlog of about 40,000 messages was processed by 09:25.
No mail was lost, and customers outside the EU were not affected.
To stop this happening again, certificate expiry is now monitored with alerts 30 days ahead.
The coffee machine on the third floor is also fixed, by the way.

Thanks,
Priya
"""

MEETING_REQUEST = """Hello,

A colleague at Brightlane recommended your CRM. We are evaluating tools for our dispatch team of
about 50 people. Would you have 30 minutes next Thursday afternoon for a demo? I could also do
Friday morning.

Best,
Daniel Okafor
"""


def test_the_summary_is_the_sentence_a_person_would_pick() -> None:
    result = summarize(OUTAGE, minilm_embed(), subject="Incident report: EU mail sync outage this morning")

    assert result.summary.startswith(
        "Between 08:10 and 09:25 UTC the sync service stopped processing new mail"
    )
    assert "coffee machine" not in " ".join(result.key_points)
    assert 3 <= len(result.key_points) <= 5


def test_a_meeting_request_gets_a_time_first() -> None:
    suggestions = suggest_replies(
        MEETING_REQUEST,
        "Demo request",
        "Daniel Okafor",
        ReplyContext(relationship="prospect"),
        minilm_embed(),
    )

    assert suggestions[0].type == "schedule"
    assert suggestions[0].text.startswith("Hello Daniel,")
    assert {suggestion.type for suggestion in suggestions} == {"schedule", "positive", "question"}
    assert suggestions[0].confidence > 0.5


def test_the_whole_analysis_of_a_meeting_request() -> None:
    analysis = analyze_text(
        "Demo request",
        MEETING_REQUEST,
        "Daniel Okafor",
        "d.okafor@brightlane-logistics.com",
        embed=minilm_embed(),
        reference_date=datetime(2025, 6, 2, 9, 0),
    )

    assert analysis.entities.people[0] == "Daniel Okafor"
    assert "Brightlane Logistics" in analysis.entities.companies
    assert analysis.questions == ["Would you have 30 minutes next Thursday afternoon for a demo?"]
    assert "demo" in analysis.summary
    assert analysis.suggested_responses[0].type == "schedule"


def test_the_production_encoder_is_an_embed_function() -> None:
    from mail.ai.encoder import Encoder

    embed: Embed = Encoder(device="cpu").encode
    result = summarize(OUTAGE, embed, subject="Incident report: EU mail sync outage this morning")

    assert result == summarize(
        OUTAGE, minilm_embed(), subject="Incident report: EU mail sync outage this morning"
    )
