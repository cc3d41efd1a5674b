"""NetMind dedicated endpoints: rented GPU services as pool routes, watched, costed and scaled by the gateway.

`client` speaks to NetMind's control plane; `watcher` polls each service's status into
the router (only an `available` service takes traffic, up to its instances' capacity);
`cost` keeps the tokens served and the per-token spill-over around them; `autoscaler`
resizes a service from that; `fleet` holds them together for one gateway process.
"""

from gateway.dedicated.fleet import DedicatedEndpoints

__all__ = ["DedicatedEndpoints"]
