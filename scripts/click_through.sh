#!/usr/bin/env bash
# Issue 30's journeys as a user clicks them: plain napari on a 1366x768 Xvfb screen, real
# clicks and keys (xdotool), screenshots in docs/images. Positions come from
# scripts/click_through_app.py (it only says where things are). Needs Xvfb, xdotool, ImageMagick.
#   scripts/click_through.sh [DISPLAY_NUMBER]
set -euo pipefail
N=${1:-30}
source "$(dirname "$0")/click_through_lib.sh"
stroke() { xdotool mousemove "$1" "$2" mousedown 1
  for _ in 1 2 3 4 5 6 7 8; do xdotool mousemove_relative -- 5 0; sleep 0.05; done
  xdotool mouseup 1; sleep 0.5; }
wait_for() { for _ in $(seq 1 "$2"); do grep -q "$1" "$P" 2>/dev/null && return 0; sleep 2; done
  echo "timed out waiting for: $1"; return 1; }
napari_start() { rm -f "$P"; (I30_SAMPLE=${1:-} $PY "$ROOT/scripts/click_through_app.py" "$P" \
  >"$W/napari$2.log" 2>&1; echo $? >"$W/napari$2.rc") & wait_for canvas 60; sleep 3; }
napari_exit() { xdotool key ctrl+q; sleep 3; xdotool key ctrl+q  # napari asks once
  for _ in $(seq 1 30); do [ -f "$W/napari$1.rc" ] && break; sleep 1; done
  echo "napari exit status: $(cat "$W/napari$1.rc")"; }

echo "1. annotate the sample, fine-tune in the Train dock, export, load the package back"
napari_start 1 1
click "tab:Annotate (napari-unet)"; click Annotate._new
stroke 500 200; stroke 600 300; stroke 700 400
echo "   brush after 3 strokes: $(fact brush) (largest id $(fact max_id))"
shot i30-all-docks-tabs
click "tab:Train (napari-unet)"; click Train._steps; xdotool key ctrl+a type 20; xdotool key Tab
click Train._train; wait_for "Training finished" 150; sleep 5
echo "   $(text Train._status) In use: $(fact in_use)"
shot i30-train-round
click "tab:Model (napari-unet)"; click Model._authors; xdotool type "Ada Lovelace"
echo "   export name offered: $(text Model._export_name)"
click Model._export; sleep 3; xdotool key ctrl+a; xdotool type "$W/round-001.zip"; xdotool key Return
wait_for "package written" 120; echo "   $(text Model._status)"
click Model._load_path; xdotool key ctrl+a; xdotool type "$W/round-001.zip"; xdotool key Tab
click Model._load; wait_for "Loaded round-001.zip" 60; sleep 1
echo "   $(text Model._status) Predict says in use: $(text Predict._model_info)"
shot i30-model-export-loaded-back
napari_exit 1

echo "2. reopen the project from the Recent list, paint, choose bundled in Predict"
napari_start "" 2
click "tab:Train (napari-unet)"; click Train.recent; xdotool key Down Return
wait_for '"current": "synthetic nuclei annotation"' 60; sleep 2
echo "   layers: $(fact layers) current: $(fact current) brush: $(fact brush) in use: $(fact in_use)"
echo "   Train starts from: $(text Train._start)"
shot i30-reopened-train
click "tab:Annotate (napari-unet)"; xdotool mousemove 98 71 click 1; sleep 1  # the paint brush
stroke 450 600; stroke 800 650; sleep 3
echo "   after 2 strokes: largest id $(fact max_id), brush $(fact brush)"
shot i30-reopened-painted
click "tab:Predict (napari-unet)"; click Predict._model_choice; xdotool key Down Return
click Predict._segment; wait_for "objects found" 120; sleep 2
echo "   Predict in use: $(text Predict._model_info) | Model dock: $(text Model._in_use)"
shot i30-predict-one-model
napari_exit 2
