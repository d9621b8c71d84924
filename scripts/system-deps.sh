#!/usr/bin/env bash
# Checks (and, where it may, installs) the system libraries napari's canvas needs.
#   scripts/system-deps.sh test   # before the test suite: also a virtual display (Xvfb)
#   scripts/system-deps.sh run    # before opening napari: also a display to open it on
# On Linux with apt: missing packages are installed quietly when we are root or have
# passwordless sudo; otherwise it stops with the exact command to run. Elsewhere
# (macOS, Windows) nothing of this applies. Exit status 0: ready; 1: not ready (said why).
set -uo pipefail
mode=${1:-test}
here=$(cd "$(dirname "$0")" && pwd)
list=${NAPARI_UNET_SYSTEM_PACKAGES:-$here/system-packages.txt}

[[ $(uname -s) == Linux ]] || exit 0

wanted=()
while read -r pkg only _; do
    [[ -z $pkg || $pkg == \#* ]] && continue
    [[ -n ${only:-} && $only != "$mode" ]] && continue
    wanted+=("$pkg")
done <"$list"

no_display() {
    if [[ $mode == run && -z ${DISPLAY:-} && -z ${WAYLAND_DISPLAY:-} ]]; then
        echo "napari opens a window, but there is no display here (DISPLAY is not set)." >&2
        echo "Run 'make run' in a desktop session or over 'ssh -X', or under a virtual" >&2
        echo "display: xvfb-run -a make run (xvfb-run comes with the xvfb package)." >&2
        return 0
    fi
    return 1
}

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    # not Debian/Ubuntu: we cannot name the packages, only what is missing
    if [[ $mode == test ]] && ! command -v Xvfb >/dev/null 2>&1; then
        echo "The GUI tests need a virtual display: install Xvfb, Mesa's OpenGL (libGL, libEGL)" >&2
        echo "and Qt's xcb libraries with your system's package manager, then run 'make test'." >&2
        exit 1
    fi
    no_display && exit 1
    exit 0
fi

missing=()
for pkg in ${wanted[@]+"${wanted[@]}"}; do
    status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null)
    [[ $status == ii* ]] || missing+=("$pkg")
done
# `make` builds .venv with `python3 -m venv`; Debian's python3 needs python3-venv for it
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    missing+=(python3-venv)
fi

if ((${#missing[@]})); then
    # sudo drops the environment: pass DEBIAN_FRONTEND on the command line (no prompt)
    apt=(env DEBIAN_FRONTEND=noninteractive apt-get)
    if [[ $(id -u) == 0 ]]; then
        :
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        apt=(sudo -n "${apt[@]}")
    else
        echo "napari's canvas needs system libraries that are missing here. Install them with:" >&2
        echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
        echo "then run 'make $mode' again." >&2
        exit 1
    fi
    echo "Installing the system libraries napari's canvas needs: ${missing[*]}"
    if ! { "${apt[@]}" update -qq &&
        "${apt[@]}" install -y -qq --no-install-recommends "${missing[@]}"; } >/dev/null 2>&1; then
        echo "Installing them failed. Run this and read its messages:" >&2
        echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
        exit 1
    fi
fi

no_display && exit 1
exit 0
