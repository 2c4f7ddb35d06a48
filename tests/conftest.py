import sys
import types

# torchvision's compiled ops cannot load on a CPU-only torch; its model code does not need them.
sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
