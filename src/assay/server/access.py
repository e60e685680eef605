"""Who may do what: the caller (:class:`Principal`) and the access policy of every route.

The policy (``docs/design/server.md``, "Access control"):

- a route names a resource (``datasets``) and a function (``get``, ``edit``...); a caller whose
  grants allow that function on that resource for *no* account or entity gets 403 at once;
- for an existing entity, a grant must cover the entity's account or its id. A caller with
  no grant at all on the entity (any function) gets **404**, exactly as for an id that does
  not exist, so that ids of other accounts' entities cannot be probed; a caller who holds
  some grant on it but not this function gets **403**;
- queries are restricted to the accounts and entities the grants cover, in the query itself:
  entities of other accounts are never listed;
- a create request needs ``create`` for the request's ``account``, and every entity it refers
  to must be visible to the caller (``get``, or ``consume`` for a session): the platform
  resolves each id inside :func:`acting_as`, and one the caller may not use gets the answer of
  an id that names no entity, byte for byte (:mod:`assay.core.references`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from assay import errors
from assay.core import references
from assay.core.references import Viewer
from assay.core.tokens import Minter
from assay.schema.platform import AccessGrant, Resources

__all__ = [
    "USE_FUNCTIONS",
    "Principal",
    "Scope",
    "acting_as",
    "authorize",
    "entity_for",
    "reference_viewer",
    "require",
    "scoped_counts",
    "scoped_query",
]

SESSION_SUBJECT = "InferenceSession/"
ACCOUNT_SUBJECT = "Account/"


@dataclass(frozen=True)
class Scope:
    """The entities a caller's grants cover for one (resource, function)."""

    everything: bool
    """A grant covers every account (``"*"``)."""
    accounts: frozenset[str]
    """Accounts whose entities are covered."""
    entities: frozenset[str]
    """Ids of single entities that are covered."""


@dataclass(frozen=True)
class Principal:
    """The verified caller of a request: the claims of its token."""

    subject: str
    """Who the token was given to, ``<kind>/<id>`` (``Account/<name>``,
    ``InferenceSession/<id>``)."""
    token_id: str
    """The token's id (``jti``): what :meth:`RevocationList.revoke` takes."""
    grants: tuple[AccessGrant, ...]
    """What the token allows."""
    expires: int
    """When the token expires (epoch seconds)."""
    lineage: tuple[str, ...] = ()
    """Ids of the tokens that made this one, oldest first (``lineage`` claim): it is refused
    once any of them is revoked."""

    def minter(self) -> Minter:
        """This token as the maker of a new one (which never outlives, out-grants or survives
        the revocation of it)."""
        return Minter(self.token_id, self.expires, self.grants, self.lineage)

    @property
    def account(self) -> str | None:
        """For an account's token (``Account/<name>``), the account; None for a session
        token. What a create request that names no account is for (see
        :class:`~assay.server.routes.entities.DefaultAccountRoute`)."""
        if self.subject.startswith(ACCOUNT_SUBJECT):
            return self.subject[len(ACCOUNT_SUBJECT) :]
        return None

    @property
    def session_id(self) -> str | None:
        """For a session token, the session it was made for."""
        if self.subject.startswith(SESSION_SUBJECT):
            return self.subject[len(SESSION_SUBJECT) :]
        return None

    def allows(
        self,
        resource: str,
        function: str,
        *,
        account: str | None = None,
        entity_id: str | None = None,
    ) -> bool:
        """True if a grant allows ``function`` on ``resource`` for the entity (or, with
        neither ``account`` nor ``entity_id``, for anything at all)."""
        return any(g.allows(resource, function, account, entity_id) for g in self.grants)

    def covers(self, resource: str, account: str, entity_id: str) -> bool:
        """True if any grant, whatever its functions, applies to this entity."""
        for grant in self.grants:
            resources = {str(r) for r in grant.resources}
            if "*" not in resources and resource not in resources:
                continue
            if "*" in grant.accounts or account in grant.accounts:
                return True
            if "*" in grant.entities or entity_id in grant.entities:
                return True
        return False

    def scope(self, resource: str, function: str) -> Scope:
        """What the grants that allow ``function`` on ``resource`` cover."""
        accounts: set[str] = set()
        entities: set[str] = set()
        everything = False
        for grant in self.grants:
            resources = {str(r) for r in grant.resources}
            functions = {str(f) for f in grant.functions}
            if ("*" not in resources and resource not in resources) or (
                "*" not in functions and function not in functions
            ):
                continue
            if "*" in grant.accounts or "*" in grant.entities:
                everything = True
            accounts.update(grant.accounts)
            entities.update(grant.entities)
        return Scope(everything, frozenset(accounts), frozenset(entities))


def _denied(principal: Principal, function: str, what: str) -> errors.PermissionDeniedError:
    return errors.PermissionDeniedError(
        f"this token (for {principal.subject}) does not allow {function!r} on {what}; ask for a "
        f"token with a grant for it (e.g. assay token create --grant <resource>:{function})"
    )


def require(principal: Principal, resource: str, function: str) -> None:
    """403 unless some grant allows ``function`` on ``resource`` for something."""
    if not principal.allows(resource, function):
        raise _denied(principal, function, resource)


def authorize(
    principal: Principal,
    resource: str,
    functions: str | Sequence[str],
    *,
    kind: str,
    account: str,
    entity_id: str,
) -> None:
    """Allow the call if a grant allows one of ``functions`` on this entity; otherwise 403
    when the caller can see the entity at all, 404 (as for a missing entity) when not."""
    wanted = (functions,) if isinstance(functions, str) else tuple(functions)
    for function in wanted:
        if principal.allows(resource, function, account=account, entity_id=entity_id):
            return
    if principal.covers(resource, account, entity_id):
        raise _denied(principal, wanted[0], f"{kind} {entity_id}")
    raise errors.NotFoundError.entity(kind, entity_id)


def entity_for(
    principal: Principal, group: Any, resource: str, functions: str | Sequence[str], id: str
) -> Any:
    """The entity ``id`` of ``group``, if the caller may call one of ``functions`` on it.

    A caller whose grants allow none of the functions on ``resource`` at all gets 403 before
    anything is looked up (so the answer says nothing about the id); then :func:`authorize`.
    """
    wanted = (functions,) if isinstance(functions, str) else tuple(functions)
    if not any(principal.allows(resource, function) for function in wanted):
        raise _denied(principal, wanted[0], resource)
    entity = group.require(id)
    authorize(principal, resource, wanted, kind=group.kind, account=entity.account, entity_id=id)
    return entity


# -- queries -------------------------------------------------------------------------------------


def _as_list(value: Any) -> list[str] | None:
    if value is None:
        return None
    return [str(v) for v in value] if isinstance(value, list | tuple) else [str(value)]


def _sort_key(entity: Any) -> tuple[Any, str]:
    return (entity.creationTime, entity.id)


def scoped_query(group: Any, filters: Mapping[str, Any], scope: Scope) -> list[Any]:
    """``group.query(**filters)`` restricted to ``scope``: one query for the covered accounts
    and one for the covered entity ids, merged in the requested order and cut to ``limit``.
    Paging with ``after`` works across both, since both are ordered the same way."""
    if scope.everything:
        return list(group.query(**filters))
    wanted_accounts = _as_list(filters.get("account"))
    wanted_ids = _as_list(filters.get("id"))
    accounts = sorted(
        scope.accounts if wanted_accounts is None else scope.accounts & set(wanted_accounts)
    )
    entity_ids = sorted(scope.entities if wanted_ids is None else scope.entities & set(wanted_ids))
    found: dict[str, Any] = {}
    if accounts:
        for entity in group.query(**{**filters, "account": accounts}):
            found[entity.id] = entity
    if entity_ids:
        for entity in group.query(**{**filters, "id": entity_ids}):
            found[entity.id] = entity
    descending = filters.get("order") == "descending"
    results = sorted(found.values(), key=_sort_key, reverse=descending)
    limit = filters.get("limit")
    return results[:limit] if isinstance(limit, int) else results


def scoped_counts(
    store: Any, scopes: Mapping[str, Scope], by: Sequence[str] = ("kind", "status")
) -> dict[tuple[str | None, ...], int]:
    """How many entities of each kind in ``scopes`` (kind → the :class:`Scope` the caller's
    grants cover for it) the caller may see, per distinct value of the columns ``by``: the
    counts of :func:`scoped_query`'s entities, by grouped counts in the store (no documents
    read but those of single-entity grants). Kinds with the same scope share one count."""
    kinds_of: dict[Scope, list[str]] = {}
    for kind, scope in scopes.items():
        kinds_of.setdefault(scope, []).append(kind)
    totals: dict[tuple[str | None, ...], int] = {}

    def add(key: tuple[str | None, ...], n: int) -> None:
        totals[key] = totals.get(key, 0) + n

    for scope, kinds in kinds_of.items():
        if scope.everything:
            for key, n in store.count_by(by, kind=kinds).items():
                add(key, n)
            continue
        if scope.accounts:
            for key, n in store.count_by(by, kind=kinds, account=sorted(scope.accounts)).items():
                add(key, n)
        if scope.entities:  # single entities outside the covered accounts (not counted yet)
            for doc in store.query(kind=kinds, ids=sorted(scope.entities)):
                if doc.get("account") not in scope.accounts:
                    add(tuple(doc.get(column) for column in by), 1)
    return totals


# -- references ----------------------------------------------------------------------------------


#: What a caller needs on an entity to refer to it in a request: ``get`` (``consume`` for a
#: session it may call).
USE_FUNCTIONS = ("get", "consume")


def reference_viewer(principal: Principal) -> Viewer:
    """Who may refer to what, for :mod:`assay.core.references`: an entity the caller's grants
    allow it to ``get`` (or ``consume``). One its grants do not cover at all looks as if it did
    not exist; one they cover without these functions is a 403, as for a direct call."""

    def may_use(kind: str, account: str, id: str) -> bool:
        try:
            resource = Resources.for_kind(kind).value
        except errors.ValidationError:
            return False  # not an entity kind: nothing a request may refer to
        try:
            authorize(principal, resource, USE_FUNCTIONS, kind=kind, account=account, entity_id=id)
        except errors.NotFoundError:
            return False
        return True

    return may_use


def acting_as(principal: Principal) -> AbstractContextManager[None]:
    """Run the platform call of a request that names ids inside this: every id it names is
    resolved with the caller's rights (:func:`assay.core.references.acting_for`), and one the
    caller may not use is answered exactly as a missing one."""
    return references.acting_for(reference_viewer(principal))
