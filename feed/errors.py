"""The feed's errors: one JSON shape for people (``{"error", "detail"}``), an ``OperationOutcome`` under /fhir/, the
documented error responses of the OpenAPI, and the handlers that turn exceptions into them."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from feed import models
from twin_state.errors import TwinmonError

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": models.Error, "description": "Missing or unknown bearer token"},
    404: {"model": models.Error, "description": "No such patient or alert in your care team"},
    422: {"model": models.Error, "description": "Malformed request"},
    429: {"model": models.Error, "description": "This token's request rate is used up (TWINMON_API_RATE_PER_S, "
          "_BURST)", "headers": models.RETRY_AFTER},
}
WITH_BODY: dict[int | str, dict[str, Any]] = {
    **ERRORS, 413: {"model": models.Error, "description": "Request body too large"},
}


class ApiError(TwinmonError):
    def __init__(self, status: int, message: str, detail: list[str] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.detail = detail or []
        self.headers = headers or {}


FHIR_PREFIX = "/fhir/"
_ISSUE_CODE = {401: "login", 404: "not-found", 409: "conflict", 413: "too-costly", 422: "invalid", 429: "throttled"}


def error_response(status: int, message: str, detail: list[str] | None = None, headers: dict[str, str] | None = None,
           path: str = "") -> JSONResponse:
    if path.startswith(FHIR_PREFIX):
        # The FHIR endpoints answer errors as FHIR does: an OperationOutcome.
        outcome = models.OperationOutcome(issue=[models.OutcomeIssue(
            severity="error", code=_ISSUE_CODE.get(status, "exception"),
            diagnostics="; ".join([message, *(detail or [])]))])
        return JSONResponse(outcome.model_dump(), status_code=status, headers=headers,
                            media_type="application/fhir+json")
    return JSONResponse(models.Error(error=message, detail=detail or []).model_dump(), status_code=status,
                        headers=headers)


def not_found(what: str = "patient") -> ApiError:
    return ApiError(404, f"no such {what} in your care team")


def validation_lines(errors: Any) -> list[str]:
    lines = []
    for e in errors:
        loc = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body"
        lines.append(f"{loc}: {e.get('msg', 'invalid')}")
    return lines


def add_error_handlers(api: FastAPI) -> None:
    @api.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        headers = {**({"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}), **exc.headers}
        return error_response(exc.status, exc.message, exc.detail, headers or None, request.url.path)

    @api.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        if any(e.get("loc", ("",))[0] == "path" for e in exc.errors()):
            return error_response(404, "no such resource", path=request.url.path)  # a malformed id names nothing
        return error_response(422, "invalid request", validation_lines(exc.errors()), path=request.url.path)

    @api.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = str(exc.detail) if exc.status_code != 404 else "not found"
        if exc.status_code == 400 and message == "There was an error parsing the body":
            # FastAPI's words for a body json.loads could not take (not UTF-8, or nested too deeply).
            message = "the request body is not readable JSON (it must be UTF-8 and not nested too deeply)"
        return error_response(exc.status_code, message, path=request.url.path)
