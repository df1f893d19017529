#!/usr/bin/env bash
# @phoenix summary: serves the configured model with vLLM as a systemd service
# @phoenix requires: gpu
# @phoenix requires-feature: vllm
# @phoenix secret: hf_token optional
# shellcheck source=images/lib/phoenix-common.sh
source "${PHOENIX_LIB:-/opt/phoenix/lib/phoenix-common.sh}"
phx_log "placeholder: implemented in the feature library"
