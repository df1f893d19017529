#!/usr/bin/env bash
# @phoenix summary: a pinned vLLM in its own virtualenv, CUDA-matched
# @phoenix requires: gpu
# @phoenix requires-feature: nvidia
#
# Context: PHX_VLLM_VERSION (pinned), PHX_NVIDIA_DRIVER_VERSION (host driver).
# vLLM goes into /opt/vllm (a virtualenv of the distro's python3). Its PyTorch/CUDA build is chosen
# from the newest CUDA the host driver supports: the vLLM release's default build when the driver is
# new enough, else an older CUDA build the release also publishes, else an error.
# PHX_VLLM_TORCH_VARIANT (cu126, ...) overrides the choice.
# shellcheck source=images/lib/phoenix-common.sh
source "${PHOENIX_LIB:-/opt/phoenix/lib/phoenix-common.sh}"

VLLM_VENV="${VLLM_VENV:-/opt/vllm}"
VLLM_MARKER="$VLLM_VENV/.phoenix-vllm"
TORCH_INDEX_BASE="https://download.pytorch.org/whl"
VLLM_RELEASES="https://github.com/vllm-project/vllm/releases/download"

# vllm_version_ge A B: version A >= version B (numeric, dot-separated).
vllm_version_ge() {
    [[ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | phx_first_line)" == "$2" ]]
}

# vllm_driver_max_cuda DRIVER: the newest CUDA toolkit a driver supports (CUDA release notes,
# table 3: minimum Linux driver of each toolkit). Fails for drivers older than CUDA 11.8 needs.
vllm_driver_max_cuda() {
    local driver="$1" row
    local -a table=(
        "580.65.06 13.0" "575.51.03 12.9" "570.26 12.8" "560.28.03 12.6" "555.42.02 12.5"
        "550.54.14 12.4" "545.23.06 12.3" "535.54.03 12.2" "530.30.02 12.1" "525.60.13 12.0"
        "520.61.05 11.8"
    )
    for row in "${table[@]}"; do
        if vllm_version_ge "$driver" "${row% *}"; then
            printf '%s\n' "${row#* }"
            return 0
        fi
    done
    return 1
}

# vllm_cuda_from_smi: read plain `nvidia-smi` output on stdin, print its "CUDA Version: X.Y".
vllm_cuda_from_smi() {
    sed -nE 's/.*CUDA Version: *([0-9]+\.[0-9]+).*/\1/p' | phx_first_line
}

# vllm_variant_cuda cu128 -> 12.8
vllm_variant_cuda() {
    local v="${1#cu}"
    printf '%s.%s\n' "${v:0:${#v}-1}" "${v: -1}"
}

# vllm_cuda_variants VLLM_VERSION: the release's default build, then the other CUDA builds it
# publishes as release wheels (newest first). From vLLM's installation notes per release.
vllm_cuda_variants() {
    local v="$1"
    if vllm_version_ge "$v" 0.11.1; then
        printf '%s\n' cu129 cu128 cu126
    elif vllm_version_ge "$v" 0.9.0; then
        printf '%s\n' cu128 cu126
    elif vllm_version_ge "$v" 0.7.0; then
        printf '%s\n' cu124 cu118
    elif vllm_version_ge "$v" 0.4.0; then
        printf '%s\n' cu121 cu118
    else
        printf '%s\n' cu121
    fi
}

# vllm_choose_variant VLLM_VERSION DRIVER_CUDA: the newest build of that release the driver can run.
vllm_choose_variant() {
    local version="$1" cuda="$2" variant
    while IFS= read -r variant; do
        if vllm_version_ge "$cuda" "$(vllm_variant_cuda "$variant")"; then
            printf '%s\n' "$variant"
            return 0
        fi
    done < <(vllm_cuda_variants "$version")
    return 1
}

# vllm_pip_args VLLM_VERSION VARIANT ARCH: pip install arguments, one a line.
vllm_pip_args() {
    local version="$1" variant="$2" arch="${3:-x86_64}" default
    default="$(vllm_cuda_variants "$version" | phx_first_line)"
    if [[ "$variant" == "$default" ]]; then
        printf '%s\n' "vllm==$version"
    else
        [[ "$arch" == x86_64 ]] || return 1
        printf '%s\n' "$VLLM_RELEASES/v$version/vllm-$version+$variant-cp38-abi3-manylinux1_x86_64.whl"
    fi
    printf '%s\n' --extra-index-url "$TORCH_INDEX_BASE/$variant"
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

# driver_cuda: the driver's CUDA from nvidia-smi when it runs, else from the driver version.
driver_cuda() {
    local driver="$1" cuda=""
    if command -v nvidia-smi >/dev/null 2>&1; then
        cuda="$(nvidia-smi 2>/dev/null | vllm_cuda_from_smi || true)"
    fi
    [[ -n "$cuda" ]] || cuda="$(vllm_driver_max_cuda "$driver")" || return 1
    printf '%s\n' "$cuda"
}

main() {
    phx_load_context
    local version driver installed cuda variant
    version="$(phx_ctx vllm_version)"
    driver="$(phx_ctx nvidia_driver_version)"
    [[ -n "$version" ]] || phx_die "no vllm.version in the context"
    installed="$(vllm_installed_version)"
    if vllm_version_matches "$installed" "$version"; then
        phx_log "vLLM $installed already in $VLLM_VENV"
        phx_finish
        return 0
    fi
    cuda="$(driver_cuda "$driver")" || phx_die "driver ${driver:-unknown} is too old for any vLLM CUDA build (CUDA 11.8 needs 520.61.05)"
    variant="$(phx_ctx vllm_torch_variant)"
    if [[ -z "$variant" ]]; then
        variant="$(vllm_choose_variant "$version" "$cuda")" ||
            phx_die "vLLM $version has no build for CUDA $cuda (driver $driver): upgrade the host driver or pick another vllm_version"
    fi
    phx_log "driver ${driver:-?} supports CUDA $cuda: installing vLLM $version ($variant)"
    phx_apt_install python3 python3-venv python3-dev gcc libc6-dev ca-certificates
    if [[ -n "$installed" ]]; then
        phx_log "replacing vLLM $installed"
        rm -rf "$VLLM_VENV"
    fi
    if [[ ! -x "$VLLM_VENV/bin/python" ]]; then
        python3 -m venv "$VLLM_VENV"
        phx_changed "created virtualenv $VLLM_VENV"
    fi
    local -a args
    mapfile -t args < <(vllm_pip_args "$version" "$variant" "$(uname -m)") || phx_die "no $variant build for $(uname -m)"
    "$VLLM_VENV/bin/pip" install --quiet --upgrade pip
    "$VLLM_VENV/bin/pip" install --quiet "${args[@]}"
    installed="$(vllm_installed_version)"
    vllm_version_matches "$installed" "$version" || phx_die "pip installed vLLM '${installed:-nothing}', not $version"
    printf 'version=%s\nvariant=%s\ncuda=%s\n' "$version" "$variant" "$cuda" | phx_write_file "$VLLM_MARKER" 0644
    phx_changed "installed vLLM $installed ($variant) in $VLLM_VENV"
    phx_finish
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    main "$@"
fi
