"""The published catalogue of schemas and methodologies, for partners who do not read Python.

:mod:`.fields` turns a JSON Schema into field-table rows; :mod:`.entries` lists what is published (every schema of
the hub and of every installed adapter, every methodology version); :mod:`.site` renders the pages, served by the
sidecar under ``/catalogue/`` and written as a static site by ``tanpuhui catalogue build DIR``.
"""
