"""The OpenAPI document, the Swagger UI page, and a contract fuzz run of the API against them."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from flask import Blueprint, Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import response_schema_conformance

import midtrans_simulator as simulator
from tests.support.config import SERVER_KEY, app_config
from tests.support.servers import serve_in_thread
from tiketq import api, auth, config, create_app, gateway, health, openapi, webhooks
from tiketq.openapi import REF_TEMPLATE, Alias, Operation, declaration, openapi_path
from tiketq.schemas import CancelRequest, PaymentCreate, RefundCreate

STAFF_KEY = "staff-key-for-the-fuzzer"
# Blueprints whose every route the document describes.
DOCUMENTED_BLUEPRINTS = {"api", "webhooks", "health"}
UNDOCUMENTED_METHODS = {"HEAD", "OPTIONS"}


class _Assets(HTMLParser):
    """The scripts and stylesheets a page loads, and any inline script it carries."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_scripts: list[str] = []
        self._in_inline_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        url = dict(attrs).get("src" if tag == "script" else "href")
        if url and tag in ("script", "link"):
            self.urls.append(url)
        elif tag == "script":
            self._in_inline_script = True
            self.inline_scripts.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_inline_script = False

    def handle_data(self, data: str) -> None:
        if self._in_inline_script:
            self.inline_scripts[-1] += data


def spec(client: FlaskClient) -> dict[str, Any]:
    """The document the app serves."""
    response = client.get("/openapi.json")
    assert response.status_code == 200
    return response.get_json()


@pytest.fixture
def staff_key(app: Flask, monkeypatch: pytest.MonkeyPatch) -> str:
    """A staff key the app accepts for this test only."""
    monkeypatch.setitem(app.extensions, auth.EXTENSION_KEY, app.extensions[auth.EXTENSION_KEY])
    monkeypatch.setitem(app.config, "ADMIN_API_KEYS", [STAFF_KEY])
    auth.init_app(app)
    return STAFF_KEY


@pytest.fixture
def own_simulator(app: Flask, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    """A simulator for this test alone, since the shared one remembers rolled-back order ids.

    Fuzzed order ids repeat across tests ("0", the examples); the shared simulator would
    answer "order_id has already been taken" for a payment this test's database never saw.
    """
    state = str(tmp_path / "simulator.sqlite3")
    url, server = serve_in_thread(simulator.create_app(server_key=SERVER_KEY, state_path=state))
    monkeypatch.setitem(
        app.extensions, gateway.EXTENSION_KEY, app.extensions[gateway.EXTENSION_KEY]
    )
    monkeypatch.setitem(app.config, "MIDTRANS_BASE_URL", url)
    gateway.init_app(app)
    yield url
    server.shutdown()


def test_openapi_json_is_a_valid_openapi_3_1_document(app, client):
    document = spec(client)

    validate(document)
    assert document["openapi"].startswith("3.1.")
    assert document == openapi.document(app)


@pytest.mark.parametrize("model", [PaymentCreate, CancelRequest, RefundCreate])
def test_request_schemas_in_the_spec_are_the_ones_pydantic_validates_with(client, model):
    expected = model.model_json_schema(ref_template=REF_TEMPLATE)
    nested = expected.pop("$defs", {})
    schemas = spec(client)["components"]["schemas"]

    assert schemas[model.__name__] == expected
    for name, schema in nested.items():
        assert schemas[name] == schema


def test_every_route_of_the_api_webhooks_and_health_checks_is_in_the_spec(app, client):
    served = {
        (method, openapi_path(rule.rule))
        for rule in app.url_map.iter_rules()
        if rule.endpoint.split(".")[0] in DOCUMENTED_BLUEPRINTS or rule.rule.startswith("/payments")
        for method in rule.methods - UNDOCUMENTED_METHODS
    }
    paths = spec(client)["paths"]
    documented = {
        (method.upper(), path) for path, operations in paths.items() for method in operations
    }
    operation_ids = [
        op["operationId"] for operations in paths.values() for op in operations.values()
    ]

    assert served == documented
    assert len(operation_ids) == len(set(operation_ids)) == len(documented)


def test_every_declaration_is_on_a_view_the_app_serves(app):
    declared = {
        value
        for module in (api, webhooks, health)
        for value in vars(module).values()
        if inspect.isfunction(value) and declaration(value) is not None
    }
    viewed = {view for view in app.view_functions.values() if declaration(view) is not None}

    assert declared == viewed
    # Eleven operations: two views serve a second rule each.
    assert len(declared) == 9


@pytest.mark.parametrize(
    "rules",
    [["/one"], ["/one", "/two", "/three"], ["/two"]],
    ids=["its-alias-has-no-rule", "a-rule-beyond-its-alias", "only-its-alias-has-a-rule"],
)
def test_a_view_whose_rules_and_declared_alias_disagree_is_not_documented(rules):
    bp = Blueprint("mismatch", __name__)
    view = Operation(
        operation_id="one",
        summary="One",
        tag="health",
        success=(200, {"type": "object"}, "OK"),
        alias=Alias("/two", "two", "at the old path"),
    )(lambda: "")
    for rule in rules:
        bp.add_url_rule(rule, "one", view)
    app = Flask(__name__)
    app.register_blueprint(bp)

    with pytest.raises(ValueError, match="alias"):
        openapi.document(app)


def test_the_aliases_keep_their_operation_ids_and_say_what_they_repeat(app):
    paths = openapi.document(app)["paths"]

    assert paths["/payments/"]["post"]["operationId"] == "createPaymentTrailingSlash"
    assert paths["/payments/"]["post"]["summary"].startswith("Same as POST /payments, ")
    legacy = paths["/webhook/midtrans"]["post"]
    assert legacy["operationId"] == "receiveMidtransNotificationLegacy"
    assert legacy["summary"].startswith("Same as POST /payments/webhook, ")
    assert legacy["responses"] == paths["/payments/webhook"]["post"]["responses"]


def test_the_links_of_a_created_payment_name_operations_of_the_spec(client):
    paths = spec(client)["paths"]
    operation_ids = {
        op["operationId"] for operations in paths.values() for op in operations.values()
    }
    links = paths["/payments"]["post"]["responses"]["201"]["links"]

    assert {link["operationId"] for link in links.values()} <= operation_ids
    assert len(links) == 5


def test_the_idempotency_key_pattern_in_the_spec_is_the_one_the_api_checks(client):
    paths = spec(client)["paths"]

    for path in ("/payments", "/payments/", "/payments/{payment_id}/refund"):
        (header,) = [p for p in paths[path]["post"]["parameters"] if p["in"] == "header"]
        assert header["name"] == "Idempotency-Key"
        assert header["schema"]["pattern"] == api.IDEMPOTENCY_KEY.pattern


def test_the_example_bodies_swagger_ui_offers_are_valid_requests(app):
    examples = {
        declared.body: declared.example
        for view in app.view_functions.values()
        if (declared := declaration(view)) is not None and declared.example is not None
    }

    assert set(examples) == {PaymentCreate, CancelRequest, RefundCreate}
    for model, example in examples.items():
        model.model_validate(example)


def test_cancel_and_refund_need_a_staff_key_and_say_so(client):
    paths = spec(client)["paths"]

    for path in ("/payments/{payment_id}/cancel", "/payments/{payment_id}/refund"):
        operation = paths[path]["post"]
        assert {"bearerAuth": []} in operation["security"]
        assert "401" in operation["responses"]
    assert "security" not in paths["/payments"]["post"]


@pytest.mark.parametrize(
    ("callers_need_keys", "anonymous_create"), [(False, True), (True, True), (True, False)]
)
def test_exactly_the_operations_the_spec_secures_answer_401_without_a_key(
    app, client, monkeypatch, callers_need_keys, anonymous_create
):
    monkeypatch.setitem(app.config, "API_AUTH_REQUIRED", callers_need_keys)
    monkeypatch.setitem(app.config, "API_ALLOW_ANONYMOUS_CREATE", anonymous_create)
    ids = {"payment_id": "00000000-0000-0000-0000-000000000000", "order_id": "ORD-NONE"}

    for path, operations in spec(client)["paths"].items():
        for method, operation in operations.items():
            response = client.open(path.format(**ids), method=method.upper(), json={})
            secured = "security" in operation
            assert (response.status_code == 401) is secured, (method, path)
            # A create without a key may be allowed; one with a wrong key never is.
            documented = secured or operation["operationId"].startswith("createPayment")
            assert ("401" in operation["responses"]) is documented, (method, path)


def test_docs_page_loads_only_same_origin_assets_and_has_no_inline_script(client):
    response = client.get("/docs")
    assets = _Assets()
    assets.feed(response.get_data(as_text=True))

    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert assets.inline_scripts == []
    assert len(assets.urls) >= 3
    for url in assets.urls:
        assert url.startswith("/") and not url.startswith("//"), url
        with client.get(url) as asset:
            assert asset.status_code == 200, url


def test_docs_page_names_the_spec_url_its_script_loads(client):
    page = client.get("/docs").get_data(as_text=True)

    assert 'data-spec-url="/openapi.json"' in page
    with client.get("/docs/static/docs-init.js") as script:
        assert "dataset.specUrl" in script.get_data(as_text=True)


def test_swagger_ui_assets_cannot_reach_outside_the_distribution(client):
    assert client.get("/docs/swagger-ui/../__init__.py").status_code == 404
    assert client.get("/docs/swagger-ui/%2e%2e/__init__.py").status_code == 404


@pytest.mark.parametrize(
    "path",
    ["/docs", "/openapi.json", "/docs/swagger-ui/swagger-ui.css", "/docs/static/docs-init.js"],
)
def test_docs_and_spec_answer_404_when_docs_are_disabled(app, client, monkeypatch, path):
    monkeypatch.setitem(app.config, "DOCS_ENABLED", False)

    with client.get(path) as response:
        assert response.status_code == 404
        assert response.get_json()["detail"]


@pytest.mark.parametrize(("raw", "enabled"), [(None, True), ("true", True), ("false", False)])
def test_docs_enabled_is_read_from_the_environment_and_defaults_to_true(tmp_path, raw, enabled):
    env = {} if raw is None else {"DOCS_ENABLED": raw}

    assert config.from_environ(env, str(tmp_path))["DOCS_ENABLED"] is enabled


@pytest.mark.parametrize(
    "body",
    [b"\x00", b'{"order_id": "ORD-1\\u0000"}', b'{"order_id": "\\ud800"}'],
    ids=["nul-byte", "escaped-nul", "lone-surrogate"],
)
def test_an_unsigned_webhook_body_the_database_cannot_store_is_refused_with_400(client, body):
    response = client.post(
        "/payments/webhook", data=body, headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 400
    assert response.get_json()["detail"]


@pytest.mark.parametrize(
    "path",
    [
        "/payments/order/ORD-1%00",
        "/payments/payment-ORD-1%00",
        "/payments/payment-ORD-1%00/status",
    ],
)
def test_an_id_with_a_nul_in_the_path_is_not_found_rather_than_a_server_error(client, path):
    response = client.get(path)

    assert response.status_code == 404
    assert response.get_json()["detail"] == "Payment not found"


def test_cancel_of_a_legacy_id_with_a_nul_is_not_found(client, staff_key):
    response = client.post(
        "/payments/payment-ORD-1%00/cancel", headers={"Authorization": f"Bearer {staff_key}"}
    )

    assert response.status_code == 404


# Loaded from the document an app like the test's serves (a test above checks that it serves
# openapi.document), since schemathesis's fixture-based loader does not run on pytest 9.2
# (Node._nodeid is gone); its rules and views are the test app's, which is all it reads.
fuzzed = schemathesis.openapi.from_dict(
    openapi.document(create_app(app_config())),
    config=SchemathesisConfig.from_dict(
        {
            "seed": 20261126,
            "generation": {"max-examples": 30},
            "auth": {"openapi": {"bearerAuth": {"bearer": STAFF_KEY}}},
            # Unsigned notifications never reach Midtrans, so many of them cost little.
            "operations": [{"include-tag": "webhooks", "generation": {"max-examples": 150}}],
        }
    ),
)
CHECKS = [not_a_server_error, response_schema_conformance]


@pytest.mark.slow
@fuzzed.parametrize()
# One rolled-back transaction and one staff key serve every generated request.
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
def test_no_operation_answers_5xx_or_outside_its_documented_schema(
    case, app, staff_key, own_simulator
):
    case.call_and_validate(app=app, checks=CHECKS)


@pytest.mark.slow
def test_payments_followed_through_the_spec_links_stay_within_the_contract(
    app, staff_key, own_simulator
):
    class Workflow(fuzzed.as_state_machine()):  # type: ignore[misc, valid-type]
        def call(self, case: Any, **kwargs: Any) -> Any:
            return case.call(app=app, **kwargs)

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            case.validate_response(response, checks=CHECKS)

    Workflow.run(
        settings=settings(
            max_examples=25,
            stateful_step_count=4,
            derandomize=True,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
    )
