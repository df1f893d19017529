#!/usr/bin/env bash
# @phoenix summary: serves the configured model with vLLM as a hardened systemd service, behind an API key
# @phoenix requires: gpu
# @phoenix requires: nesting
# @phoenix requires-feature: vllm
# @phoenix secret: vllm_api_key
# @phoenix secret: hf_token optional
#
# Context: PHX_VLLM_MODEL, PHX_VLLM_SERVED_MODEL_NAME, PHX_VLLM_PORT, PHX_VLLM_MAX_MODEL_LEN,
#          PHX_VLLM_GPU_MEMORY_UTILIZATION, PHX_VLLM_DTYPE, PHX_VLLM_TENSOR_PARALLEL_SIZE, PHX_VLLM_VERSION,
#          vllm.args (extra arguments, read from context.json), PHX_VLLM_MODEL_CACHE (HF_HOME).
# The API key (secret vllm_api_key) and the Hugging Face token go into a 0600 EnvironmentFile that systemd reads
# (vLLM takes VLLM_API_KEY from the environment): never on a command line. The service runs as the dedicated user
# vllm with NoNewPrivileges, ProtectSystem=strict, ProtectHome, PrivateTmp; only the model cache and its state
# directory are writable (the sandbox needs nesting=1 in an unprivileged container). A Qwen3 Coder model gets
# vLLM's tool calling (--enable-auto-tool-choice --tool-call-parser qwen3_coder, vLLM >= 0.10.0).
# Before the start: the model cache is writable by that user. Then waits for /health: PHX_VLLM_HEALTH_TIMEOUT_S
# when set, else 10 minutes plus PHX_VLLM_S_PER_GB (default 30) per GB of the model's files on Hugging Face
# still to download; and checks that the key is enforced (/v1/models refuses a request without it).
# Without a running systemd the service is enabled, not started.
# shellcheck source=images/lib/phoenix-common.sh
source "${PHOENIX_LIB:-/opt/phoenix/lib/phoenix-common.sh}"

VLLM_VENV="${VLLM_VENV:-/opt/vllm}"
VLLM_UNIT=vllm.service
VLLM_UNIT_FILE="${VLLM_UNIT_FILE:-/etc/systemd/system/$VLLM_UNIT}"
VLLM_ENV_FILE="${VLLM_ENV_FILE:-/etc/vllm/vllm.env}"
VLLM_USER="${VLLM_USER:-vllm}"
VLLM_STATE_DIR=/var/lib/vllm
HF_ENDPOINT="${HF_ENDPOINT:-https://huggingface.co}"

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
    local -a extra=()
    while IFS= read -r -d '' arg; do
        extra+=("$arg")
    done < <(phx_ctx_json_array .vllm.args vllm_args)
    ((${#extra[@]} == 0)) || printf '%s\n' "${extra[@]}"
    if vllm_wants_coder_tools "$model" "$(phx_ctx vllm_version)" "${extra[@]}"; then
        printf '%s\n' --enable-auto-tool-choice --tool-call-parser qwen3_coder
    fi
}

# vllm_version_ge A B: version A >= version B.
vllm_version_ge() {
    [[ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | phx_first_line)" == "$2" ]]
}

# vllm_wants_coder_tools MODEL VERSION ARGS...: a Qwen3 Coder model on vLLM >= 0.10.0 (the qwen3_coder parser),
# unless the extra arguments already choose a tool parser.
vllm_wants_coder_tools() {
    local model="${1,,}" version="$2" a
    shift 2
    [[ "$model" == *qwen3-coder* ]] || return 1
    [[ -n "$version" ]] || return 1
    vllm_version_ge "$version" 0.10.0 || return 1
    for a in "$@"; do
        [[ "$a" != --tool-call-parser* ]] || return 1
    done
    return 0
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
    local exec_start cache
    exec_start="$(vllm_exec_start)" || return 1
    cache="$(phx_ctx vllm_model_cache /var/lib/vllm/models)"
    cat <<EOF
# Written by Phoenix (phoenix_hypervisor_lxc_950.sh): changes are overwritten.
[Unit]
Description=vLLM serving $(phx_ctx vllm_model)
Wants=network-online.target
After=network-online.target

[Service]
Type=simple
User=$VLLM_USER
Group=$VLLM_USER
EnvironmentFile=$VLLM_ENV_FILE
Environment=HOME=$VLLM_STATE_DIR XDG_CACHE_HOME=$VLLM_STATE_DIR/cache
WorkingDirectory=$cache
ExecStart=$exec_start
Restart=on-failure
RestartSec=10
LimitNOFILE=65536
LimitMEMLOCK=infinity
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
StateDirectory=vllm
ReadWritePaths=$cache

[Install]
WantedBy=multi-user.target
EOF
}

# vllm_env_render: the EnvironmentFile: VLLM_API_KEY from the vllm_api_key secret, HF_TOKEN from hf_token when present.
vllm_env_render() {
    local cache token key
    cache="$(phx_ctx vllm_model_cache /var/lib/vllm/models)"
    printf 'HF_HOME=%s\nVLLM_NO_USAGE_STATS=1\nDO_NOT_TRACK=1\n' "$cache"
    key="$(phx_secret vllm_api_key)"
    [[ ${#key} -ge 16 ]] || phx_die "the vllm_api_key secret is shorter than 16 characters"
    [[ "$key" =~ ^[A-Za-z0-9_.~+/=-]+$ ]] || phx_die "the vllm_api_key secret holds characters other than A-Z a-z 0-9 _ . ~ + / = -"
    printf 'VLLM_API_KEY=%s\n' "$key"
    if phx_has_secret hf_token; then
        token="$(phx_secret hf_token)"
        [[ "$token" =~ ^[A-Za-z0-9_.-]+$ ]] || phx_die "the hf_token secret holds characters a token does not have"
        printf 'HF_TOKEN=%s\n' "$token"
    fi
}

vllm_healthy() { curl -fsS --max-time 5 "http://127.0.0.1:$1/health" >/dev/null 2>&1; }

# vllm_crashes: how often the service crashed: systemd's restarts after a crash (NRestarts), and one more while it
# waits out RestartSec to restart (SubState auto-restart), so a crash counts at once, not RestartSec later.
vllm_crashes() {
    local n sub
    n="$(systemctl show -p NRestarts --value "$VLLM_UNIT" 2>/dev/null)" || n=0
    [[ "$n" =~ ^[0-9]+$ ]] || n=0
    sub="$(systemctl show -p SubState --value "$VLLM_UNIT" 2>/dev/null)" || sub=""
    [[ "$sub" != auto-restart ]] || n=$((n + 1))
    printf '%s\n' "$n"
}

# vllm_wait_healthy PORT TIMEOUT: 0 when /health answers; 1 after TIMEOUT seconds; 2 when the service crashed
# PHX_VLLM_MAX_RESTARTS more times (default 3) while waiting: a crash loop is not waited out for half an hour.
vllm_wait_healthy() {
    local port="$1" timeout="$2" start=$SECONDS base crashes
    base="$(vllm_crashes)"
    until vllm_healthy "$port"; do
        crashes="$(vllm_crashes)"
        if ((crashes - base >= ${PHX_VLLM_MAX_RESTARTS:-3})); then
            return 2
        fi
        ((SECONDS - start < timeout)) || return 1
        sleep "${PHX_VLLM_WAIT_INTERVAL:-10}"
    done
}

# vllm_http_code PORT PATH [HEADER_FILE]: the HTTP status of a GET (000 when nothing answers). The key travels in a
# header file (curl -H @FILE), never as an argument.
vllm_http_code() {
    local -a hdr=()
    [[ -z "${3:-}" ]] || hdr=(-H "@$3")
    curl -sS -o /dev/null -w '%{http_code}' --max-time 10 "${hdr[@]}" "http://127.0.0.1:$1$2" 2>/dev/null || true
}

# vllm_check_api_key PORT: /v1/models refuses a request without the key and answers one with it.
vllm_check_api_key() {
    local port="$1" hdr code
    code="$(vllm_http_code "$port" /v1/models)"
    [[ "$code" == 401 ]] || phx_die "vLLM answered /v1/models without the API key (HTTP $code): the key is not enforced"
    phx_tmpfile hdr
    printf 'Authorization: Bearer %s\n' "$(phx_secret vllm_api_key)" >"$hdr"
    code="$(vllm_http_code "$port" /v1/models "$hdr")"
    [[ "$code" == 200 ]] || phx_die "vLLM refused /v1/models with the API key (HTTP $code)"
    phx_log "the API key is enforced on port $port"
}

# ensure_user: the system user the service runs as.
ensure_user() {
    if ! id -u "$VLLM_USER" >/dev/null 2>&1; then
        useradd --system --home-dir "$VLLM_STATE_DIR" --no-create-home --shell /usr/sbin/nologin --user-group "$VLLM_USER"
        phx_changed "created system user $VLLM_USER"
    fi
}

# as_vllm_user CMD...: run CMD as the service's user.
as_vllm_user() { setpriv --reuid="$VLLM_USER" --regid="$VLLM_USER" --init-groups -- "$@"; }

# ensure_cache_writable DIR: the service's user can write the model cache (a bind mount of an unprivileged
# container belongs to the host's mapped uid: checked now, not after a 30-minute health wait).
ensure_cache_writable() {
    local dir="$1"
    phx_ensure_dir "$dir"
    as_vllm_user test -w "$dir" && return 0
    if chown "$VLLM_USER:" "$dir" 2>/dev/null && as_vllm_user test -w "$dir"; then
        phx_changed "gave $dir to $VLLM_USER"
        return 0
    fi
    phx_die "the model cache $dir is not writable by $VLLM_USER (uid $(id -u "$VLLM_USER")) and cannot be given to it: on the host, chown the bind-mounted directory to the container's mapped uid (100000 + $(id -u "$VLLM_USER") for a default unprivileged container)"
}

# vllm_model_bytes MODEL: the size of the model's files on Hugging Face (usedStorage), empty when unknown.
vllm_model_bytes() {
    local out hdr=""
    local -a auth=()
    if phx_has_secret hf_token; then
        phx_tmpfile hdr
        printf 'Authorization: Bearer %s\n' "$(phx_secret hf_token)" >"$hdr"
        auth=(-H "@$hdr")
    fi
    out="$(curl -fsS --max-time 20 "${auth[@]}" "$HF_ENDPOINT/api/models/$1" 2>/dev/null)" || return 0
    jq -r '.usedStorage // empty' <<<"$out" 2>/dev/null || true
}

# vllm_cached MODEL CACHE: the model is already in the Hugging Face cache (a snapshot is there).
vllm_cached() {
    local dir="$2/hub/models--${1//\//--}/snapshots"
    [[ -d "$dir" ]] && [[ -n "$(ls -A "$dir")" ]]
}

# vllm_health_timeout BYTES [CACHED]: seconds to wait for /health: 10 minutes to load, plus the download at
# PHX_VLLM_S_PER_GB seconds a GB (default 30, about 33 MB/s) unless cached; 30 minutes when the size is unknown.
vllm_health_timeout() {
    local bytes="$1" cached="${2:-}" per_gb="${PHX_VLLM_S_PER_GB:-30}" gb
    if [[ -n "$cached" ]]; then
        printf '600\n'
    elif [[ "$bytes" =~ ^[0-9]+$ ]]; then
        gb=$(((bytes + 999999999) / 1000000000))
        printf '%s\n' $((600 + gb * per_gb))
    else
        printf '1800\n'
    fi
}

main() {
    phx_load_context
    local changed=0 unit env port cache model timeout
    [[ -x "$VLLM_VENV/bin/vllm" ]] || phx_die "$VLLM_VENV/bin/vllm not found: the vllm feature installs it"
    port="$(phx_ctx vllm_port 8000)"
    cache="$(phx_ctx vllm_model_cache /var/lib/vllm/models)"
    model="$(phx_ctx vllm_model)"
    ensure_user
    ensure_cache_writable "$cache"
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
    timeout="${PHX_VLLM_HEALTH_TIMEOUT_S:-}"
    if [[ -z "$timeout" ]]; then
        if vllm_cached "$model" "$cache"; then
            timeout="$(vllm_health_timeout "" cached)"
        else
            timeout="$(vllm_health_timeout "$(vllm_model_bytes "$model")")"
        fi
    fi
    phx_log "waiting up to ${timeout}s for http://127.0.0.1:$port/health (model download and load)"
    local waited=0
    vllm_wait_healthy "$port" "$timeout" || waited=$?
    if ((waited)); then
        journalctl -u "$VLLM_UNIT" -n 30 --no-pager >&2 || true
        if ((waited == 2)); then
            phx_die "vLLM did not become healthy on port $port: the service crashed $(vllm_crashes) times (journal above)"
        fi
        phx_die "vLLM did not become healthy on port $port within ${timeout}s"
    fi
    vllm_check_api_key "$port"
    phx_log "vLLM serves $(phx_ctx vllm_served_model_name) on port $port"
    phx_finish
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    main "$@"
fi
