#!/usr/bin/env bash
# @phoenix summary: NVIDIA userland matching the host driver (no kernel module); ends with a CUDA smoke test
# @phoenix requires: gpu
#
# Context: PHX_NVIDIA_DRIVER_VERSION (the host's kernel module version), PHX_GPUS ("0,1"),
#          PHX_NVIDIA_INSTALLER_SHA256 (optional: the .run installer's sha256, checked before it runs).
# A container shares the host kernel: only the user-space libraries and tools are installed, and
# they must be exactly the host driver's version (NVML refuses a mismatch). NVIDIA's .run installer
# for that version is used with --no-kernel-module, fetched from the GeForce/workstation tree (XFree86/...)
# or, for datacenter drivers, the tesla/<version>/ tree. Other installed versions are removed first.
# Before the layer counts as baked: the assigned /dev/nvidiaN, /dev/nvidiactl, /dev/nvidia-uvm and
# /dev/nvidia-uvm-tools are there, nvidia-smi sees exactly the assigned GPUs on that driver, and
# cuInit() through libcuda.so.1 succeeds and counts them (CUDA needs the uvm nodes; nvidia-smi does not).
# shellcheck source=images/lib/phoenix-common.sh
source "${PHOENIX_LIB:-/opt/phoenix/lib/phoenix-common.sh}"

NVIDIA_DOWNLOAD_HOST="${NVIDIA_DOWNLOAD_HOST:-https://us.download.nvidia.com}"
NVIDIA_DEV_DIR="${NVIDIA_DEV_DIR:-/dev}"
IFS=: read -r -a NVIDIA_LIB_DIRS <<<"${NVIDIA_LIB_PATH:-/usr/lib/x86_64-linux-gnu:/usr/lib/aarch64-linux-gnu:/usr/lib64:/usr/lib}"
NVIDIA_MAX_UNINSTALLS=5

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

# nvidia_run_urls VERSION ARCH: where NVIDIA publishes the installer of that exact version, in the order tried:
# the GeForce/workstation tree, then the datacenter (tesla) tree.
nvidia_run_urls() {
    local version="$1" arch="$2" dir file
    case "$arch" in
        x86_64) dir="Linux-x86_64" ;;
        aarch64) dir="aarch64" ;;
        *) return 1 ;;
    esac
    file="$(nvidia_run_file "$version" "$arch")"
    printf '%s/XFree86/%s/%s/%s\n' "$NVIDIA_DOWNLOAD_HOST" "$dir" "$version" "$file"
    printf '%s/tesla/%s/%s\n' "$NVIDIA_DOWNLOAD_HOST" "$version" "$file"
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

# nvidia_check_device_nodes DEV_DIR "0,1": the assigned /dev/nvidiaN nodes, /dev/nvidiactl and the uvm nodes exist.
nvidia_check_device_nodes() {
    local dev="$1" assigned="$2" i missing=()
    local -a want
    IFS=, read -r -a want <<<"${assigned//[[:space:]]/}"
    for i in "${want[@]}"; do
        [[ -e "$dev/nvidia$i" ]] || missing+=("$dev/nvidia$i")
    done
    for i in nvidiactl nvidia-uvm nvidia-uvm-tools; do
        [[ -e "$dev/$i" ]] || missing+=("$dev/$i")
    done
    if ((${#missing[@]})); then
        phx_warn "missing device nodes: ${missing[*]} (the host passes them as devN; nvidia-uvm needs the nvidia_uvm module and nvidia-modprobe -c0 -u on the host)"
        return 1
    fi
}

# nvidia_download VERSION ARCH FILE: fetch the installer from the first tree that has it; check its sha256 when
# PHX_NVIDIA_INSTALLER_SHA256 is set.
nvidia_download() {
    local version="$1" arch="$2" file="$3" url sum got ok=0
    local -a tried=()
    while IFS= read -r url; do
        phx_log "downloading $url"
        if curl -fsSL --retry 3 -o "$file" "$url"; then
            ok=1
            break
        fi
        tried+=("$url")
    done < <(nvidia_run_urls "$version" "$arch")
    ((ok)) || phx_die "cannot download driver $version (tried ${tried[*]}): is it a published driver?"
    sum="$(phx_ctx nvidia_installer_sha256)"
    if [[ -n "$sum" ]]; then
        got="$(sha256sum "$file")"
        got="${got%% *}"
        [[ "$got" == "${sum,,}" ]] || phx_die "installer checksum mismatch: expected $sum, got $got ($url)"
        phx_log "installer sha256 verified"
    fi
}

# nvidia_other_versions VERSION: the installed versions other than VERSION, one a line.
nvidia_other_versions() {
    local v
    while IFS= read -r v; do
        [[ -z "$v" || "$v" == "$1" ]] || printf '%s\n' "$v"
    done < <(nvidia_installed_versions)
    return 0
}

# uninstall_other_versions INSTALLER VERSION: remove every other installed version. Each uninstall removes the
# nvidia-installer it ran, so a later round uses the new version's installer (--uninstall works from any .run).
uninstall_other_versions() {
    local installer="$1" version="$2" round=0
    local -a others
    while mapfile -t others < <(nvidia_other_versions "$version") && ((${#others[@]})); do
        round=$((round + 1))
        ((round <= NVIDIA_MAX_UNINSTALLS)) ||
            phx_die "NVIDIA userland ${others[*]} is still installed after $NVIDIA_MAX_UNINSTALLS uninstalls (not from a .run installer? remove its packages)"
        phx_log "removing NVIDIA userland ${others[*]}"
        hash -r     # bash remembers where nvidia-installer was; the last uninstall removed it
        if command -v nvidia-installer >/dev/null 2>&1; then
            nvidia-installer --uninstall --silent >/dev/null || phx_die "nvidia-installer --uninstall failed"
        else
            sh "$installer" --uninstall --silent >/dev/null || phx_die "the new installer's --uninstall failed"
        fi
        phx_changed "removed NVIDIA userland ${others[*]}"
    done
}

install_userland() {
    local version="$1" arch dir file
    arch="$(nvidia_run_arch "$(uname -m)")" || phx_die "unsupported architecture $(uname -m)"
    phx_apt_install ca-certificates curl kmod xz-utils
    phx_tmpdir dir      # removed at exit, on failure and on interrupt
    file="$dir/$(nvidia_run_file "$version" "$arch")"
    nvidia_download "$version" "$arch" "$file"
    uninstall_other_versions "$file" "$version"
    local -a args
    mapfile -t args < <(nvidia_run_args)
    phx_log "running the installer: ${args[*]}"
    sh "$file" "${args[@]}" || phx_die "the NVIDIA installer failed (see /var/log/nvidia-installer.log)"
    phx_changed "installed NVIDIA userland $version"
}

# nvidia_cuda_probe: cuInit(0) and cuDeviceGetCount through libcuda.so.1; prints "ok N", "error CODE" or "nolib WHY".
nvidia_cuda_probe() {
    python3 - <<'EOF'
import ctypes
import sys

try:
    cuda = ctypes.CDLL("libcuda.so.1")
except OSError as e:
    print(f"nolib {e}")
    sys.exit(0)
rc = cuda.cuInit(0)
if rc != 0:
    print(f"error {rc}")
    sys.exit(0)
count = ctypes.c_int(0)
rc = cuda.cuDeviceGetCount(ctypes.byref(count))
print(f"ok {count.value}" if rc == 0 else f"error {rc}")
EOF
}

# nvidia_cuda_hint CODE: what a CUresult from cuInit usually means in a container.
nvidia_cuda_hint() {
    case "$1" in
        100) printf 'no CUDA device visible (CUDA_ERROR_NO_DEVICE)\n' ;;
        999) printf 'CUDA_ERROR_UNKNOWN: usually /dev/nvidia-uvm missing or not accessible (nvidia_uvm loaded on the host?)\n' ;;
        35 | 803) printf 'userland and kernel module versions differ (CUDA error %s)\n' "$1" ;;
        304) printf 'CUDA_ERROR_OPERATING_SYSTEM: a device node cannot be opened (cgroup device rules?)\n' ;;
        *) printf 'CUDA error %s\n' "$1" ;;
    esac
}

# check_cuda GPUS: the CUDA driver API initialises and counts the assigned GPUs.
check_cuda() {
    local gpus="$1" out want
    local -a list
    IFS=, read -r -a list <<<"${gpus//[[:space:]]/}"
    want=${#list[@]}
    phx_apt_install python3     # the full standard library: ctypes is not in python3-minimal
    out="$(nvidia_cuda_probe)"
    case "$out" in
        "ok $want") phx_log "CUDA initialises and sees $want GPU(s)" ;;
        ok\ *) phx_die "CUDA sees ${out#ok } GPU(s), expected $want" ;;
        nolib\ *) phx_die "libcuda.so.1 cannot be loaded: ${out#nolib }" ;;
        error\ *) phx_die "cuInit failed: $(nvidia_cuda_hint "${out#error }")" ;;
        *) phx_die "the CUDA probe said: $out" ;;
    esac
}

check_gpus() {
    local gpus="$1" version="$2" out
    nvidia_check_device_nodes "$NVIDIA_DEV_DIR" "$gpus" || phx_die "the assigned GPUs are not visible in this container"
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
    nvidia_check_device_nodes "$NVIDIA_DEV_DIR" "$gpus" || phx_die "the assigned GPUs are not visible in this container"
    local -a installed others
    mapfile -t installed < <(nvidia_installed_versions)
    mapfile -t others < <(nvidia_other_versions "$version")
    if grep -qxF "$version" <<<"$(printf '%s\n' "${installed[@]}")" && ((${#others[@]} == 0)); then
        phx_log "NVIDIA userland $version already installed"
    else
        install_userland "$version"
    fi
    check_gpus "$gpus" "$version"
    check_cuda "$gpus"
    phx_finish
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    main "$@"
fi
