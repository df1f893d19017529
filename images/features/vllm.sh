#!/usr/bin/env bash
# @phoenix summary: a pinned vLLM in its own virtualenv, installed as vLLM documents it (uv, --torch-backend=auto)
# @phoenix requires: gpu
# @phoenix requires-feature: nvidia
#
# Context: PHX_VLLM_VERSION (pinned), PHX_GPUS, PHX_VLLM_TORCH_VARIANT (optional: cu126, cu128, cu129, ...; default
#          auto, PyTorch's build for the CUDA the driver supports, as uv detects it).
# vLLM goes into /opt/vllm (a virtualenv of the distro's python3) with vLLM's documented command,
# `uv pip install vllm==X --torch-backend=auto`, with a pinned uv. No hand-kept table of wheel names and CUDA builds:
# vLLM's wheels change their CUDA builds and platform tags between releases.
# Before the layer counts as baked: the installed vLLM is the pinned version, and PyTorch in the virtualenv sees
# CUDA and exactly the assigned number of GPUs (torch.cuda.is_available(), torch.cuda.device_count()).
# shellcheck source=images/lib/phoenix-common.sh
source "${PHOENIX_LIB:-/opt/phoenix/lib/phoenix-common.sh}"

VLLM_VENV="${VLLM_VENV:-/opt/vllm}"
VLLM_MARKER="$VLLM_VENV/.phoenix-vllm"
VLLM_UV_VERSION="${VLLM_UV_VERSION:-0.9.5}"

# vllm_torch_backend VARIANT: the --torch-backend value: auto, or a PyTorch CUDA build (cu126 ...).
vllm_torch_backend() {
    local v="${1:-auto}"
    [[ "$v" == auto || "$v" =~ ^cu[0-9]{3}$ || "$v" == cpu ]] ||
        phx_die "invalid vllm torch variant '$v' (auto, cpu or cuNNN such as cu128)"
    printf '%s\n' "$v"
}

# vllm_install_args VERSION BACKEND PYTHON: the arguments of `uv`, one a line (vLLM's documented install).
vllm_install_args() {
    printf '%s\n' pip install --python "$3" "vllm==$1" "--torch-backend=$2"
}

# vllm_version_matches INSTALLED WANTED: 0.10.1.1+cu126 matches 0.10.1.1.
vllm_version_matches() { [[ -n "$1" && "${1%%+*}" == "$2" ]]; }

vllm_installed_version() {
    [[ -x "$VLLM_VENV/bin/python" ]] || return 0
    "$VLLM_VENV/bin/python" - <<'EOF' 2>/dev/null || true
import importlib.metadata as m
try:
    print(m.version("vllm"))
except m.PackageNotFoundError:
    pass
EOF
}

# vllm_check_torch GPUS: PyTorch in the virtualenv sees CUDA and the assigned number of GPUs.
vllm_check_torch() {
    local gpus="${1//[[:space:]]/}" want out
    local -a list=()
    [[ -z "$gpus" ]] || IFS=, read -r -a list <<<"$gpus"
    want=${#list[@]}
    out="$("$VLLM_VENV/bin/python" -c 'import torch; print(torch.cuda.is_available(), torch.cuda.device_count(), torch.version.cuda)' 2>&1)" ||
        { printf '%s\n' "$out" >&2; phx_die "PyTorch does not import in $VLLM_VENV"; }
    out="${out##*$'\n'}"     # the last line: what the script printed, after any warnings
    case "$out" in
        "True $want "*) phx_log "PyTorch sees CUDA ${out##* } and $want GPU(s)" ;;
        True\ *) phx_die "PyTorch sees $(cut -d' ' -f2 <<<"$out") GPU(s), expected $want" ;;
        *) phx_die "PyTorch does not see CUDA (torch.cuda.is_available() is False: driver too old for this build, or the nvidia feature's device nodes missing)" ;;
    esac
}

main() {
    phx_load_context
    local version installed backend gpus
    version="$(phx_ctx vllm_version)"
    gpus="$(phx_ctx gpus)"
    [[ -n "$version" ]] || phx_die "no vllm.version in the context"
    backend="$(vllm_torch_backend "$(phx_ctx vllm_torch_variant auto)")"
    installed="$(vllm_installed_version)"
    if vllm_version_matches "$installed" "$version"; then
        phx_log "vLLM $installed already in $VLLM_VENV"
    else
        phx_apt_install python3 python3-venv python3-dev gcc libc6-dev ca-certificates
        if [[ -n "$installed" ]]; then
            phx_log "replacing vLLM $installed"
            rm -rf "$VLLM_VENV"
        fi
        if [[ ! -x "$VLLM_VENV/bin/python" ]]; then
            python3 -m venv "$VLLM_VENV"
            phx_changed "created virtualenv $VLLM_VENV"
        fi
        "$VLLM_VENV/bin/pip" install --quiet "uv==$VLLM_UV_VERSION"
        local -a args
        mapfile -t args < <(vllm_install_args "$version" "$backend" "$VLLM_VENV/bin/python")
        phx_log "uv ${args[*]}"
        "$VLLM_VENV/bin/uv" "${args[@]}"
        installed="$(vllm_installed_version)"
        vllm_version_matches "$installed" "$version" || phx_die "uv installed vLLM '${installed:-nothing}', not $version"
        printf 'version=%s\ntorch_backend=%s\nuv=%s\n' "$version" "$backend" "$VLLM_UV_VERSION" |
            phx_write_file "$VLLM_MARKER" 0644
        phx_changed "installed vLLM $installed in $VLLM_VENV"
    fi
    vllm_check_torch "$gpus"
    phx_finish
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    main "$@"
fi
