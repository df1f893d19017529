#!/usr/bin/env bash
# @phoenix summary: Portainer Server (HTTPS, persistent data, admin password from the secret)
# @phoenix requires: nesting
# @phoenix requires-feature: docker
# @phoenix secret: portainer_password
# shellcheck source=images/lib/phoenix-common.sh
source "${PHOENIX_LIB:-/opt/phoenix/lib/phoenix-common.sh}"
phx_log "placeholder: implemented in the feature library"
