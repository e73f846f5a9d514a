"""Recipient filters as SQL over `contacts c`.

A filter becomes one boolean SQL expression with its parameters, so counting and materializing
the outbox run the same predicate in Postgres. Whatever the filters say, a campaign never goes
to a contact that is not active (unsubscribed, bounced, complained, invalid) or whose address is
in the workspace's suppressions.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from psycopg import sql
from psycopg.types.json import Jsonb

from models.campaigns import RecipientCount, RecipientFilter

Predicate = tuple[sql.Composable, list[Any]]

_ENGAGED = (
    "EXISTS (SELECT 1 FROM tracked_emails t JOIN tracking_events e ON e.email_id = t.id "
    "WHERE t.workspace_id = c.workspace_id AND lower(t.recipient_email) = lower(c.email) "
    "AND e.event_type = {kind} AND NOT e.is_machine "
    "AND e.occurred_at >= now() - make_interval(days => {days}))"
)
# Suppressed, or a status that rules the contact out: never sent to.
_INELIGIBLE = sql.SQL(
    "(c.status <> 'active' OR EXISTS (SELECT 1 FROM suppressions s "
    "WHERE s.workspace_id = c.workspace_id AND s.email = lower(c.email)))"
)


def predicate(recipient_filter: RecipientFilter) -> Predicate:
    """The filter as `(SQL, params)`; TRUE for an empty filter."""
    parts: list[sql.Composable] = []
    params: list[Any] = []
    if recipient_filter.tags:
        tags = sorted(set(recipient_filter.tags))
        if recipient_filter.tags_match == "any":
            parts.append(sql.SQL(
                "EXISTS (SELECT 1 FROM contact_tags g WHERE g.contact_id = c.id AND g.tag = ANY(%s))"
            ))  # fmt: skip
            params.append(tags)
        else:
            parts.append(sql.SQL(
                "(SELECT count(*) FROM contact_tags g WHERE g.contact_id = c.id AND g.tag = ANY(%s)) = %s"
            ))  # fmt: skip
            params += [tags, len(tags)]
    if recipient_filter.attributes:
        parts.append(sql.SQL("c.attributes @> %s"))
        params.append(Jsonb(recipient_filter.attributes))
    for kind, days in (
        ("open", recipient_filter.has_opened_in_last),
        ("click", recipient_filter.has_clicked_in_last),
    ):
        if days is not None:
            parts.append(sql.SQL(_ENGAGED).format(kind=sql.Literal(kind), days=sql.Placeholder()))
            params.append(days)
    if recipient_filter.created_after is not None:
        parts.append(sql.SQL("c.created_at >= %s"))
        params.append(recipient_filter.created_after)
    if recipient_filter.created_before is not None:
        parts.append(sql.SQL("c.created_at < %s"))
        params.append(recipient_filter.created_before)
    if not parts:
        return sql.SQL("TRUE"), []
    return sql.SQL("(") + sql.SQL(" AND ").join(parts) + sql.SQL(")"), params


def eligible(workspace_id: UUID, include: RecipientFilter, exclude: RecipientFilter | None) -> Predicate:
    """Contacts of the workspace the campaign goes to: matching, not excluded, not ruled out."""
    where, params = predicate(include)
    parts = [sql.SQL("c.workspace_id = %s"), where, sql.SQL("NOT ") + _INELIGIBLE]
    params = [workspace_id, *params]
    if exclude is not None:
        excluded, excluded_params = predicate(exclude)
        parts.append(sql.SQL("NOT ") + excluded)
        params += excluded_params
    return sql.SQL(" AND ").join(parts), params


async def count_recipients(
    conn: Any, workspace_id: UUID, include: RecipientFilter, exclude: RecipientFilter | None
) -> RecipientCount:
    """How many contacts match, how many of those the exclude filter or suppression removes."""
    where, params = predicate(include)
    excluded, excluded_params = predicate(exclude) if exclude is not None else (sql.SQL("FALSE"), [])
    query = sql.SQL(
        "SELECT count(*), count(*) FILTER (WHERE {excluded}), "
        "count(*) FILTER (WHERE NOT {excluded} AND {ineligible}) "
        "FROM contacts c WHERE c.workspace_id = %s AND {where}"
    ).format(excluded=excluded, ineligible=_INELIGIBLE, where=where)
    cursor = await conn.execute(query, [*excluded_params, *excluded_params, workspace_id, *params])
    matching, excluded_count, suppressed = await cursor.fetchone()
    return RecipientCount(
        matching=matching,
        excluded=excluded_count,
        suppressed=suppressed,
        eligible=matching - excluded_count - suppressed,
    )
