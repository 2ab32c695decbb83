"""Service invocation over HTTP: forwarding a request to the local app, another sidecar or an external URL."""
