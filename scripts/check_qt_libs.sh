#!/usr/bin/env bash
# Before starting Qt on a real display, check for the system libraries its xcb plugin loads and
# name the Debian/Ubuntu packages that provide any that are missing (instead of Qt's plugin error).
set -uo pipefail
platform="${QT_QPA_PLATFORM:-}"
case "$platform" in
    offscreen*|minimal*|vnc*) exit 0 ;;
esac
if [ -z "${DISPLAY:-}" ] && [ -z "${WAYLAND_DISPLAY:-}" ]; then
    echo "error: no display found (DISPLAY and WAYLAND_DISPLAY are unset)." >&2
    echo "       Run on a desktop session, under 'xvfb-run ./run.sh', or with QT_QPA_PLATFORM=offscreen." >&2
    exit 1
fi
# library soname -> Debian package
pairs="libxcb-cursor.so.0:libxcb-cursor0 libxcb-icccm.so.4:libxcb-icccm4 libxcb-keysyms.so.1:libxcb-keysyms1
libxkbcommon-x11.so.0:libxkbcommon-x11-0 libxkbcommon.so.0:libxkbcommon0 libxcb-image.so.0:libxcb-image0
libxcb-render-util.so.0:libxcb-render-util0 libxcb-shape.so.0:libxcb-shape0 libxcb-randr.so.0:libxcb-randr0
libxcb-xfixes.so.0:libxcb-xfixes0 libxcb-sync.so.1:libxcb-sync1 libxcb-xkb.so.1:libxcb-xkb1
libxcb-shm.so.0:libxcb-shm0 libX11-xcb.so.1:libx11-xcb1 libEGL.so.1:libegl1 libGL.so.1:libgl1
libfontconfig.so.1:libfontconfig1 libdbus-1.so.3:libdbus-1-3 libglib-2.0.so.0:libglib2.0-0"
known="$(ldconfig -p 2>/dev/null)"
missing=()
for pair in $pairs; do
    lib="${pair%%:*}"; pkg="${pair##*:}"
    if ! grep -q "$lib" <<<"$known"; then missing+=("$pkg"); fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "error: Qt needs system libraries that are not installed: ${missing[*]}" >&2
    echo "       Install them with:  sudo apt-get install ${missing[*]}" >&2
    echo "       (or run headless with QT_QPA_PLATFORM=offscreen)" >&2
    exit 1
fi
exit 0
