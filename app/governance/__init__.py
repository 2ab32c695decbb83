"""Governance at the fronts, from the ``--config`` Configuration: which APIs exist (``spec.api``), the HTTP
middleware pipelines (``spec.httpPipeline`` / ``spec.appHttpPipeline``) and who may invoke this app
(``spec.accessControl``). Nothing configured, nothing here runs: the route table is left as it is."""
