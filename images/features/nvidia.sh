#!/usr/bin/env bash
# @phoenix summary: NVIDIA userland matching the host driver (no kernel module)
# @phoenix requires: gpu
#
# Context: PHX_NVIDIA_DRIVER_VERSION (the host's kernel module version), PHX_GPUS ("0,1").
# A container shares the host kernel: only the user-space libraries and tools are installed, and
# they must be exactly the host driver's version (NVML refuses a mismatch). NVIDIA's .run installer
# for that version is used with --no-kernel-module; then nvidia-smi must see exactly the assigned GPUs.
# shellcheck source=images/lib/phoenix-common.sh
source "${PHOENIX_LIB:-/opt/phoenix/lib/phoenix-common.sh}"

NVIDIA_DOWNLOAD_BASE="${NVIDIA_DOWNLOAD_BASE:-https://us.download.nvidia.com/XFree86}"
NVIDIA_LIB_DIRS=(/usr/lib/x86_64-linux-gnu /usr/lib/aarch64-linux-gnu /usr/lib64 /usr/lib)

# nvidia_valid_version 570.133.07: a driver version as nvidia-smi prints it.
nvidia_valid_version() { [[ "$1" =~ ^[0-9]+\.[0-9]+(\.[0-9]+)?$ ]]; }

# nvidia_run_arch UNAME_M: the architecture name NVIDIA's downloads use.
nvidia_run_arch() {
    case "$1" in
        x86_64 | amd64) printf 'x86_64\n' ;;
        aarch64 | arm64) printf 'aarch64\n' ;;
        *) return 1 ;;
    esac
}

# nvidia_run_file VERSION ARCH: NVIDIA-Linux-x86_64-570.133.07.run
nvidia_run_file() { printf 'NVIDIA-Linux-%s-%s.run\n' "$2" "$1"; }

# nvidia_run_url VERSION ARCH: where NVIDIA publishes the installer of that exact version.
nvidia_run_url() {
    local version="$1" arch="$2" dir
    case "$arch" in
        x86_64) dir="Linux-x86_64" ;;
        aarch64) dir="aarch64" ;;
        *) return 1 ;;
    esac
    printf '%s/%s/%s/%s\n' "$NVIDIA_DOWNLOAD_BASE" "$dir" "$version" "$(nvidia_run_file "$version" "$arch")"
}

# nvidia_run_args: the installer's arguments, one a line: userland only, no questions, no checks
# that make no sense in a container (nouveau, X server, kernel build tools).
nvidia_run_args() {
    printf '%s\n' --silent --no-kernel-module --no-nouveau-check --no-x-check --no-systemd \
        --no-check-for-alternate-installs --no-backup
}

# nvidia_versions_from_libs: read library paths on stdin, print the driver versions of the
# libnvidia-ml.so.<version> files among them (sorted, unique).
nvidia_versions_from_libs() {
    sed -nE 's#^(.*/)?libnvidia-ml\.so\.([0-9]+\.[0-9]+(\.[0-9]+)?)$#\2#p' | sort -uV
}

nvidia_installed_versions() {
    local d
    for d in "${NVIDIA_LIB_DIRS[@]}"; do
        [[ -d "$d" ]] && find "$d" -maxdepth 1 -name 'libnvidia-ml.so.*'
    done | nvidia_versions_from_libs
}

# nvidia_check_gpus "0,1" DRIVER: read `nvidia-smi --query-gpu=index,name,driver_version
# --format=csv,noheader` on stdin; succeed when it lists exactly the assigned number of GPUs, all
# on DRIVER, with the assigned indexes (or 0..n-1: NVML numbers the GPUs a container can open).
nvidia_check_gpus() {
    local assigned="$1" driver="$2" line idx name ver
    local -a want seen=() bad=()
    IFS=, read -r -a want <<<"${assigned//[[:space:]]/}"
    while IFS= read -r line || [[ -n "$line" ]]; do
        [[ -z "${line//[[:space:]]/}" ]] && continue
        if [[ ! "$line" =~ ^[[:space:]]*([0-9]+)[[:space:]]*,[[:space:]]*(.+)[[:space:]]*,[[:space:]]*([0-9][0-9.]*)[[:space:]]*$ ]]; then
            phx_warn "nvidia-smi: $line"
            bad+=("$line")
            continue
        fi
        idx="${BASH_REMATCH[1]}" name="${BASH_REMATCH[2]}" ver="${BASH_REMATCH[3]}"
        name="${name%"${name##*[![:space:]]}"}"
        if [[ "$ver" != "$driver" ]]; then
            phx_warn "GPU $idx ($name) runs driver $ver, expected $driver"
            bad+=("$line")
        fi
        seen+=("$idx")
        phx_log "GPU $idx: $name, driver $ver"
    done
    if ((${#bad[@]})); then
        phx_warn "nvidia-smi output does not match (${#bad[@]} problem line(s))"
        return 1
    fi
    if ((${#seen[@]} == 0)); then
        phx_warn "nvidia-smi sees no GPU; expected ${#want[@]} (${assigned:-none})"
        return 1
    fi
    if ((${#seen[@]} != ${#want[@]})); then
        phx_warn "nvidia-smi sees ${#seen[@]} GPU(s) (${seen[*]}); expected ${#want[@]} (${assigned:-none})"
        return 1
    fi
    local got expect renumbered
    got="$(printf '%s\n' "${seen[@]}" | sort -n | paste -sd,)"
    expect="$(printf '%s\n' "${want[@]}" | sort -n | paste -sd,)"
    renumbered="$(seq 0 $((${#want[@]} - 1)) | paste -sd,)"
    if [[ "$got" != "$expect" && "$got" != "$renumbered" ]]; then
        phx_warn "nvidia-smi sees GPUs $got; expected $expect"
        return 1
    fi
    return 0
}

# nvidia_check_device_nodes DEV_DIR "0,1": the assigned /dev/nvidiaN nodes and /dev/nvidiactl exist.
nvidia_check_device_nodes() {
    local dev="$1" assigned="$2" i missing=()
    local -a want
    IFS=, read -r -a want <<<"${assigned//[[:space:]]/}"
    for i in "${want[@]}"; do
        [[ -e "$dev/nvidia$i" ]] || missing+=("$dev/nvidia$i")
    done
    [[ -e "$dev/nvidiactl" ]] || missing+=("$dev/nvidiactl")
    if ((${#missing[@]})); then
        phx_warn "missing device nodes: ${missing[*]} (the host passes them with lxc.mount.entry / devN)"
        return 1
    fi
}

uninstall_other_versions() {
    local v
    for v in "$@"; do
        if command -v nvidia-installer >/dev/null 2>&1; then
            phx_log "removing NVIDIA userland $v"
            nvidia-installer --uninstall --silent >/dev/null
            phx_changed "removed NVIDIA userland $v"
        else
            phx_die "NVIDIA userland $v is installed (not by the .run installer); remove it first"
        fi
    done
}

install_userland() {
    local version="$1" arch url file dir
    arch="$(nvidia_run_arch "$(uname -m)")" || phx_die "unsupported architecture $(uname -m)"
    url="$(nvidia_run_url "$version" "$arch")"
    phx_apt_install ca-certificates curl kmod xz-utils
    dir="$(mktemp -d)"
    file="$dir/$(nvidia_run_file "$version" "$arch")"
    phx_log "downloading $url"
    curl -fsSL --retry 3 -o "$file" "$url" || phx_die "cannot download $url (is $version a published driver?)"
    local -a args
    mapfile -t args < <(nvidia_run_args)
    phx_log "running the installer: ${args[*]}"
    sh "$file" "${args[@]}" || phx_die "the NVIDIA installer failed (see /var/log/nvidia-installer.log)"
    rm -rf "$dir"
    phx_changed "installed NVIDIA userland $version"
}

check_gpus() {
    local gpus="$1" version="$2" out
    nvidia_check_device_nodes /dev "$gpus" || phx_die "the assigned GPUs are not visible in this container"
    out="$(nvidia-smi --query-gpu=index,name,driver_version --format=csv,noheader 2>&1)" ||
        { printf '%s\n' "$out" >&2; phx_die "nvidia-smi failed"; }
    nvidia_check_gpus "$gpus" "$version" <<<"$out" || phx_die "nvidia-smi does not see exactly the assigned GPUs ($gpus)"
    phx_log "nvidia-smi sees the assigned GPUs ($gpus) on driver $version"
}

main() {
    phx_load_context
    local version gpus
    version="$(phx_ctx nvidia_driver_version)"
    gpus="$(phx_ctx gpus)"
    [[ -n "$version" ]] || phx_die "the host driver version is unknown (nvidia.driver_version)"
    nvidia_valid_version "$version" || phx_die "invalid driver version '$version'"
    [[ -n "$gpus" ]] || phx_die "no GPUs assigned (gpu_assignment)"
    local -a installed others
    mapfile -t installed < <(nvidia_installed_versions)
    mapfile -t others < <(printf '%s\n' "${installed[@]}" | grep -vxF -e "$version" -e '' || true)
    if grep -qxF "$version" <<<"$(printf '%s\n' "${installed[@]}")" && ((${#others[@]} == 0)); then
        phx_log "NVIDIA userland $version already installed"
    else
        ((${#others[@]} == 0)) || uninstall_other_versions "${others[@]}"
        install_userland "$version"
    fi
    check_gpus "$gpus" "$version"
    phx_finish
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    main "$@"
fi
