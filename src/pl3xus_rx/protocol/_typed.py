"""Request and query models that name their response type. No I/O.

``class Boost(Request[BoostDone])`` says, once and where the type is declared, what a
``Boost`` is answered with; the client's ``sync.request(Boost(...))`` is then typed
``BoostDone``, the server's registration needs no ``.returns(...)``, and the registries read
the response from the model (:func:`response_of`). ``Query[R]`` does the same for query
parameters. A plain ``BaseModel`` still works as a request or query, with its response given
at registration, but its answers are untyped at the call site.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from pydantic import BaseModel

__all__ = ["Query", "Request", "declared_response", "response_of"]

R = TypeVar("R", bound=BaseModel)


class Request(BaseModel, Generic[R]):
    """A request model answered with an ``R``: ``class Boost(Request[BoostDone]): ...``.

    It is a pydantic model like any other (fields, validation, ``model_json_schema``); only
    its base names the response.
    """


class Query(BaseModel, Generic[R]):
    """Query parameters answered with an ``R``: ``class ListPrograms(Query[Programs])``."""


def response_of(model: type[BaseModel]) -> type[BaseModel] | None:
    """The response type ``model`` names through :class:`Request` or :class:`Query`
    (``None`` for a plain model, or a base left unparametrized)."""
    for base in model.__mro__:
        meta: Any = getattr(base, "__pydantic_generic_metadata__", None)
        if meta and meta.get("origin") in (Request, Query) and meta.get("args"):
            response = meta["args"][0]
            if isinstance(response, type) and issubclass(response, BaseModel):
                return response
            return None
    return None


def declared_response(
    model: type[BaseModel], given: type[BaseModel] | None, what: str
) -> type[BaseModel]:
    """The response of ``model`` at its registration: ``given``, or the one the model
    names.

    Raises:
        TypeError: neither, or both and they differ (the fix named).
    """
    named = response_of(model) if isinstance(model, type) else None
    if given is None:
        if named is None:
            base = "Request" if what == "request" else "Query"
            raise TypeError(
                f"{what} {getattr(model, '__name__', model)!r} has no response type: declare "
                f"it as class {getattr(model, '__name__', 'X')}({base}[Response]) or pass "
                "the response model"
            )
        return named
    if named is not None and given is not named:
        raise TypeError(
            f"{what} {model.__name__!r} names {named.__name__} as its response, "
            f"not {getattr(given, '__name__', given)}"
        )
    return given
