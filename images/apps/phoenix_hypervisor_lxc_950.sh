#!/usr/bin/env bash
# @phoenix summary: serves the configured model with vLLM as a systemd service
# @phoenix requires: gpu
# @phoenix requires-feature: vllm
# @phoenix secret: hf_token optional
#
# Context: PHX_VLLM_MODEL, PHX_VLLM_SERVED_MODEL_NAME, PHX_VLLM_PORT, PHX_VLLM_MAX_MODEL_LEN,
#          PHX_VLLM_GPU_MEMORY_UTILIZATION, PHX_VLLM_DTYPE, PHX_VLLM_TENSOR_PARALLEL_SIZE,
#          vllm.args (extra arguments, read from context.json), PHX_VLLM_MODEL_CACHE (HF_HOME).
# The Hugging Face token goes into a 0600 EnvironmentFile that systemd reads: never on a command line.
# Then waits for http://127.0.0.1:PORT/health (PHX_VLLM_HEALTH_TIMEOUT_S, default 1800 s: a first
# start downloads the model); without a running systemd the service is enabled, not started.
# shellcheck source=images/lib/phoenix-common.sh
source "${PHOENIX_LIB:-/opt/phoenix/lib/phoenix-common.sh}"

VLLM_VENV="${VLLM_VENV:-/opt/vllm}"
VLLM_UNIT=vllm.service
VLLM_UNIT_FILE="${VLLM_UNIT_FILE:-/etc/systemd/system/$VLLM_UNIT}"
VLLM_ENV_FILE="${VLLM_ENV_FILE:-/etc/vllm/vllm.env}"

# systemd_quote ARG: ARG as one word of an ExecStart= line (quotes, and %/$ escaped).
systemd_quote() {
    local a="$1" safe='^[A-Za-z0-9_./:=,+@%$-]+$'
    a="${a//%/%%}"
    a="${a//\$/\$\$}"
    if [[ "$a" =~ $safe ]]; then
        printf '%s' "$a"
    else
        a="${a//\\/\\\\}"
        a="${a//\"/\\\"}"
        printf '"%s"' "$a"
    fi
}

# vllm_serve_args: the arguments of `vllm serve`, one a line, from the context.
vllm_serve_args() {
    local model served tp mml dtype
    model="$(phx_ctx vllm_model)"
    [[ -n "$model" ]] || phx_die "no vllm.model in the context"
    served="$(phx_ctx vllm_served_model_name "${model##*/}")"
    tp="$(phx_ctx vllm_tensor_parallel_size 1)"
    mml="$(phx_ctx vllm_max_model_len)"
    dtype="$(phx_ctx vllm_dtype auto)"
    printf '%s\n' serve "$model" \
        --host 0.0.0.0 --port "$(phx_ctx vllm_port 8000)" \
        --served-model-name "$served" \
        --tensor-parallel-size "$tp" \
        --gpu-memory-utilization "$(phx_ctx vllm_gpu_memory_utilization 0.9)"
    [[ -z "$mml" ]] || printf '%s\n' --max-model-len "$mml"
    [[ "$dtype" == auto ]] || printf '%s\n' --dtype "$dtype"
    local arg
    while IFS= read -r -d '' arg; do
        printf '%s\n' "$arg"
    done < <(phx_ctx_json_array .vllm.args vllm_args)
}

# vllm_exec_start: the ExecStart= value.
vllm_exec_start() {
    local -a args
    local arg out
    mapfile -t args < <(vllm_serve_args)
    ((${#args[@]})) || return 1
    out="$VLLM_VENV/bin/vllm"
    for arg in "${args[@]}"; do
        out+=" $(systemd_quote "$arg")"
    done
    printf '%s\n' "$out"
}

# vllm_unit_render: the unit file.
vllm_unit_render() {
    local exec_start
    exec_start="$(vllm_exec_start)" || return 1
    cat <<EOF
# Written by Phoenix (phoenix_hypervisor_lxc_950.sh): changes are overwritten.
[Unit]
Description=vLLM serving $(phx_ctx vllm_model)
Wants=network-online.target
After=network-online.target

[Service]
Type=simple
EnvironmentFile=$VLLM_ENV_FILE
WorkingDirectory=$(phx_ctx vllm_model_cache /var/lib/vllm/models)
ExecStart=$exec_start
Restart=on-failure
RestartSec=10
LimitNOFILE=65536
LimitMEMLOCK=infinity

[Install]
WantedBy=multi-user.target
EOF
}

# vllm_env_render: the EnvironmentFile; HF_TOKEN comes from the hf_token secret file when present.
vllm_env_render() {
    local cache token
    cache="$(phx_ctx vllm_model_cache /var/lib/vllm/models)"
    printf 'HF_HOME=%s\nVLLM_NO_USAGE_STATS=1\nDO_NOT_TRACK=1\n' "$cache"
    if phx_has_secret hf_token; then
        token="$(phx_secret hf_token)"
        [[ "$token" =~ ^[A-Za-z0-9_.-]+$ ]] || phx_die "the hf_token secret holds characters a token does not have"
        printf 'HF_TOKEN=%s\n' "$token"
    fi
}

vllm_healthy() { curl -fsS --max-time 5 "http://127.0.0.1:$1/health" >/dev/null; }

main() {
    phx_load_context
    local changed=0 unit env port
    [[ -x "$VLLM_VENV/bin/vllm" ]] || phx_die "$VLLM_VENV/bin/vllm not found: the vllm feature installs it"
    port="$(phx_ctx vllm_port 8000)"
    phx_ensure_dir "$(phx_ctx vllm_model_cache /var/lib/vllm/models)"
    phx_ensure_dir "$(dirname "$VLLM_ENV_FILE")" 0700
    env="$(vllm_env_render)"
    local owner=""
    ((EUID != 0)) || owner=root:root
    printf '%s\n' "$env" | phx_write_file "$VLLM_ENV_FILE" 0600 "$owner"
    phx_file_changed && changed=1
    unit="$(vllm_unit_render)"
    printf '%s\n' "$unit" | phx_write_file "$VLLM_UNIT_FILE" 0644
    phx_file_changed && changed=1
    if ((changed)) && phx_has_systemd; then
        systemctl daemon-reload
    fi
    phx_service_enable "$VLLM_UNIT"
    if ! phx_has_systemd; then
        phx_service_start "$VLLM_UNIT"
        phx_log "systemd is not running: not waiting for http://127.0.0.1:$port/health"
        phx_finish
        return 0
    fi
    if ((changed)); then
        phx_service_start "$VLLM_UNIT" restart
    else
        phx_service_start "$VLLM_UNIT"
    fi
    phx_log "waiting for http://127.0.0.1:$port/health (model download and load may take a while)"
    PHX_WAIT_TIMEOUT="${PHX_VLLM_HEALTH_TIMEOUT_S:-1800}" PHX_WAIT_INTERVAL=10 phx_wait_for vllm_healthy "$port" || {
        journalctl -u "$VLLM_UNIT" -n 30 --no-pager >&2 || true
        phx_die "vLLM did not become healthy on port $port"
    }
    phx_log "vLLM serves $(phx_ctx vllm_served_model_name) on port $port"
    phx_finish
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    main "$@"
fi
