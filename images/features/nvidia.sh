#!/usr/bin/env bash
# @phoenix summary: NVIDIA userland matching the host driver (no kernel module)
# @phoenix requires: gpu
# shellcheck source=images/lib/phoenix-common.sh
source "${PHOENIX_LIB:-/opt/phoenix/lib/phoenix-common.sh}"
phx_log "placeholder: implemented in the feature library"
