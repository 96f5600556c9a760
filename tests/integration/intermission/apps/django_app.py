"""A minimal Django project behind the middleware, WSGI and ASGI (the README's one-liners)."""

from __future__ import annotations

import os

import common
import django
from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.urls import path

settings.configure(
    DEBUG=False, SECRET_KEY="test-only-not-secret", ROOT_URLCONF=__name__,
    ALLOWED_HOSTS=["127.0.0.1", "localhost"], MIDDLEWARE=[], INSTALLED_APPS=[],
    DATABASES={}, USE_TZ=True,
)
django.setup()


def index(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"pid": os.getpid(), "seq": common.next_seq(),
                         "tag": request.GET.get("tag"), "payload": common.resume_state["payload"],
                         "hooks": common.resume_state["calls"]})


def health(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"pid": os.getpid(), "ok": True})


urlpatterns = [path("", index), path("health", health)]

from django.core.asgi import get_asgi_application  # noqa: E402  (after settings)
from django.core.wsgi import get_wsgi_application  # noqa: E402

from intermission.asgi import IntermissionMiddleware as AsgiMiddleware  # noqa: E402
from intermission.wsgi import IntermissionMiddleware as WsgiMiddleware  # noqa: E402

application = WsgiMiddleware(get_wsgi_application(), **common.options())
asgi_application = AsgiMiddleware(get_asgi_application(), **common.options())
