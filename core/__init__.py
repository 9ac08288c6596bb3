"""VPP Studio core: Qt-free library for video instance segmentation with Video Patch Pruning."""

import os

__version__ = "0.1.0"

# torch's OpenMP workers busy-wait between operations by default. Beside any other busy process (the app's UI
# thread, a second job, a training run) every small operation then waits for a scheduler slice, and a pruned
# pass, which has as many operations as a dense one but less work in each, stops paying: measured on this
# project's 2-core machine, `vpp infer` on a 60-frame 960x540 clip took 150 s dense and 173 s at PKR 0.4 with
# spinning threads, 16.4 s and 10.5 s with passive ones (same outputs). It takes effect only if set before
# torch is first imported; a value the user exported wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
