"""TS-TCC's two views (Eldele et al. 2021, sec. 4.1), built from the series views' ops."""

from __future__ import annotations

from contrastlab.augment.series import SeriesViews


class TSTCCViews(SeriesViews):
    """View 1 is weak, jitter-and-scale; view 2 is strong, permutation-and-jitter (TS-TCC's recipe).

    Args:
        weak_scaling: sigma of the weak view's per-channel factor around 1.
        weak_jitter, strong_jitter: the largest noise std of each view (in units of the normalised series).
        max_segments: the strong view cuts each series into 2 .. max_segments segments and shuffles them.
    """

    def __init__(
        self, weak_scaling: float = 0.5, weak_jitter: float = 0.1, strong_jitter: float = 0.3, max_segments: int = 5
    ):
        super().__init__(
            num_views=2,
            time_warp_p=0.0,
            magnitude_warp_p=0.0,
            scaling=[weak_scaling, 0.0],
            jitter=[weak_jitter, strong_jitter],
            permutation_p=[0.0, 1.0],
            max_segments=max_segments,
        )
