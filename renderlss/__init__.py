"""renderlss: render-supervised Lift-Splat-Shoot training for 3D semantic occupancy."""

__version__ = "0.1.0"
