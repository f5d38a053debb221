#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine with Rust: installs what the
# tests need, then runs `cargo test --workspace`.
#
# - Python's independent OMEMO 2 stack (`omemo`/`twomemo`, pinned in
#   tests/python/requirements.txt) in a virtual environment, for the interop
#   tests of crates/omemo. The tests find it through ATM_PYTHON and fail loudly
#   when it is missing.
# - The XMPP servers Prosody and ejabberd (Debian packages `prosody`,
#   `ejabberd`), for crates/xmpp-server, which starts private instances of
#   them on loopback. Installed with apt-get when missing, without starting
#   or enabling their system services (the tests never use those); the tests
#   fail loudly when a server is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# Installs the Debian packages named as arguments that are not installed yet.
# A policy-rc.d that answers 101 ("action forbidden") keeps the packages'
# maintainer scripts from starting the services; afterwards they are stopped
# (should one have started anyway) and disabled.
install_debian_packages() {
    local missing=()
    for package in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q '^install ok installed$'; then
            missing+=("$package")
        fi
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || {
            echo "scripts/test.sh: need root (or sudo) to install: ${missing[*]}" >&2
            return 1
        }
        sudo=(sudo)
    fi
    echo "scripts/test.sh: installing ${missing[*]} (services not started)" >&2
    # Any policy-rc.d already there is set aside and restored afterwards.
    local policy=/usr/sbin/policy-rc.d saved=/usr/sbin/policy-rc.d.atm-rs-saved
    [ -e "$policy" ] && "${sudo[@]}" mv "$policy" "$saved"
    printf '#!/bin/sh\n# Written by atm-rs scripts/test.sh during apt-get install.\nexit 101\n' |
        "${sudo[@]}" tee "$policy" >/dev/null
    "${sudo[@]}" chmod 755 "$policy"
    local status=0
    {
        if ! apt-cache show "${missing[@]}" >/dev/null 2>&1; then
            "${sudo[@]}" apt-get update -q
        fi
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -q -o Dpkg::Options::=--force-confdef \
            -o Dpkg::Options::=--force-confold "${missing[@]}"
    } || status=$?
    "${sudo[@]}" rm -f "$policy"
    if [ -e "$saved" ]; then "${sudo[@]}" mv "$saved" "$policy"; fi
    [ "$status" -eq 0 ] || return "$status"
    # The tests start their own private instances; the system services stay off.
    for service in "${missing[@]}"; do
        if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
            "${sudo[@]}" systemctl disable --now "$service" >/dev/null 2>&1 || true
        elif [ -x "/etc/init.d/$service" ]; then
            "${sudo[@]}" "/etc/init.d/$service" stop >/dev/null 2>&1 || true
            "${sudo[@]}" update-rc.d "$service" disable >/dev/null 2>&1 || true
        fi
    done
}

install_debian_packages prosody ejabberd

venv=tests/python/.venv
req=tests/python/requirements.txt
if [ -f "$req" ]; then
    if [ ! -x "$venv/bin/python" ] || ! cmp -s "$req" "$venv/.installed-requirements"; then
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
        cp "$req" "$venv/.installed-requirements"
    fi
    ATM_PYTHON="$(pwd)/$venv/bin/python"
    export ATM_PYTHON
fi

cargo test --workspace "$@"
