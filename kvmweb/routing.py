from django.urls import path

from consoles.consumers import SerialConsoleConsumer
from kvmweb.realtime.consumers import EventsConsumer

websocket_urlpatterns = [
    path("ws/events/", EventsConsumer.as_asgi()),
    path("ws/vms/<uuid:uuid>/serial/", SerialConsoleConsumer.as_asgi()),
]
