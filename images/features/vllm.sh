#!/usr/bin/env bash
# @phoenix summary: a pinned vLLM in its own virtualenv, CUDA-matched
# @phoenix requires: gpu
# @phoenix requires-feature: nvidia
# shellcheck source=images/lib/phoenix-common.sh
source "${PHOENIX_LIB:-/opt/phoenix/lib/phoenix-common.sh}"
phx_log "placeholder: implemented in the feature library"
