"""The OpenAPI 3.1 document, built from the app's rules and what its views declare."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeAlias, TypeVar

from flask import Flask, current_app
from pydantic import BaseModel
from werkzeug.routing import Rule

from tiketq.schemas import ErrorOut

REF_TEMPLATE = "#/components/schemas/{model}"
# A JSON schema in which a pydantic model stands for its $ref; or a model alone.
Schema: TypeAlias = type[BaseModel] | Mapping[str, Any]
# A status, what its body looks like, and what it means.
Answer: TypeAlias = tuple[int, Schema, str]
# Who must present an API key: nobody; every caller when API_AUTH_REQUIRED is set ("create":
# unless API_ALLOW_ANONYMOUS_CREATE is set too); staff, always.
Auth = Literal["none", "caller", "create", "staff"]
Tag = Literal["payments", "webhooks", "health"]
F = TypeVar("F", bound=Callable[..., Any])
_Mode = Literal["validation", "serialization"]

_DECLARATION = "openapi_operation"
_UNDOCUMENTED_METHODS = {"HEAD", "OPTIONS"}

_TAGS: dict[Tag, str] = {
    "payments": "The JSON API for the gateway and services",
    "webhooks": "Midtrans's notification URL",
    "health": "Health checks",
}

_ERRORS: dict[int, str] = {
    400: "The body, its JSON, a header or the order is invalid; `errors` says which field",
    401: "No valid API key (Authorization: Bearer <key>, or X-API-Key); staff key for staff",
    404: "No such payment",
    409: (
        "The payment's state does not allow this; or the order has another live payment, "
        "opened by another request (a caller without a key learns nothing of it), or "
        "another amount"
    ),
    413: "The body is larger than MAX_CONTENT_LENGTH",
    415: "Content-Type is not application/json",
    422: "The Idempotency-Key was used before with a different body",
    502: "Midtrans refused the request",
    503: "Midtrans or the database is unavailable; retry after Retry-After seconds",
    504: "Midtrans did not answer in time; retrying is safe",
}


@dataclass(frozen=True)
class Link:
    """An operation a caller can go on to, with a field of this answer as its parameter."""

    operation_id: str
    parameter: str
    body_field: str


@dataclass(frozen=True)
class Alias:
    """A second rule of the same view: its own operationId, and why the second path exists."""

    rule: str
    operation_id: str
    note: str


@dataclass(frozen=True)
class Operation:
    """Decorator: what a view answers; its method and path are its Flask rules'."""

    # Explicit, so that renaming a function cannot rename what generated clients call.
    operation_id: str
    tag: Tag
    success: Answer
    errors: tuple[int, ...] = ()
    # Answers other than the error body, such as the webhook's refusals that Midtrans retries.
    refusals: tuple[Answer, ...] = ()
    links: Mapping[str, Link] = field(default_factory=dict)
    body: Schema | None = None
    body_required: bool = True
    example: Mapping[str, Any] | None = None
    # Looked up by the names in the rule, so one mapping may serve a whole blueprint.
    path_parameters: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # The pattern the view itself checks the header with, so the two cannot disagree.
    idempotency_key: re.Pattern[str] | None = None
    auth: Auth = "none"
    alias: Alias | None = None
    # None: the first line of the view's docstring, so that the two are written once.
    summary: str | None = None

    def __call__(self, view: F) -> F:
        """Store the declaration on the view, where the document's builder reads it."""
        summary = self.summary or (view.__doc__ or "").strip().splitlines()[0].rstrip(".")
        setattr(view, _DECLARATION, replace(self, summary=summary))
        return view


def declaration(view: Callable[..., Any]) -> Operation | None:
    """The operation a view declares, or None for a view the document leaves out."""
    declared = getattr(view, _DECLARATION, None)
    return declared if isinstance(declared, Operation) else None


def openapi_path(rule: str) -> str:
    """A Flask rule in OpenAPI's template syntax: <payment_id> becomes {payment_id}."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


class _Builder:
    """Operations for one auth setting, and the models their schemas name."""

    def __init__(self, *, callers_need_keys: bool, anonymous_create: bool) -> None:
        self.callers_need_keys = callers_need_keys
        self.anonymous_create = anonymous_create
        # Request models are described as pydantic validates them, responses as it writes them.
        self.models: dict[type[BaseModel], _Mode] = {}

    def schema(self, schema: Any, mode: _Mode) -> Any:
        """A fresh copy of the schema with each model replaced by its $ref."""
        if isinstance(schema, type) and issubclass(schema, BaseModel):
            if self.models.setdefault(schema, mode) != mode:
                raise ValueError(f"{schema.__name__} would need a request and a response schema")
            return {"$ref": REF_TEMPLATE.format(model=schema.__name__)}
        if isinstance(schema, Mapping):
            return {key: self.schema(value, mode) for key, value in schema.items()}
        if isinstance(schema, list | tuple):
            return [self.schema(item, mode) for item in schema]
        return schema

    def answer(self, description: str, schema: Schema) -> dict[str, Any]:
        """A response with a JSON body."""
        content = {"application/json": {"schema": self.schema(schema, "serialization")}}
        return {"description": description, "content": content}

    def key_required(self, auth: Auth) -> bool:
        """Whether this deployment refuses the operation without a key."""
        if auth == "create":
            return self.callers_need_keys and not self.anonymous_create
        return auth == "staff" or (auth == "caller" and self.callers_need_keys)

    def responses(self, declared: Operation, *, key_required: bool) -> dict[str, Any]:
        """The operation's answers by status."""
        status, schema, description = declared.success
        answers = {status: self.answer(description, schema)}
        if declared.links:
            answers[status]["links"] = {
                name: {
                    "operationId": link.operation_id,
                    "parameters": {link.parameter: f"$response.body#/{link.body_field}"},
                }
                for name, link in declared.links.items()
            }
        for code in {*declared.errors, 401} if key_required else declared.errors:
            answers[code] = self.answer(_ERRORS[code], ErrorOut)
            if code == 503:
                answers[code]["headers"] = {
                    "Retry-After": {"description": "seconds", "schema": {"type": "integer"}}
                }
        for code, schema, description in declared.refusals:
            answers[code] = self.answer(description, schema)
        return {str(code): answers[code] for code in sorted(answers)}

    def parameters(self, declared: Operation, rule: Rule) -> list[dict[str, Any]]:
        """The rule's path parameters, then the Idempotency-Key header if the view takes one."""
        parameters = []
        for name in re.findall(r"{([^}]+)}", openapi_path(rule.rule)):
            if name not in declared.path_parameters:
                raise ValueError(
                    f"{rule.rule} has <{name}>, which {rule.endpoint} does not describe"
                )
            schema = self.schema(declared.path_parameters[name], "validation")
            parameters.append({"name": name, "in": "path", "required": True, "schema": schema})
        if declared.idempotency_key is not None:
            parameters.append(
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "description": (
                        "a retry with the same key and body gets the first answer, "
                        "not a second effect"
                    ),
                    "schema": {"type": "string", "pattern": declared.idempotency_key.pattern},
                }
            )
        return parameters

    def operation(
        self, declared: Operation, rule: Rule, operation_id: str, summary: str
    ) -> dict[str, Any]:
        """The OpenAPI operation one rule of a view is."""
        key_required = self.key_required(declared.auth)
        operation: dict[str, Any] = {
            "operationId": operation_id,
            "summary": summary,
            "tags": [declared.tag],
            "responses": self.responses(declared, key_required=key_required),
        }
        parameters = self.parameters(declared, rule)
        if parameters:
            operation["parameters"] = parameters
        if declared.body is not None:
            media: dict[str, Any] = {"schema": self.schema(declared.body, "validation")}
            if declared.example is not None:
                media["example"] = self.schema(declared.example, "validation")
            operation["requestBody"] = {
                "required": declared.body_required,
                "content": {"application/json": media},
            }
        if key_required:
            operation["security"] = [{"bearerAuth": []}, {"apiKeyAuth": []}]
        return operation

    def component_schemas(self) -> dict[str, Any]:
        """Every named model's JSON schema, with the models it nests, keyed by model name."""
        schemas: dict[str, Any] = {}
        for model, mode in self.models.items():
            schema = model.model_json_schema(ref_template=REF_TEMPLATE, mode=mode)
            for name, sub in {**schema.pop("$defs", {}), model.__name__: schema}.items():
                if schemas.setdefault(name, sub) != sub:
                    raise ValueError(f"two different JSON schemas are both named {name}")
        return schemas


def _method(rule: Rule) -> str:
    # One declaration is one operation, so a documented rule serves one method.
    (method,) = (rule.methods or set()) - _UNDOCUMENTED_METHODS
    return method


def _named_rules(declared: Operation, rules: list[Rule]) -> Iterator[tuple[Rule, str, str]]:
    """Each rule of one view with its operationId and summary."""
    aliased = [rule for rule in rules if declared.alias and rule.rule == declared.alias.rule]
    main = [rule for rule in rules if rule not in aliased]
    if len(main) != 1 or (declared.alias is not None and len(aliased) != 1):
        raise ValueError(
            f"the rules {[rule.rule for rule in rules]} of {declared.operation_id} "
            f"do not fit its declared alias, {declared.alias}"
        )
    # Always set once decorated (__call__ falls back to the docstring).
    yield main[0], declared.operation_id, declared.summary or ""
    if declared.alias is not None:
        summary = f"Same as {_method(main[0])} {openapi_path(main[0].rule)}, {declared.alias.note}"
        yield aliased[0], declared.alias.operation_id, summary


def document(
    app: Flask | None = None, *, callers_need_keys: bool = False, anonymous_create: bool = True
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the app (current_app by default) for these auth settings."""
    app = current_app if app is None else app
    builder = _Builder(callers_need_keys=callers_need_keys, anonymous_create=anonymous_create)
    views: dict[str, tuple[Operation, list[Rule]]] = {}
    for rule in app.url_map.iter_rules():
        declared = declaration(app.view_functions[rule.endpoint])
        if declared is not None:
            views.setdefault(rule.endpoint, (declared, []))[1].append(rule)
    paths: dict[str, dict[str, Any]] = {}
    for declared, rules in views.values():
        for rule, operation_id, summary in _named_rules(declared, rules):
            paths.setdefault(openapi_path(rule.rule), {})[_method(rule).lower()] = (
                builder.operation(declared, rule, operation_id, summary)
            )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "TiketQ Payments",
            "version": "1",
            "description": "Takes money for TiketQ orders through Midtrans Snap.",
        },
        "tags": [{"name": name, "description": about} for name, about in _TAGS.items()],
        "paths": paths,
        "components": {
            "schemas": builder.component_schemas(),
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "a caller key (API_KEYS) or a staff key (ADMIN_API_KEYS)",
                },
                "apiKeyAuth": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-API-Key",
                    "description": "the same keys, for callers that cannot set Authorization",
                },
            },
        },
    }
