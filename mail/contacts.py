"""Contacts: create or update one, list, and import many from CSV.

A contact is keyed by its workspace and lowercased address, so an import or an API call for an
address already known (from sync, say) updates that contact instead of adding a second one.
A CSV import takes every good row and reports each refused one with its row number and why:
a bad row loses nothing else. Columns: `email` (required), `firstName`/`first_name`,
`lastName`/`last_name`, `company`, `timeZone`/`time_zone` (an IANA name), `tags` (separated by
`;` or `|`); any other column becomes a custom attribute (text, as written; empty cells skipped).
"""

from __future__ import annotations

import csv
import io
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from psycopg.types.json import Jsonb

from mail.campaigns.validate import check_address
from mail.errors import NotFound, ValidationError
from models.campaigns import Contact, ContactInput, ImportReport, ImportRowError

Conn = Any

MAX_IMPORT_ROWS = 1_000_000
_COLUMNS = {
    "email": "email", "firstname": "first_name", "first_name": "first_name", "lastname": "last_name",
    "last_name": "last_name", "company": "company", "timezone": "time_zone", "time_zone": "time_zone",
    "tags": "tags",
}  # fmt: skip
_SELECT = (
    "SELECT c.id, c.email, c.first_name, c.last_name, c.company, c.time_zone, "
    "coalesce((SELECT array_agg(t.tag ORDER BY t.tag) FROM contact_tags t WHERE t.contact_id = c.id), '{}'), "
    "c.attributes, c.status, c.source, c.created_at FROM contacts c"
)


def check_contact(contact: ContactInput) -> ContactInput:
    check_address(contact.email, "email")
    if contact.time_zone:
        try:
            ZoneInfo(contact.time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValidationError(
                f"timeZone: unknown time zone {contact.time_zone!r}", field="timeZone"
            ) from None
    for tag in contact.tags:
        if not tag.strip() or len(tag) > 100:
            raise ValidationError(f"tags: tags are 1 to 100 characters, got {tag!r}", field="tags")
    for name in (contact.first_name, contact.last_name, contact.company):
        if name is not None and len(name) > 500:
            raise ValidationError("names and company are at most 500 characters", field="firstName")
    return contact


async def upsert_contact(
    conn: Conn, workspace_id: UUID, contact: ContactInput, *, source: str = "api"
) -> tuple[UUID, bool]:
    """Create the contact or update the one with its address; returns (id, created)."""
    check_contact(contact)
    cursor = await conn.execute(
        "INSERT INTO contacts (workspace_id, email, first_name, last_name, company, time_zone, attributes, source) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (workspace_id, lower(email)) DO UPDATE SET "
        "first_name = coalesce(EXCLUDED.first_name, contacts.first_name), "
        "last_name = coalesce(EXCLUDED.last_name, contacts.last_name), "
        "company = coalesce(EXCLUDED.company, contacts.company), "
        "time_zone = coalesce(EXCLUDED.time_zone, contacts.time_zone), "
        "attributes = contacts.attributes || EXCLUDED.attributes, updated_at = now() "
        "RETURNING id, xmax = 0",
        (workspace_id, contact.email.strip(), contact.first_name, contact.last_name, contact.company,
         contact.time_zone, Jsonb(contact.attributes), source),
    )  # fmt: skip
    contact_id, created = await cursor.fetchone()
    if contact.tags:
        await conn.execute(
            "INSERT INTO contact_tags (contact_id, workspace_id, tag) SELECT %s, %s, unnest(%s::text[]) "
            "ON CONFLICT DO NOTHING",
            (contact_id, workspace_id, sorted({tag.strip() for tag in contact.tags})),
        )
    return contact_id, bool(created)


async def get_contact(conn: Conn, workspace_id: UUID, contact_id: UUID) -> Contact:
    cursor = await conn.execute(
        _SELECT + " WHERE c.workspace_id = %s AND c.id = %s", (workspace_id, contact_id)
    )
    row = await cursor.fetchone()
    if row is None:
        raise NotFound(f"no contact {contact_id}")
    return _contact(row)


async def list_contacts(
    conn: Conn, workspace_id: UUID, *, tag: str | None, limit: int, offset: int
) -> list[Contact]:
    cursor = await conn.execute(
        _SELECT + " WHERE c.workspace_id = %s AND (%s::text IS NULL OR EXISTS "
        "(SELECT 1 FROM contact_tags t WHERE t.contact_id = c.id AND t.tag = %s)) "
        "ORDER BY c.created_at, c.id LIMIT %s OFFSET %s",
        (workspace_id, tag, tag, limit, offset),
    )
    return [_contact(row) for row in await cursor.fetchall()]


def _contact(row: tuple[Any, ...]) -> Contact:
    return Contact(
        id=row[0], email=row[1], first_name=row[2], last_name=row[3], company=row[4], time_zone=row[5],
        tags=list(row[6]), attributes=row[7], status=row[8], source=row[9], created_at=row[10],
    )  # fmt: skip


def parse_csv(text: str) -> tuple[list[tuple[int, ContactInput]], list[ImportRowError]]:
    """Rows as contacts (with their 1-based line numbers, the header being line 1) and errors."""
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    try:
        header = next(reader)
    except StopIteration:
        raise ValidationError("the CSV is empty: expected a header row with an email column") from None
    except csv.Error as error:
        raise ValidationError(f"the CSV cannot be read: {error}") from None
    keys = [_COLUMNS.get(name.strip().lower().replace(" ", ""), name.strip()) for name in header]
    if "email" not in keys:
        raise ValidationError(f"the CSV header has no email column: {header!r}")
    contacts: list[tuple[int, ContactInput]] = []
    errors: list[ImportRowError] = []
    try:
        for cells in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in cells):
                continue
            if len(contacts) + len(errors) >= MAX_IMPORT_ROWS:
                raise ValidationError(f"the CSV has more than {MAX_IMPORT_ROWS} rows; split it")
            if len(cells) != len(keys):
                errors.append(ImportRowError(row=line, error=f"expected {len(keys)} cells, got {len(cells)}"))
                continue
            contacts_or_error = _row(keys, cells)
            if isinstance(contacts_or_error, str):
                errors.append(ImportRowError(row=line, error=contacts_or_error))
            else:
                contacts.append((line, contacts_or_error))
    except csv.Error as error:
        errors.append(ImportRowError(row=reader.line_num, error=f"unreadable CSV from here on: {error}"))
    return contacts, errors


def _row(keys: list[str], cells: list[str]) -> ContactInput | str:
    known: dict[str, Any] = {}
    attributes: dict[str, str | int | float | bool] = {}
    for key, cell in zip(keys, cells, strict=True):
        value = cell.strip()
        if not value:
            continue
        if key == "tags":
            known["tags"] = [tag.strip() for tag in value.replace("|", ";").split(";") if tag.strip()]
        elif key in ("email", "first_name", "last_name", "company", "time_zone"):
            known[key] = value
        else:
            attributes[key] = value
    if "email" not in known:
        return "no email"
    try:
        return check_contact(ContactInput(**known, attributes=attributes))
    except ValidationError as error:
        return str(error)


async def import_csv(conn: Conn, workspace_id: UUID, text: str) -> ImportReport:
    contacts, errors = parse_csv(text)
    created = updated = 0
    for _, contact in contacts:
        _, was_created = await upsert_contact(conn, workspace_id, contact, source="import")
        created += was_created
        updated += not was_created
    return ImportReport(created=created, updated=updated, rejected=errors)
