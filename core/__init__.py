"""VPP Studio core: Qt-free library for video instance segmentation with Video Patch Pruning."""

import os

__version__ = "0.1.0"

# torch's OpenMP workers wait for the next operation by spinning (libgomp: about 3 ms by default) or by sleeping
# (OMP_WAIT_POLICY=PASSIVE). A pruned pass has as many operations as a dense one with less work in each, so
# waking sleeping workers eats its gain: on this project's idle 2-core machine, `vpp infer` on 240 frames of
# 960x540 took 34.0 s dense and 24.7 s at PKR 0.4 with passive workers (1.38x), 27.7 s and 15.8 s with a short
# spin (GOMP_SPINCOUNT=10000, 1.75x). Spinning beside another busy process is what hurts (every operation then
# waits for a scheduler slice), and that is core.cpu_threads' job: runs lower torch's thread count to the cores
# other processes leave free. A short spin rather than the 3 ms default bounds what a worker takes from a
# neighbour the governor has not seen yet. It takes effect only if set before torch is first imported; a wait
# policy or spin count the user exported wins (libomp builds of torch, e.g. macOS, read KMP_BLOCKTIME instead).
if not any(os.environ.get(k) for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")):
    os.environ["GOMP_SPINCOUNT"] = "10000"
    os.environ["KMP_BLOCKTIME"] = "1"
