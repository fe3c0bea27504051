"""The operator console: ``/console/`` on the sidecar, server-rendered HTML behind the admin token.

Pages: the overview (streams and sinks), one stream (run history, pull now, pause/resume, cursor), quarantine
(filter, inspect masked, replay or discard), dead letters (filter, replay), sinks (pause/resume, last errors) and
the audit log (filter, verify). Sign-in and sessions: :mod:`.session`; what every page shares: :mod:`.core`.
Everything durable is read from the store, so ``--workers N`` and PostgreSQL replicas show the same console.
The routes (:func:`.mount.console_mount`) are mounted beside the API's endpoint table, so they stay out of the
OpenAPI document.
"""
