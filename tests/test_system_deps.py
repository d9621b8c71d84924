"""The set-up check that `make run`, `make test` and CI run before building anything.

The system commands it calls (uname, id, dpkg-query, apt-get, sudo) are replaced by small
scripts on PATH, so every branch runs here without touching the machine.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "system-deps.sh"
LIST = ROOT / "scripts" / "system-packages.txt"

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="a bash script; Linux only")


def listed(mode):
    out = []
    for line in LIST.read_text().splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if len(words) > 1 and words[1] != mode:
            continue
        out.append(words[0])
    return out


def shim(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text("#!/bin/bash\n" + body + "\n")
    path.chmod(0o755)


def run_check(
    tmp_path, mode="test", *, system="Linux", uid=0, installed=(), sudo=None, env=None, venv=True
):
    """Run the check with fake system commands; returns (process, commands run as admin)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    log = tmp_path / "admin.log"
    log.write_text("")
    shim(bin_dir, "uname", f"echo {system}")
    shim(bin_dir, "id", f"echo {uid}")
    have = " ".join(installed)
    shim(
        bin_dir,
        "dpkg-query",
        f'for p in {have}; do [[ $p == "${{@: -1}}" ]] && {{ printf "ii "; exit 0; }}; done\n'
        "exit 1",
    )
    shim(bin_dir, "apt-get", f'echo "apt-get $*" >> {log}')
    shim(bin_dir, "python3", "exit 0" if venv else "exit 1")  # can it make a venv?
    if sudo == "passwordless":
        shim(
            bin_dir, "sudo", f'[[ $1 == -n ]] && shift; [[ $1 == true ]] || echo "sudo $*" >> {log}'
        )
    elif sudo == "password":
        shim(bin_dir, "sudo", "exit 1")
    base = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run(
        [shutil.which("bash") or "/bin/bash", str(SCRIPT), mode],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return proc, log.read_text().splitlines()


def test_the_list_holds_what_the_canvas_needs():
    needed = set(listed("test"))
    assert {"xvfb", "libgl1-mesa-dri", "libegl1", "libxcb-cursor0"} <= needed
    assert "xvfb" not in listed("run")  # a desktop has a display already


def test_nothing_to_do_off_linux(tmp_path):
    proc, admin = run_check(tmp_path, system="Darwin", uid=501, installed=())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == proc.stderr == ""
    assert admin == []


def test_quiet_when_everything_is_there(tmp_path):
    proc, admin = run_check(tmp_path, uid=1000, installed=listed("test"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == proc.stderr == ""
    assert admin == []


def test_without_rights_it_stops_with_the_exact_command(tmp_path):
    have = [p for p in listed("test") if p not in ("xvfb", "libegl1")]
    proc, admin = run_check(tmp_path, uid=1000, installed=have, sudo="password")
    assert proc.returncode == 1
    assert admin == []  # nothing installed, nothing tried
    assert (
        "sudo apt-get update && sudo apt-get install -y --no-install-recommends xvfb libegl1"
        in proc.stderr
    )
    assert "Traceback" not in proc.stderr


def test_as_root_it_installs_only_what_is_missing(tmp_path):
    have = [p for p in listed("test") if p not in ("xvfb", "libxcb-cursor0")]
    proc, admin = run_check(tmp_path, uid=0, installed=have)
    assert proc.returncode == 0, proc.stderr
    assert admin[0] == "apt-get update -qq"
    assert admin[1].startswith("apt-get install -y -qq --no-install-recommends")
    assert admin[1].split()[-2:] == ["xvfb", "libxcb-cursor0"]


def test_passwordless_sudo_installs(tmp_path):
    proc, admin = run_check(tmp_path, uid=1000, installed=listed("run"), sudo="passwordless")
    assert proc.returncode == 0, proc.stderr
    installs = [line for line in admin if line.startswith("sudo ") and "apt-get install" in line]
    assert len(installs) == 1 and "xvfb" in installs[0]
    assert "DEBIAN_FRONTEND=noninteractive" in installs[0]  # sudo drops the environment


def test_a_python_that_cannot_make_a_venv_gets_python3_venv(tmp_path):
    proc, admin = run_check(tmp_path, uid=0, installed=listed("test"), venv=False)
    assert proc.returncode == 0, proc.stderr
    assert admin[-1].endswith("--no-install-recommends python3-venv")


def test_run_without_a_display_says_how_to_get_one(tmp_path):
    proc, _ = run_check(tmp_path, "run", uid=1000, installed=listed("run"))
    assert proc.returncode == 1
    assert "xvfb-run -a make run" in proc.stderr
    proc, _ = run_check(tmp_path, "run", uid=1000, installed=listed("run"), env={"DISPLAY": ":0"})
    assert proc.returncode == 0, proc.stderr


def test_make_checks_before_it_builds(tmp_path):
    """`make test` and `make run` start with the check, before .venv is built; CI uses it too."""
    for target, mode in (("test", "test"), ("run", "run")):
        dry = subprocess.run(
            ["make", "--no-print-directory", "-n", "-B", target, f"VENV={tmp_path / 'venv'}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            # as run under `make test` itself: not a sub-make of it
            env={
                k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")
            },
            timeout=60,
        )
        assert dry.returncode == 0, dry.stderr
        lines = [line for line in dry.stdout.splitlines() if line.strip()]
        assert lines[0] == f"bash scripts/system-deps.sh {mode}"
        assert any("-m venv" in line for line in lines[1:])
    ci = (ROOT / ".ci" / "run").read_text()
    assert "scripts/system-deps.sh test" in ci
