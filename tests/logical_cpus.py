"""Run a script in a fresh Python process with several logical CPU devices; collect its JSON result.

Logical devices must be configured before TensorFlow initialises its devices,
which the test process has long done, so distributed runs happen in a
subprocess. The script configures the devices itself (:data:`PRELUDE`) and
prints one line ``RESULT <json>``.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: First lines of a script: 2 logical CPU devices, then the imports the scripts share.
PRELUDE = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    import numpy as np
    """
)


def run_script(tmp_path, body: str, *args: str, timeout: float = 300) -> dict:
    """Run ``PRELUDE + body`` with ``args``; return the JSON printed after ``RESULT``.

    Fails (assert) with the script's output if it exits non-zero or prints no
    result; ``subprocess.TimeoutExpired`` after ``timeout`` seconds (the child
    is killed).
    """
    script = Path(tmp_path) / "script.py"
    script.write_text(PRELUDE + textwrap.dedent(body))
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=str(REPO),
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, (
        f"script failed (rc={proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    )
    return json.loads(lines[-1][len("RESULT ") :])
