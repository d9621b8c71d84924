# Shared by the click-throughs (scripts/click_through.sh, click_through_live.sh): sourced after
# N (the X display number) is set; starts Xvfb :N, and defines where things are (from the JSON
# that scripts/click_through_app.py writes), clicks and screenshots.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-python}
W=$(mktemp -d)
export DISPLAY=:$N NAPARI_UNET_DATA_DIR=$W/data PYTHONPATH=$ROOT/src${PYTHONPATH:+:$PYTHONPATH}
P=$W/pos.json
Xvfb :$N -screen 0 1366x768x24 >/dev/null 2>&1 &
XVFB=$!
trap 'kill $XVFB' EXIT
sleep 2
pos() { python3 -c "import json,sys;d=json.load(open('$P'));print(*d[sys.argv[1]]['c'])" "$1"; }
text() { python3 -c "import json,sys;d=json.load(open('$P'));print(d[sys.argv[1]]['text'])" "$1"; }
fact() { python3 -c "import json,sys;d=json.load(open('$P'));print(d['facts'][sys.argv[1]])" "$1"; }
click() { sleep 0.7; xdotool mousemove $(pos "$1") click 1; sleep 0.7; }
shot() { import -window root -display :$N "$ROOT/docs/images/$1.png"; }
cell() { python3 -c "import json,sys;d=json.load(open('$P'));print(*d['facts']['cells'][int(sys.argv[1])])" "$1"; }
# one stroke over a cell at (x, y) of radius r: passes 3 px apart over a square of half-side
# r * NUM / DEN (4th and 5th arguments; 2/3 by default, which fills most of the cell);
# SCRIBBLE_STEP and SCRIBBLE_PAUSE make it denser and slower (a busy napari drops moves)
scribble() { local x=$1 y=$2 d=$(( $3 * ${4:-2} / ${5:-3} )) p=${SCRIBBLE_PAUSE:-0.03}
  xdotool mousemove $((x - d)) $((y - d)) mousedown 1
  for dy in $(seq -$d "${SCRIBBLE_STEP:-3}" $d); do
    xdotool mousemove $((x - d)) $((y + dy)); sleep "$p"
    xdotool mousemove $((x + d)) $((y + dy)); sleep "$p"
  done
  xdotool mouseup 1; }
wait_for() { for _ in $(seq 1 "$2"); do grep -q "$1" "$P" 2>/dev/null && return 0; sleep 1; done
  echo "timed out waiting for: $1"; return 1; }
# napari with the sample open (as `make run`), waited for; then the first scribble and Live on
start_live() {
  rm -f "$P"
  (I30_SAMPLE=1 $PY "$ROOT/scripts/click_through_app.py" "$P" >"$W/napari.log" 2>&1
   echo $? >"$W/napari.rc") &
  wait_for canvas "$1"; sleep 3
  click "tab:Annotate (napari-unet)"; click Annotate._new; sleep 1
  read -r x y r <<<"$(cell 0)"; scribble "$x" "$y" "$r" "${@:2}"; sleep 1  # live needs a cell
  click "tab:Train (napari-unet)"; sleep 2; click Train.live  # the form settles first
  wait_for '"live_running": true' "$1"; sleep 5
  echo "   live on: $(fact status)"; }
# Live off (a round), a screenshot, ctrl+q twice (napari asks once), napari's exit status
stop_live_and_quit() {
  click Train.live
  wait_for '"live_running": false' 180; sleep 3
  echo "   after Live off: rounds $(fact rounds); status: $(fact status)"
  shot "$1"
  quit_napari; }
# ctrl+q twice (napari asks once), napari's exit status and any traceback in its log
quit_napari() {
  xdotool key ctrl+q; sleep 2; xdotool key ctrl+q
  for _ in $(seq 1 60); do [ -f "$W/napari.rc" ] && break; sleep 1; done
  echo "napari exit status: $(cat "$W/napari.rc")"
  grep -i "traceback\|error" "$W/napari.log" | head -5 || true; }
