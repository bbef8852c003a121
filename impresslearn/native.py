"""The "native" backend: C++ CPU ops compiled from csrc/.

Not written yet; the backend registry reports it unavailable until it is.
"""

UNAVAILABLE = "the native C++ ops are not built yet"
