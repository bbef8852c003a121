"""Triton kernels (installed as `impresslearn.kernels`): the "triton" backend.

Not written yet; the backend registry reports it unavailable until it is.
"""

UNAVAILABLE = "the Triton kernels are not implemented yet"
