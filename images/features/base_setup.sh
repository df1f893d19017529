#!/usr/bin/env bash
# @phoenix summary: locale, timezone, essential packages, unattended upgrades, optional user
#
# Context: PHX_LOCALE, PHX_TIMEZONE, PHX_EXTRA_PACKAGES, PHX_UNATTENDED_UPGRADES,
#          PHX_USER_USERNAME, PHX_USER_SSH_PUBLIC_KEY, PHX_USER_SUDO.
# Debian 12 and Ubuntu 24.04. Idempotent: a second run ends with "base_setup: nothing to change".
# shellcheck source=images/lib/phoenix-common.sh
source "${PHOENIX_LIB:-/opt/phoenix/lib/phoenix-common.sh}"

BASE_ESSENTIAL_PACKAGES=(ca-certificates curl gnupg jq locales tzdata procps iproute2)
AUTO_UPGRADES_FILE=/etc/apt/apt.conf.d/20auto-upgrades

# base_locale_normalized en_US.UTF-8 -> en_US.utf8 (the spelling `locale -a` prints).
base_locale_normalized() {
    local loc="$1" name charset="" mod=""
    if [[ "$loc" == *@* ]]; then
        mod="@${loc#*@}"
        loc="${loc%%@*}"
    fi
    name="${loc%%.*}"
    if [[ "$loc" == *.* ]]; then
        charset="${loc#*.}"
        charset="${charset,,}"
        charset=".${charset//-/}"
    fi
    printf '%s%s%s\n' "$name" "$charset" "$mod"
}

# base_locale_gen_line en_US.UTF-8 -> "en_US.UTF-8 UTF-8" (a line of /etc/locale.gen).
base_locale_gen_line() {
    local loc="$1" charset="ISO-8859-1"
    if [[ "$loc" == *.* ]]; then
        charset="${loc#*.}"
        charset="${charset%%@*}"
    fi
    printf '%s %s\n' "$loc" "$charset"
}

# base_locale_builtin LOCALE: C, POSIX and C.UTF-8 exist without generation.
base_locale_builtin() {
    case "$1" in
        C | POSIX | C.UTF-8 | C.utf8) return 0 ;;
        *) return 1 ;;
    esac
}

base_locale_available() {
    local want
    want="$(base_locale_normalized "$1")"
    local all
    all="$(locale -a 2>/dev/null || true)"   # all of it first: `locale -a | grep -q` can die of SIGPIPE
    grep -qxF "$want" <<<"$all"
}

setup_locale() {
    local loc line
    loc="$(phx_ctx locale en_US.UTF-8)"
    if ! base_locale_builtin "$loc" && ! base_locale_available "$loc"; then
        line="$(base_locale_gen_line "$loc")"
        if [[ -f /etc/locale.gen ]] && ! grep -qxF "$line" /etc/locale.gen; then
            if grep -qxE "#[[:space:]]*${line//./\\.}" /etc/locale.gen; then
                sed -i -E "s/^#[[:space:]]*${line//./\\.}\$/${line}/" /etc/locale.gen
            else
                printf '%s\n' "$line" >>/etc/locale.gen
            fi
        fi
        if [[ -d /var/lib/locales/supported.d ]]; then
            locale-gen "$loc" >/dev/null   # Ubuntu: records it under supported.d and generates
        else
            locale-gen >/dev/null          # Debian: generates what /etc/locale.gen lists
        fi
        base_locale_available "$loc" || phx_die "locale $loc could not be generated"
        phx_changed "generated locale $loc"
    fi
    printf 'LANG=%s\n' "$loc" | phx_write_file /etc/default/locale 0644
}

setup_timezone() {
    local tz zone
    tz="$(phx_ctx timezone Etc/UTC)"
    zone="/usr/share/zoneinfo/$tz"
    [[ -f "$zone" ]] || phx_die "unknown timezone $tz ($zone missing)"
    if [[ "$(readlink /etc/localtime 2>/dev/null || true)" != "$zone" ]]; then
        ln -sfn "$zone" /etc/localtime
        phx_changed "timezone set to $tz"
    fi
    printf '%s\n' "$tz" | phx_write_file /etc/timezone 0644
}

# base_auto_upgrades_conf true|false: the content of 20auto-upgrades.
base_auto_upgrades_conf() {
    local v=0
    phx_bool "$1" && v=1
    printf 'APT::Periodic::Update-Package-Lists "%s";\nAPT::Periodic::Unattended-Upgrade "%s";\n' "$v" "$v"
}

setup_unattended_upgrades() {
    local want
    want="$(phx_ctx unattended_upgrades false)"
    if phx_bool "$want"; then
        phx_apt_install unattended-upgrades
        base_auto_upgrades_conf true | phx_write_file "$AUTO_UPGRADES_FILE" 0644
        phx_service_enable unattended-upgrades.service
    elif phx_pkg_installed unattended-upgrades || [[ -f "$AUTO_UPGRADES_FILE" ]]; then
        # Ubuntu templates ship it enabled: switch the periodic runs off, keep the package.
        base_auto_upgrades_conf false | phx_write_file "$AUTO_UPGRADES_FILE" 0644
    fi
}

# base_sudoers_line USER: the drop-in granting USER sudo (the user has no password: key login only).
base_sudoers_line() { printf '%s ALL=(ALL:ALL) NOPASSWD:ALL\n' "$1"; }

setup_user() {
    local user key sudo home sudoers
    user="$(phx_ctx user_username)"
    if [[ -z "$user" ]]; then
        return 0
    fi
    key="$(phx_ctx user_ssh_public_key)"
    sudo="$(phx_ctx user_sudo false)"   # passwordless sudo only when the config asks for it
    if ! id -u "$user" >/dev/null 2>&1; then
        useradd --create-home --user-group --shell /bin/bash "$user"
        phx_changed "created user $user"
    fi
    home="$(getent passwd "$user" | cut -d: -f6)"
    if [[ -n "$key" ]]; then
        phx_apt_install openssh-server
        phx_ensure_dir "$home/.ssh" 0700
        if [[ "$(stat -c %U:%G "$home/.ssh")" != "$user:$(id -gn "$user")" ]]; then
            chown "$user:" "$home/.ssh"
            phx_changed "set owner $user on $home/.ssh"
        fi
        local keys=""
        [[ -f "$home/.ssh/authorized_keys" ]] && keys="$(cat "$home/.ssh/authorized_keys")"
        if ! grep -qxF "$key" <<<"$keys"; then
            keys="${keys:+$keys$'\n'}$key"
        fi
        printf '%s\n' "$keys" | phx_write_file "$home/.ssh/authorized_keys" 0600 "$user"
    fi
    sudoers="/etc/sudoers.d/phoenix-$user"
    if phx_bool "$sudo"; then
        phx_apt_install sudo
        local tmp
        phx_tmpfile tmp
        base_sudoers_line "$user" >"$tmp"
        visudo -cqf "$tmp" >/dev/null || phx_die "sudoers line for $user does not validate"
        phx_write_file "$sudoers" 0440 root:root <"$tmp"
    else
        phx_remove_file "$sudoers"
    fi
}

main() {
    phx_load_context
    local -a extra
    mapfile -t extra < <(phx_ctx_list extra_packages)
    phx_apt_install "${BASE_ESSENTIAL_PACKAGES[@]}"
    setup_locale
    setup_timezone
    if ((${#extra[@]})); then
        phx_apt_install "${extra[@]}"
    fi
    setup_unattended_upgrades
    setup_user
    phx_finish
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    main "$@"
fi
