#!/usr/bin/env bash
# @phoenix summary: Docker Engine, and the NVIDIA Container Toolkit with GPUs
# @phoenix requires: nesting
# @phoenix secret: docker_token optional
# shellcheck source=images/lib/phoenix-common.sh
source "${PHOENIX_LIB:-/opt/phoenix/lib/phoenix-common.sh}"
phx_log "placeholder: implemented in the feature library"
