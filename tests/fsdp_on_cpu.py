"""Run a script with FSDP turned on for a CPU (gloo) run, the narrowest way: accelerate 1.16's `AcceleratorState`
leaves a MULTI_CPU run unsharded whatever its FSDP config (it enables FSDP only for accelerator device types), so here,
once it has set itself up with an FSDP plugin on a MULTI_CPU run, the state is switched to FSDP with that plugin, as it
would be on GPUs. Nothing else changes: torch's `fully_shard` itself works on a CPU mesh with gloo.

    accelerate launch --config_file examples/configs/accelerate_fsdp.yaml ... tests/fsdp_on_cpu.py SCRIPT ARGS
"""

import runpy
import sys
from pathlib import Path

from accelerate.state import AcceleratorState, PartialState
from accelerate.utils import DistributedType


set_up = AcceleratorState.__init__


def set_up_with_fsdp_on_cpu(self, *args, fsdp_plugin=None, **kwargs):
    set_up(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
    if fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
        self.distributed_type = DistributedType.FSDP
        if self._mixed_precision != "no":  # as accelerate does for FSDP on GPUs
            fsdp_plugin.set_mixed_precision(self._mixed_precision)
        self.fsdp_plugin = fsdp_plugin
        PartialState._shared_state["distributed_type"] = DistributedType.FSDP


AcceleratorState.__init__ = set_up_with_fsdp_on_cpu
sys.argv = sys.argv[1:]
sys.path.insert(0, str(Path(sys.argv[0]).resolve().parent))  # as `python SCRIPT` has it
runpy.run_path(sys.argv[0], run_name="__main__")
