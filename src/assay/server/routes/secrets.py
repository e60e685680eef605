"""The secrets of an account: credentials its ``http``/``openai`` services use
(``{"credential": {"secret": name}}``), kept out of entities (:mod:`assay.core.secrets`).

=======  ==================  ===================================  ===========================
Method   Path                Function                             Answer
=======  ==================  ===================================  ===========================
GET      /secrets            create or edit (inferenceservices)   the account's secret names
PUT      /secrets/{name}     create or edit (inferenceservices)   the account and the name
DELETE   /secrets/{name}     create or edit (inferenceservices)   204 (404: no such secret)
=======  ==================  ===================================  ===========================

``?account=`` names the account (default: the token's own account). A token may manage the
secrets of an account where it may create or edit InferenceServices — that is, where it could
make a service that uses them anyway. Values are written, never read back; a service uses
the secrets of its own account only, so another account's secret names are of no use.

(No ``from __future__ import annotations``: FastAPI reads the route's annotations.)
"""

from typing import Annotated

from fastapi import APIRouter, Body, Path, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from assay import errors
from assay.core.secrets import AccountSecrets, check_name
from assay.server.access import Principal
from assay.server.state import Caller, State, json_response

__all__ = ["SecretNames", "SecretValue", "add_secret_routes"]

R = "secrets"
#: The grants that let a token manage an account's secrets.
RESOURCE, FUNCTIONS = "inferenceservices", ("create", "edit")
ACCOUNT_PREFIX = "Account/"

SECRET_NAME = Annotated[
    str,
    Path(
        description="The secret's name: letters, digits, '_', '.' or '-' (up to 128).",
        max_length=128,
    ),
]
ACCOUNT = Annotated[
    str | None,
    Query(description="The account whose secrets these are (default: the token's account)."),
]


class SecretValue(BaseModel):
    """The body of ``PUT /secrets/{name}``."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    value: str = Field(min_length=1)
    """The secret's value (a credential); never returned by the API."""


class SecretNames(BaseModel):
    """The secrets of an account (their names only)."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    account: str
    """The account."""
    names: list[str]
    """The names of its secrets, sorted."""


def _secrets(principal: Principal, state: State, account: str | None) -> AccountSecrets:
    """The secrets of ``account`` (default: the caller's), if the caller may manage them."""
    if account is None:
        if not principal.subject.startswith(ACCOUNT_PREFIX):
            raise errors.ValidationError(
                f"this token is for {principal.subject}, not an account: name the account "
                "whose secrets these are with ?account=NAME",
                field="account",
            )
        account = principal.subject[len(ACCOUNT_PREFIX) :]
    if not any(principal.allows(RESOURCE, f, account=account) for f in FUNCTIONS):
        raise errors.PermissionDeniedError(
            f"this token (for {principal.subject}) may not manage the secrets of account "
            f"{account!r}: that needs a grant of create or edit on inferenceservices for the "
            "account (e.g. assay token create --account NAME)"
        )
    store = state.core.secrets
    if store is None:
        raise errors.PlatformError("this server keeps no secrets (its core has no secrets file)")
    return store.account(account)


def add_secret_routes(router: APIRouter) -> None:
    """Add the secrets routes to ``router``."""

    def list_secrets(principal: Caller, state: State, account: ACCOUNT = None) -> Response:
        secrets = _secrets(principal, state, account)
        return json_response(
            SecretNames(account=secrets.account, names=secrets.names()).model_dump()
        )

    def set_secret(
        name: SECRET_NAME,
        body: Annotated[SecretValue, Body()],
        principal: Caller,
        state: State,
        account: ACCOUNT = None,
    ) -> Response:
        secrets = _secrets(principal, state, account)
        secrets.set(check_name(name), body.value)
        return json_response({"account": secrets.account, "name": name})

    def delete_secret(
        name: SECRET_NAME, principal: Caller, state: State, account: ACCOUNT = None
    ) -> Response:
        secrets = _secrets(principal, state, account)
        if not secrets.delete(check_name(name)):
            raise errors.NotFoundError(
                f"account {secrets.account!r} has no secret {name!r} (GET /v0/secrets lists "
                "its secrets)",
                kind="Secret",
                id=name,
            )
        return Response(status_code=204)

    router.add_api_route(
        f"/{R}",
        list_secrets,
        methods=["GET"],
        operation_id=f"{R}_list",
        summary="Secrets list",
        description="The names of the account's secrets (never their values). Needs create "
        "or edit on inferenceservices for the account.",
        tags=[R],
        responses={200: {"model": SecretNames, "description": "The account's secret names."}},
    )
    router.add_api_route(
        f"/{R}/{{name}}",
        set_secret,
        methods=["PUT"],
        operation_id=f"{R}_set",
        summary="Secret set",
        description="Store (or replace) a secret of the account; its services use it with "
        '`{"credential": {"secret": name}}`. Needs create or edit on inferenceservices for '
        "the account.",
        tags=[R],
        responses={200: {"description": "The account and the secret's name."}},
    )
    router.add_api_route(
        f"/{R}/{{name}}",
        delete_secret,
        methods=["DELETE"],
        operation_id=f"{R}_delete",
        summary="Secret delete",
        description="Forget a secret of the account. Needs create or edit on "
        "inferenceservices for the account.",
        tags=[R],
        status_code=204,
        responses={204: {"description": "Deleted."}},
    )
