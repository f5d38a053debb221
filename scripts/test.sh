#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine with Rust: installs what the
# tests need, then runs `cargo test --workspace`.
#
# - Python's independent OMEMO 2 stack (`omemo`/`twomemo`, pinned in
#   tests/python/requirements.txt) in a virtual environment, for the interop
#   tests of crates/omemo. The tests find it through ATM_PYTHON and fail loudly
#   when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

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
