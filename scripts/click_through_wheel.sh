#!/usr/bin/env bash
# The mouse wheel over the Train dock scrolls it and changes no field: the sample, New annotation,
# a stroke, Train: click Max steps, type 20, Tab (the time budget gets focus), then the wheel
# (xdotool click 5) 40 times over the dock's fields until Fine-tune shows, and back up (click 4).
# Prints the fields before and after; screenshots docs/images/i28-wheel-*.png; napari exits 0.
#   scripts/click_through_wheel.sh [DISPLAY_NUMBER]
set -euo pipefail
N=${1:-71}
source "$(dirname "$0")/click_through_lib.sh"
rm -f "$P"
(I30_SAMPLE=1 $PY "$ROOT/scripts/click_through_app.py" "$P" >"$W/napari.log" 2>&1
 echo $? >"$W/napari.rc") &
wait_for canvas 90; sleep 3
click "tab:Train (napari-unet)"; sleep 1
click Train._steps; xdotool key ctrl+a type 20; xdotool key Tab; sleep 1
echo "   before: steps $(text Train._steps), time budget $(text Train._time)"
shot i28-wheel-before
read -r x y <<<"$(pos Train._time)"
xdotool mousemove "$x" "$y"
for _ in $(seq 1 40); do xdotool click 5; sleep 0.1; done; sleep 1
echo "   after 40 notches down: steps $(text Train._steps), time budget $(text Train._time)"
shot i28-wheel-scrolled
for _ in $(seq 1 40); do xdotool click 4; sleep 0.1; done; sleep 1
echo "   after 40 notches up: steps $(text Train._steps), time budget $(text Train._time)"
xdotool key ctrl+q; sleep 2; xdotool key ctrl+q
for _ in $(seq 1 60); do [ -f "$W/napari.rc" ] && break; sleep 1; done
echo "napari exit status: $(cat "$W/napari.rc")"
grep -i "traceback\|error" "$W/napari.log" | head -5 || true
