"""Official checkpoints of published models, mapped onto vision_mtl's modules."""

from vision_mtl.convert.invpt import Conversion, convert_invpt, official_state_dict, official_tasks
from vision_mtl.convert.seeded import seeded_state_dict

__all__ = [
    "Conversion",
    "convert_invpt",
    "official_state_dict",
    "official_tasks",
    "seeded_state_dict",
]
