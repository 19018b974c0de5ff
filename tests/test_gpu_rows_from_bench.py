"""tools/gpu_rows.py reads what `atbench bench at-step --json` writes: a real report of the
training step (on the CPU, with synthetic-tiny's model after a quick training) becomes one row
of the README's Speed table whose numbers are the report's."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark.commands.cli import main
from tests.fastpath_run import DEFENSE, TRACK, cli

pytestmark = pytest.mark.system

ROWS = Path(__file__).resolve().parent.parent / "tools" / "gpu_rows.py"


def test_a_real_at_step_report_becomes_a_row_of_the_speed_table(in_tmp):
    assert cli(in_tmp, "train") == 0
    path = in_tmp / "at-step.json"
    assert main(["bench", "at-step", "--track", TRACK, "--defense", DEFENSE, "--runs-dir", str(in_tmp / "runs"),
                 "--json", str(path)]) == 0
    case = json.loads(path.read_text())["cases"][0]
    out = subprocess.run([sys.executable, str(ROWS), "--device-name", "CPU", str(path)], capture_output=True,
                         text=True, check=True).stdout
    cells = [cell.strip() for cell in out.splitlines()[2].strip().strip("|").split("|")]
    assert len(cells) == 6 and cells[0] == "CPU" and cells[4].startswith(f"{case['ratio']:.2f}")
    assert cells[1].startswith("AT step, cnn-tiny, synthetic") and cells[1].endswith("(plain path)")
    assert cells[2].startswith(f"{case['ours_images_per_s']:,.1f} img/s")
    assert cells[3].startswith(f"{case['reference_images_per_s']:,.1f} img/s")
    assert cells[5].startswith(f"{case['details']['floor_images_per_s']:,.1f} img/s")
