#!/usr/bin/env bash
# @phoenix summary: locale, timezone, essential packages, unattended upgrades, optional user
# shellcheck source=images/lib/phoenix-common.sh
source "${PHOENIX_LIB:-/opt/phoenix/lib/phoenix-common.sh}"
phx_log "placeholder: implemented in the feature library"
