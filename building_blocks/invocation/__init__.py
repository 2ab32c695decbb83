"""Service invocation, the domain side: targets, HTTPEndpoint resources and the resiliency runner."""
