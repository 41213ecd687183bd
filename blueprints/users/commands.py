"""`flask users ...`: the way in when sign-up is closed (SIGNUP_ENABLED=false)."""

from __future__ import annotations

import click
from pydantic import ValidationError

from appfactory.web.errors import ApiError
from blueprints.users import bp, store
from blueprints.users.schemas import NewUser


@bp.cli.command("create")
@click.option("--email", required=True, help="The new user's email.")
@click.option("--name", required=True, help="The new user's name.")
def create(email: str, name: str) -> None:
    """Create a user and print its first API key: it is shown this once."""
    try:
        fields = NewUser.model_validate({"email": email, "name": name}).model_dump()
        user, api_key = store.create(fields)
    except ValidationError as err:
        fault = err.errors(include_url=False)[0]
        raise click.ClickException(f"{fault['loc'][0]}: {fault['msg']}") from None
    except ApiError as err:
        raise click.ClickException(err.message) from None
    click.echo(api_key)
    click.echo(
        f"user {user['id']} created ({user['email']}); store its key now, it is not shown again", err=True
    )
