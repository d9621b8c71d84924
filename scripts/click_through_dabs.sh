#!/usr/bin/env bash
# Issue 28's tiny dabs as a user clicks them: the sample, New annotation (a 5-px brush), five
# tiny strokes of a few pixels, Train: Max steps 20, Fine-tune. The probability must not light
# up the background (the segmentation's foreground and objects are printed), the dock must say
# which cells look partly painted, and napari exits 0. Real clicks (xdotool) on a 1366x768
# Xvfb screen; screenshots in docs/images/i28-dabs*.png.
# Mode left: two whole nuclei and three dabs far from any nucleus; the Train dock's line and
# overlay before the run (screenshots docs/images/i28-left-*.png).
# Mode complete: the same, then "This image is completely annotated" ticked: the line still
# says the dabs are left out, as the round does (docs/images/i28-complete-*.png).
# Mode reopen: mode left, napari closed, a new napari reopens the project from the Train
# dock's Recent list: the line must still leave the dabs out, judged as the first time
# (the round 1 model in use alone counts them as cells; docs/images/i28-reopened-*.png).
#   scripts/click_through_dabs.sh [DISPLAY_NUMBER] [aimed|anywhere|left|complete|reopen]
set -euo pipefail
N=${1:-71}
WHERE=${2:-aimed}
source "$(dirname "$0")/click_through_lib.sh"
dab() { xdotool mousemove "$1" "$2" mousedown 1
  for _ in 1 2; do xdotool mousemove_relative -- 1 1; sleep 0.05; done
  xdotool mouseup 1; sleep 0.5; }
rm -f "$P"
(I30_SAMPLE=1 $PY "$ROOT/scripts/click_through_app.py" "$P" >"$W/napari.log" 2>&1
 echo $? >"$W/napari.rc") &
wait_for canvas 90; sleep 3
click "tab:Annotate (napari-unet)"; click Annotate._new; sleep 1
read -r cx cy <<<"$(pos canvas)"
spot() { python3 -c "import json,sys;d=json.load(open('$P'));print(*d['facts']['spots'][int(sys.argv[1])])" "$1"; }
if [ "$WHERE" = left ] || [ "$WHERE" = complete ] || [ "$WHERE" = reopen ]; then  # two nuclei, three dabs that missed
  for k in 0 1; do read -r x y r <<<"$(cell "$k")"  # the whole nucleus, slowly
    SCRIBBLE_STEP=2 SCRIBBLE_PAUSE=0.12 scribble "$x" "$y" "$r" 1 1; sleep 0.5; done
  for k in 0 1 2; do read -r x y <<<"$(spot "$k")"; dab "$x" "$y"; done
  echo "   after 2 cells and 3 dabs: largest id $(fact max_id)"
  click "tab:Train (napari-unet)"
  wait_for '"left_out": \[$' 120; sleep 3
  echo "   the line: $(fact scope_line)"
  echo "   left out: $(fact left_out); overlay px $(fact overlay_px), within 6 px of them $(fact overlay_near_left_out)"
  shot "i28-left-dock"
  SHOT=i28-left-trained
  if [ "$WHERE" = complete ]; then  # "This image is completely annotated": still left out
    click Train.complete; sleep 4
    echo "   marked complete, the line: $(fact scope_line)"
    shot "i28-complete-dock"
    SHOT=i28-complete-trained
  fi
else
  for k in 0 1 2 3 4; do
    if [ "$WHERE" = aimed ]; then read -r x y r <<<"$(cell "$k")"  # inside a bright nucleus
    else x=$((cx - 200 + 90 * k)); y=$((cy - 120 + 55 * k)); fi  # wherever the pointer is
    dab "$x" "$y"
  done
  echo "   after 5 dabs: largest id $(fact max_id), brush $(fact brush)"
  shot "i28-dabs-$WHERE-painted"
  click "tab:Train (napari-unet)"; sleep 1
  SHOT=i28-dabs-$WHERE-trained
fi
click Train._steps; xdotool key ctrl+a type 20; xdotool key Tab
click Train._train; wait_for "Training finished" 240; sleep 8
echo "   $(text Train._status)"
echo "   the dock says: $(fact partial)"
[ "$WHERE" != aimed ] && [ "$WHERE" != anywhere ] && echo "   the line after the round: $(fact scope_line); left out: $(fact left_out)"
echo "   segmentation: foreground $(fact seg_fg) px, largest id $(fact seg_max)"
shot "$SHOT"
quit_napari
if [ "$WHERE" = reopen ]; then
  echo "2. a new napari: Train, Recent, the project just closed"
  if [ -n "${NO_FIRST_SIGHT:-}" ]; then  # the control: the project without its judgement
    rm -v "$W"/data/projects/*/first_sight.npz; fi
  rm -f "$P" "$W/napari.rc"
  ($PY "$ROOT/scripts/click_through_app.py" "$P" >"$W/napari2.log" 2>&1
   echo $? >"$W/napari.rc") &
  wait_for canvas 90; sleep 3
  click "tab:Train (napari-unet)"; click Train.recent; xdotool key Down Return
  wait_for '"current": "synthetic nuclei annotation"' 90
  wait_for '"scope_line": "Training on' 120; sleep 5
  echo "   in use: $(fact in_use)"
  echo "   the line: $(fact scope_line); left out: $(fact left_out)"
  shot i28-reopened-first-sight
  quit_napari
fi
