"""Every API error has one shape: {"error": {"code", "message", "details"}}."""

from typing import Any

from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from kvmweb.errors import KvmwebError

_CODES = {
    exceptions.ValidationError: ("invalid", "The request is not valid: see details."),
    exceptions.ParseError: ("parse_error", "The request body is not valid JSON."),
    exceptions.NotAuthenticated: ("not_authenticated", "Log in or send an API token."),
    exceptions.AuthenticationFailed: ("not_authenticated", "The credentials are not valid."),
    exceptions.PermissionDenied: ("permission_denied", "You may not do that."),
    exceptions.NotFound: ("not_found", "Not found."),
    exceptions.MethodNotAllowed: ("method_not_allowed", "This method is not allowed here."),
    exceptions.UnsupportedMediaType: ("unsupported_media_type", "Send JSON."),
    exceptions.Throttled: ("throttled", "Too many requests; slow down."),
}


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, KvmwebError):
        return Response(error_body(exc.code, exc.message, exc.details), status=exc.http_status)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    code, message = next(
        (pair for cls, pair in _CODES.items() if isinstance(exc, cls)), ("error", "The request failed.")
    )
    details: Any = response.data if isinstance(exc, exceptions.ValidationError) else {}
    if not isinstance(exc, exceptions.ValidationError) and isinstance(response.data, dict):
        message = str(response.data.get("detail", message))
    if isinstance(details, list):
        details = {"non_field_errors": details}
    response.data = error_body(code, message, details)
    return response


def api_not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse(error_body("not_found", "No such API endpoint."), status=status.HTTP_404_NOT_FOUND)
