"""Markets from data files: readers that return [`lmaas_jax.ValueMarket`][]s."""

from ._unit_demand import read_published as read_published, read_unit_demand as read_unit_demand

__all__ = ["read_published", "read_unit_demand"]
