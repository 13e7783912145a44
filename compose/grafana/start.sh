#!/bin/sh
# Start-up wrapper of the demo's Grafana: decides how the admin account may log in, then runs
# the image's own entrypoint (passed as arguments).
#
# GRAFANA_ADMIN_PASSWORD set (environment or .env): admin logs in with that password.
# Not set: the login form and basic auth are off, and the admin account gets a random password
# that is never shown, so a bare `docker compose up` has no usable credentials at all. Grafana
# itself would fall back to a well-known default when its own variable is empty, hence this
# wrapper. Anonymous visitors are read-only Viewers either way (docker-compose.yml).
set -eu

if [ -n "${GRAFANA_ADMIN_PASSWORD:-}" ]; then
    GF_SECURITY_ADMIN_PASSWORD=$GRAFANA_ADMIN_PASSWORD
    GF_AUTH_DISABLE_LOGIN_FORM=false
    GF_AUTH_BASIC_ENABLED=true
else
    GF_SECURITY_ADMIN_PASSWORD=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')
    if [ "${#GF_SECURITY_ADMIN_PASSWORD}" -lt 32 ]; then
        echo "demo-start: could not draw a random admin password" >&2
        exit 1
    fi
    GF_AUTH_DISABLE_LOGIN_FORM=true
    GF_AUTH_BASIC_ENABLED=false
    echo "demo-start: GRAFANA_ADMIN_PASSWORD not set: anonymous read-only access, admin login off" >&2
fi
export GF_SECURITY_ADMIN_PASSWORD GF_AUTH_DISABLE_LOGIN_FORM GF_AUTH_BASIC_ENABLED
unset GRAFANA_ADMIN_PASSWORD
exec "$@"
