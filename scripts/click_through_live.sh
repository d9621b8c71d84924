#!/usr/bin/env bash
# Issue 28's live mode as a user clicks it: open the sample, New annotation, Live on, paint five
# cells one by one (the segmentation in view must change within about 15 s of each, with no
# other action), Live off (a round appears), close napari at once (exit 0). Real clicks and
# strokes (xdotool) on a 1366x768 Xvfb screen; screenshots in docs/images/i28-*.png.
# Positions and facts come from scripts/click_through_app.py.
#   scripts/click_through_live.sh [DISPLAY_NUMBER]
set -euo pipefail
N=${1:-66}
source "$(dirname "$0")/click_through_lib.sh"
start_live 60
for k in 1 2 3 4 5; do
  before=$(fact seg_max); fg=$(fact seg_fg); t0=$(date +%s)
  click "tab:Annotate (napari-unet)"  # the user paints; the Train dock keeps training
  read -r x y r <<<"$(cell "$k")"; scribble "$x" "$y" "$r"
  changed=no
  for _ in $(seq 1 30); do
    sleep 1; [ "$(fact seg_max)" != "$before" ] && { changed=yes; break; }
  done
  echo "   stroke $k: segmentation in view rewritten: $changed after $(( $(date +%s) - t0 )) s;" \
       "foreground px $fg -> $(fact seg_fg) (live steps $(fact live_steps), cells $(fact live_cells))"
  [ $k = 3 ] && shot i28-live-painting
done
click "tab:Train (napari-unet)"; shot i28-live-train-dock
stop_live_and_quit i28-live-round
