#!/bin/sh
# The real peers of the observability tests, from Debian's packages (make test runs this): Chromium and its
# driver for the dashboard's page test, and Prometheus for a real scrape. Prometheus is unpacked into build/prometheus, not
# installed: the package would start a service on 9090, the sidecar's default metrics port.
set -eu
cd "$(dirname "$0")/../.."
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  apt-get install -y --no-install-recommends chromium chromium-driver >/dev/null \
    || { apt-get update -qq && apt-get install -y --no-install-recommends chromium chromium-driver >/dev/null; }
fi
if [ ! -x build/prometheus/usr/bin/prometheus ]; then
  work=$(mktemp -d)
  (cd "$work" && { apt-get download prometheus >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get download prometheus >/dev/null; }; })
  mkdir -p build/prometheus
  dpkg-deb -x "$work"/prometheus_*.deb build/prometheus
  rm -rf "$work"
fi
