"""RandAugment magnitudes that every op accepts.

timm samples each op's magnitude as N(m, mstd) and clips it to [0, 10]. At the top edge its
increasing posterize keeps ``4 - int(m / 10 * 4)`` bits: 0 at m = 10, which Pillow refuses
(``ValueError: bits must be between or equal to 1 and 8``). With the study's m6 that edge is
8 standard deviations away; at m9 (searched by ``full.yaml``) about 2% of draws reach it, and any
m >= 10 reaches it on every draw. timm's own per-op ``magnitude_max`` caps such an op where its
strongest legal setting starts (7.5 -> 1 bit), so every draw in [7.5, 10] keeps 1 bit, exactly
what timm already gives for draws in [7.5, 10): only the crashing edge changes.
"""

from __future__ import annotations

from timm.data.auto_augment import RandAugment

# op name -> the magnitude from which the op's strongest accepted setting applies
SAFE_MAGNITUDE_MAX = {"PosterizeIncreasing": 7.5}


def cap_unsafe_magnitudes(transforms) -> None:
    """Cap, in place, the magnitudes of the RandAugment ops in ``transforms`` that Pillow
    refuses at timm's top magnitude (see ``SAFE_MAGNITUDE_MAX``)."""
    for t in transforms:
        if isinstance(t, RandAugment):
            for op in t.ops:
                cap = SAFE_MAGNITUDE_MAX.get(op.name)
                if cap is not None:
                    op.magnitude_max = min(op.magnitude_max or cap, cap)
