"""The exporter's own HTTP server: routes, access control and the status page."""
