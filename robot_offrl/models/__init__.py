"""Networks: observation encoders, denoisers, critics and the Lipschitz head."""

from robot_offrl.models.obs_info import ObsInfo

__all__ = ["ObsInfo"]
