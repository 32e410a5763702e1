"""The OpenAPI document (`/openapi.json`, Swagger UI at `/docs`) as the service answers: FastAPI's
document of the routes (their models, constraints, examples and own refusals), completed with
what no route declares:

- on every operation, the `X-Request-ID` header and its 400 (serve_app/request_ids.py), and 500
  `internal_error` (the catch-all handler, serve_app/errors.py); 422 in the service's error shape
  where FastAPI would document its own;
- the guards' refusals on the operations they apply to (serve_app/security): an upload route's
  413 states its own limit and its 415 asks for multipart/form-data. Which guards are
  installed depends on the settings (API keys, the Host check), and so does the document: it
  describes the service that serves it, with the API key schemes when `api_keys` is set;
- limits that are settings, where a field names one (`x-max-length-setting`): the text fields'
  `maxLength` is the running service's `max_text_chars`, so one home holds the value and the
  document never states a number the service does not enforce;
- what depends on the app's models (serve_app/service/served_models.py): the model names a
  `model` field takes, and the cfg coefficients a `cfg_coef` field takes (each model has its own
  rule; an app of several states each, as alternatives, and its request schemas tie each rule to
  its models, so that a schema-valid request is one the service takes).

Built once per application, on the first request for it (the settings do not change meanwhile).
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from . import request_ids
from .protocols.error_shape import INTERNAL, VALIDATION, ErrorDetail, ErrorResponse, Refusal, refusal_response
from .protocols.openai import SpeechEvent
from .protocols.rest import TTSEvent
from .protocols.transcription import Transcription, TranscriptionEvent, TranscriptionVerbose
from .protocols.text import CFG_RULES, MAX_LENGTH_SETTING, MODEL_NAMES
from .security import api_keys, guard_refusals, uploads
from .service.served_models import ServedModel, cfg_rules
from .settings import AppSettings

# Models the routes refer to by name where FastAPI does not look (error bodies everywhere, the
# events of SSE answers: serve_app/protocols/sse.py's event_stream).
DOCUMENTED_MODELS = (ErrorResponse, TTSEvent, SpeechEvent, Transcription, TranscriptionVerbose, TranscriptionEvent)
# FastAPI's own 422 body, which this service never sends (serve_app/errors.py answers 422).
FASTAPI_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")


def install_openapi(app: FastAPI, settings: AppSettings, models: dict[str, ServedModel]) -> None:
    def openapi() -> dict:
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version, description=app.description,
                                   routes=app.routes)
            app.openapi_schema = complete(document, settings, list(models.values()),
                                          uploads.upload_limits(app.routes, settings))
        return app.openapi_schema

    app.openapi = openapi


def complete(document: dict, settings: AppSettings, models: list[ServedModel],
             upload_limits: dict[tuple[str, str], int] | None = None) -> dict:
    """`upload_limits`: (method, path) -> body limit of the upload routes (security/uploads.py)."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for model in DOCUMENTED_MODELS:
        add_model(schemas, model)
    for name in FASTAPI_VALIDATION_SCHEMAS:
        schemas.pop(name, None)
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            limit = (upload_limits or {}).get((method.upper(), path))
            complete_operation(operation, method.upper(), path, settings, limit)
    if settings.api_keys:
        document["components"]["securitySchemes"] = dict(api_keys.SECURITY_SCHEMES)
    fill_settings(schemas, settings)
    speaking = [m for m in models if m.speaks]
    for schema in schemas.values():
        tie_cfg_to_model(schema, speaking, settings.default_model_name)
    fill_models(document, speaking)
    return document


def complete_operation(operation: dict, method: str, path: str, settings: AppSettings,
                       upload_limit: int | None = None) -> None:
    responses = operation.setdefault("responses", {})
    if "422" in responses and _fastapi_validation(responses["422"]):
        responses["422"] = refusal_response(422, [VALIDATION])  # FastAPI's shape is not the service's
    elif "422" in responses:  # the route's own 422s, and the validation of its fields
        add_refusal(responses, 422, VALIDATION)
    refusals = {400: request_ids.REFUSAL, 500: INTERNAL, **guard_refusals(method, path, settings, upload_limit)}
    for status, refusal in refusals.items():
        add_refusal(responses, status, refusal)
    for response in responses.values():
        restore_nulls(response)
    operation["responses"] = dict(sorted(responses.items()))
    operation.setdefault("parameters", []).append(request_ids.HEADER_PARAMETER)
    if settings.api_keys and api_keys.needs_key(path):
        operation["security"] = [{scheme: []} for scheme in api_keys.SECURITY_SCHEMES]


def add_refusal(responses: dict, status: int, refusal: Refusal) -> None:
    """`refusal` among the answers of `status`: a new response object, or one more line and
    example in the one the route declared."""
    if str(status) not in responses:
        responses[str(status)] = refusal_response(status, [refusal])
        return
    response = responses[str(status)]
    response["description"] = f"{response.get('description', '')}\n\n" + refusal_response(status, [refusal])["description"]
    json_content = response.setdefault("content", {}).setdefault("application/json", {})
    json_content.setdefault("examples", {})[refusal.code] = refusal.example(status)


def restore_nulls(response: dict) -> None:
    """FastAPI drops every null from the document it makes: an error example's null `param`
    (or `code`) is put back, so that each example is a body the service sends."""
    for example in response.get("content", {}).get("application/json", {}).get("examples", {}).values():
        error = example.get("value", {}).get("error")
        if isinstance(error, dict):
            for name in ErrorDetail.model_fields:
                error.setdefault(name, None)


def _fastapi_validation(response: dict) -> bool:
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    return schema.get("$ref", "").endswith("/HTTPValidationError")


def add_model(schemas: dict, model: type[BaseModel]) -> None:
    """`model` and the models it refers to among the document's components."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(schema.pop("$defs", {}))
    schemas.setdefault(model.__name__, schema)


def fill_models(node, models: list[ServedModel]) -> None:
    """Every field that names a model (`MODEL_NAMES`) gets the app's model names and ids as its
    enum: any other name is a 400 `unknown_model`. Every cfg_coef field (`CFG_RULES`) states the
    cfg rule of the app's models instead of the widest bounds its request model checks: one rule,
    or several as alternatives (anyOf; which one applies depends on the request's model)."""
    if isinstance(node, dict):
        if node.pop(MODEL_NAMES, None):
            node["enum"] = list(dict.fromkeys([m.name for m in models] + [m.public_id for m in models]))
        if node.pop(CFG_RULES, None):
            _state_cfg_rules(node, cfg_rules(models))
        for value in node.values():
            fill_models(value, models)
    elif isinstance(node, list):
        for value in node:
            fill_models(value, models)


def tie_cfg_to_model(schema: dict, models: list[ServedModel], default_model: str) -> None:
    """A request schema with a `model` field and a `cfg_coef` field, in an app whose models have
    different cfg rules, says which rule goes with which model: one alternative per rule (anyOf),
    the request's model (absent or null: the default one) named with the coefficients it takes.
    The field alone states the rules' union (fill_models); this is what makes a schema-valid
    request one the service takes (a 5.0 is the cloning model's, never the default 1.6B's)."""
    properties = schema.get("properties", {})
    model_field = next((name for name, field in properties.items() if _marked(field, MODEL_NAMES)), None)
    cfg_field = next((name for name, field in properties.items() if _marked(field, CFG_RULES)), None)
    rules = cfg_rules(models)
    if model_field is None or cfg_field is None or len(rules) < 2:
        return
    by_rule: dict = {}
    for model in models:
        by_rule.setdefault(model.cfg_rule, []).append(model)
    alternatives = []
    for rule, owners in by_rule.items():
        names = list(dict.fromkeys(name for m in owners for name in (m.name, m.public_id)))
        model = {"enum": names}
        cfg = {"anyOf": [rule.json_schema() | {"type": "number"}, {"type": "null"}]} if rule else {"type": "null"}
        alternative = {"properties": {model_field: model, cfg_field: cfg}}
        if any(m.name == default_model for m in owners):
            model.update(anyOf=[{"enum": model.pop("enum")}, {"type": "null"}])
        else:
            alternative["required"] = [model_field]
        alternatives.append(alternative)
    schema["anyOf"] = alternatives


def _marked(node, marker: str) -> bool:
    if isinstance(node, dict):
        return bool(node.get(marker)) or any(_marked(value, marker) for value in node.values())
    return isinstance(node, list) and any(_marked(value, marker) for value in node)


def _state_cfg_rules(field: dict, rules: list) -> None:
    """The number schema of an optional cfg_coef field (`anyOf: [number, null]`) made the rules'."""
    number = next(choice for choice in field.get("anyOf", [field]) if choice.get("type") == "number")
    for keyword in ("minimum", "maximum", "multipleOf", "exclusiveMinimum", "exclusiveMaximum"):
        number.pop(keyword, None)
    if len(rules) == 1:
        number.update(rules[0].json_schema())
    elif rules:
        number["anyOf"] = [rule.json_schema() for rule in rules]
    else:  # no model of the app takes a cfg coefficient
        number["enum"] = []


def fill_settings(schemas: dict, settings: AppSettings) -> None:
    """Every field that names a setting as its maxLength gets that setting's value."""
    for schema in schemas.values():
        for field in schema.get("properties", {}).values():
            setting = field.pop(MAX_LENGTH_SETTING, None)
            if setting is not None:
                field["maxLength"] = getattr(settings, setting)
