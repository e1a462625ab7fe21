"""The outlier thresholds by device type as run config, one setting every consumer reads."""

from dataclasses import asdict

import dagster as dg

from keystroke_assets.lib.latencies import DEFAULT_OUTLIER_THRESHOLDS, OutlierThresholds

_D, _M = DEFAULT_OUTLIER_THRESHOLDS["desktop"], DEFAULT_OUTLIER_THRESHOLDS["mobile"]


class OutlierRules(dg.ConfigurableResource):
    """Outlier thresholds by device type (docs/features.md §2), ms. keypairs' `outlier` flag,
    typenet_ml's HL range, statistical's non-outlier pairs and the plots' dotted lines all read it."""

    desktop_hl_min_ms: int = _D.hl_min_ms
    desktop_hl_max_ms: int = _D.hl_max_ms
    desktop_il_abs_max_ms: int = _D.il_abs_max_ms
    mobile_hl_min_ms: int = _M.hl_min_ms
    mobile_hl_max_ms: int = _M.hl_max_ms
    mobile_il_abs_max_ms: int = _M.il_abs_max_ms

    def thresholds(self) -> dict[str, OutlierThresholds]:
        return {
            device: OutlierThresholds(
                getattr(self, f"{device}_hl_min_ms"),
                getattr(self, f"{device}_hl_max_ms"),
                getattr(self, f"{device}_il_abs_max_ms"),
            )
            for device in ("desktop", "mobile")
        }

    def as_params(self) -> dict[str, dict[str, int]]:
        """The thresholds as a segment function receives them: plain JSON, in its segments' addresses."""
        return {device: asdict(t) for device, t in self.thresholds().items()}
