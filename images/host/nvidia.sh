#!/usr/bin/env bash
# @phoenix summary: the NVIDIA driver on the Proxmox node itself (host:nvidia), at nvidia.driver_version
#
# Runs on the node as root (not in a guest). Context: PHX_DRIVER_VERSION, PHX_INSTALLER_URL (the .run installer
# of that version), PHX_INSTALLER_SHA256 (optional), PHX_GPUS ("0,1": indexes the config expects).
# Idempotent: a node already at that version with its device nodes changes nothing. Otherwise it blacklists
# nouveau, installs the kernel headers DKMS needs, removes any other driver version (each older installer's own
# uninstaller, while there is one), installs this one with DKMS, loads the modules at boot (nvidia, nvidia_uvm,
# nvidia_modeset), makes the device nodes (nvidia-uvm included), enables the persistence daemon, and ends only when
# nvidia-smi reports the version and every expected GPU.
# shellcheck source=images/lib/phoenix-common.sh
source "${PHOENIX_LIB:-/opt/phoenix/lib/phoenix-common.sh}"  # Phoenix sets PHOENIX_LIB on the node

ROOT="${PHOENIX_HOST_ROOT:-}"  # tests run the script against a directory instead of /
NOUVEAU_CONF="$ROOT/etc/modprobe.d/phoenix-blacklist-nouveau.conf"
MODULES_CONF="$ROOT/etc/modules-load.d/phoenix-nvidia.conf"
UDEV_RULE="$ROOT/etc/udev/rules.d/70-phoenix-nvidia.rules"
WORK_DIR="${PHOENIX_HOST_WORK:-/var/lib/phoenix/host/work}"

# nvidia_smi_version: the driver version nvidia-smi reports (empty when there is none, or it fails).
nvidia_smi_version() {
    local out
    out="$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null)" || return 0
    printf '%s\n' "$out" | sed -n '1{s/[[:space:]]//g;p}'
}

# nvidia_smi_indexes: the GPU indexes nvidia-smi sees, one a line.
nvidia_smi_indexes() {
    nvidia-smi --query-gpu=index --format=csv,noheader 2>/dev/null | tr -d ' ' | sed '/^$/d' || true
}

# installed_ok VERSION: the node runs VERSION and has its control and uvm device nodes.
installed_ok() {
    [[ "$(nvidia_smi_version)" == "$1" && -c "$ROOT/dev/nvidiactl" && -c "$ROOT/dev/nvidia-uvm" ]]
}

blacklist_nouveau() {
    printf 'blacklist nouveau\noptions nouveau modeset=0\n' | phx_write_file "$NOUVEAU_CONF" 0644
    if phx_file_changed; then
        phx_changed "nouveau blacklisted ($NOUVEAU_CONF)"
        if command -v update-initramfs >/dev/null 2>&1; then
            update-initramfs -u -k all >/dev/null
        fi
    fi
}

# kernel_headers: the headers DKMS builds the module against (Proxmox: proxmox-default-headers).
kernel_headers() {
    local pkg=proxmox-default-headers
    if ! phx_pkg_installed "$pkg"; then
        phx_apt_install "$pkg" dkms
        phx_changed "kernel headers installed ($pkg)"
    fi
}

# remove_other_versions VERSION: uninstall every other driver version, one installer's uninstaller at a time (an
# uninstaller removes itself, so each round looks again).
remove_other_versions() {
    local want="$1" have round=0
    while have="$(nvidia_smi_version)"; [[ -n "$have" && "$have" != "$want" ]] && command -v nvidia-uninstall >/dev/null 2>&1; do
        round=$((round + 1))
        ((round <= 5)) || phx_die "driver $have is still installed after $round uninstalls"
        nvidia-uninstall --silent
        phx_changed "driver $have uninstalled"
    done
}

# fetch_installer URL SHA256 FILE: download the installer; check its sha256 when one is given.
fetch_installer() {
    local url="$1" sum="$2" file="$3"
    curl -fsSL --retry 3 -o "$file" "$url" || phx_die "cannot download $url"
    if [[ -n "$sum" ]]; then
        local got
        got="$(sha256sum "$file" | cut -d' ' -f1)"
        [[ "$got" == "$sum" ]] || phx_die "installer checksum mismatch: expected $sum, got $got ($url)"
    fi
}

install_driver() {
    local version="$1" url="$2" sum="$3" tmp
    mkdir -p "$WORK_DIR"
    phx_tmpdir tmp "$WORK_DIR/nvidia.XXXXXX"   # removed at exit, on failure and on interrupt (the library's trap)
    fetch_installer "$url" "$sum" "$tmp/installer.run"
    sh "$tmp/installer.run" --silent --dkms --no-questions --disable-nouveau --no-x-check
    phx_changed "driver $version installed"
}

boot_config() {
    printf 'nvidia\nnvidia_uvm\nnvidia_modeset\n' | phx_write_file "$MODULES_CONF" 0644
    phx_file_changed && phx_changed "modules loaded at boot ($MODULES_CONF)"
    # the device nodes (nvidia-uvm's too) as soon as the modules load, so containers that bind them start
    printf '%s\n' 'KERNEL=="nvidia", RUN+="/usr/bin/nvidia-modprobe -c0 -u"' \
        'KERNEL=="nvidia_uvm", RUN+="/usr/bin/nvidia-modprobe -c0 -u"' | phx_write_file "$UDEV_RULE" 0644
    phx_file_changed && phx_changed "device nodes made at boot ($UDEV_RULE)"
    local m
    for m in nvidia nvidia_uvm nvidia_modeset; do
        modprobe "$m"
    done
    nvidia-modprobe -c0 -u
    if phx_has_systemd && [[ -n "$(phx_unit_path nvidia-persistenced.service)" ]]; then
        phx_service_enable nvidia-persistenced.service
        phx_service_start nvidia-persistenced.service
    fi
}

# verify VERSION GPUS...: nvidia-smi reports VERSION and sees every expected GPU index.
verify() {
    local want="$1" have index
    shift
    have="$(nvidia_smi_version)"
    [[ "$have" == "$want" ]] || phx_die "nvidia-smi reports driver '${have:-none}', not $want"
    [[ -c "$ROOT/dev/nvidia-uvm" ]] || phx_die "/dev/nvidia-uvm is missing: CUDA in the guests needs it"
    local seen
    seen="$(nvidia_smi_indexes)"
    for index in "$@"; do
        grep -qx -- "$index" <<<"$seen" || phx_die "GPU $index is not seen by nvidia-smi (it sees: ${seen//$'\n'/ })"
    done
    phx_log "driver $want, GPUs: ${seen//$'\n'/ }"
}

main() {
    phx_load_context
    local version url sum
    version="$(phx_ctx driver_version)"
    url="$(phx_ctx installer_url)"
    sum="$(phx_ctx installer_sha256)"
    [[ -n "$version" ]] || phx_die "no driver version in the context (nvidia.driver_version)"
    local -a gpus=()
    mapfile -t gpus < <(phx_ctx_list gpus)
    if installed_ok "$version"; then
        phx_log "driver $version is installed"
    else
        blacklist_nouveau
        kernel_headers
        remove_other_versions "$version"
        if [[ "$(nvidia_smi_version)" != "$version" ]]; then
            install_driver "$version" "$url" "$sum"
        fi
    fi
    boot_config
    verify "$version" "${gpus[@]}"
    phx_finish
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    main "$@"
fi
