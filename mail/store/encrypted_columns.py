"""Every column that holds envelope ciphertext, for `mailray keys rotate`.

Writers encrypt with `column_context(table, column, key values)` of the row's key columns
listed here, so a value only decrypts in its own row and column.
"""

from __future__ import annotations

from mail.key_rotation import EncryptedColumn

ENCRYPTED_COLUMNS: tuple[EncryptedColumn, ...] = (
    EncryptedColumn(table="email_accounts", key_columns=("id",), column="access_token_enc"),
    EncryptedColumn(table="email_accounts", key_columns=("id",), column="refresh_token_enc"),
    EncryptedColumn(table="emails", key_columns=("id",), column="body_html_enc"),
    EncryptedColumn(table="emails", key_columns=("id",), column="body_text_enc"),
    EncryptedColumn(table="emails", key_columns=("id",), column="raw_enc"),
    EncryptedColumn(table="emails", key_columns=("id",), column="ai_analysis_enc"),
    EncryptedColumn(table="attachments", key_columns=("id",), column="content_enc"),
)
