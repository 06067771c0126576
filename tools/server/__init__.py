"""A local stand-in for Nuclio's HTTP trigger and Python runtime, split by job: event encoding
(:mod:`tools.server.events`), worker processes (:mod:`tools.server.pool`), the HTTP front
(:mod:`tools.server.http`) and the trigger's settings it shares with the function files
(:mod:`tools.server.trigger`)."""
