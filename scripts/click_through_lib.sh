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
