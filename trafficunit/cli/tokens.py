"""``trafficunit tokens create --role ROLE``: access tokens of the hazard ledger.

The token is printed once; the ledger stores only its hash. The ledger is the server's:
``--database-url`` (or ``TRAFFICUNIT_DATABASE_URL``), else ``ledger.sqlite`` in ``--data-dir``
(or ``TRAFFICUNIT_DATA_DIR``, default ``demo-output``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ..ledger import Ledger
from ._common import console, data_folder, err_console, user_errors, verb_group
from ._options import data_dir_option

tokens_app = verb_group("tokens", "Create, list and revoke access tokens of the hazard ledger.")

DatabaseOpt = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="sqlite:///path or postgresql://... (default: TRAFFICUNIT_DATABASE_URL, else "
        "ledger.sqlite in the data folder)",
    ),
]
DataDirOpt = Annotated[Path | None, data_dir_option("The server's data folder")]


def _url(database_url: str | None, data_dir: Path | None) -> str:
    url = database_url or os.environ.get("TRAFFICUNIT_DATABASE_URL")
    if url:
        return url
    from ..datafolder import FILES

    return f"sqlite:///{(data_folder(data_dir) / FILES['ledger']).resolve()}"


@contextlib.contextmanager
def _ledger(database_url: str | None, data_dir: Path | None) -> Iterator[Ledger]:
    """The ledger open for one command, closed after it; its errors as one line, exit 2."""
    with user_errors():
        ledger = Ledger.open(_url(database_url, data_dir))
        try:
            yield ledger
        finally:
            ledger.close()


@tokens_app.command("create")
def create(
    role: Annotated[str, typer.Option("--role", help="reporter, engineer, supervisor or admin")],
    label: Annotated[str | None, typer.Option("--label", help="Who holds the token")] = None,
    database_url: DatabaseOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Create a token of ROLE and print it (only its hash is stored)."""
    with _ledger(database_url, data_dir) as ledger:
        token_id, token = ledger.create_token(role, label=label, created_by="cli")
    typer.echo(token)
    err_console.print(f"token {token_id} ({role}) created; it is shown only once", highlight=False)


@tokens_app.command("list")
def list_cmd(database_url: DatabaseOpt = None, data_dir: DataDirOpt = None) -> None:
    """List tokens: id, role, label, created, revoked (never the tokens)."""
    with _ledger(database_url, data_dir) as ledger:
        rows = ledger.list_tokens()
    table = Table(title="ledger tokens", show_edge=False)
    for col in ("token_id", "role", "label", "created_at", "revoked_at"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            *(str(r[c] or "") for c in ("token_id", "role", "label", "created_at", "revoked_at"))
        )
    console.print(table)


@tokens_app.command("revoke")
def revoke(
    token_id: Annotated[str, typer.Argument(help="The token's id (T...)")],
    database_url: DatabaseOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Revoke a token by its id."""
    with _ledger(database_url, data_dir) as ledger:
        ledger.revoke_token(token_id)
    console.print(f"revoked {token_id}")
