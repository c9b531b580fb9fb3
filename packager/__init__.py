"""edgepack host side: build, self-test and push bundles."""
__version__ = "0.1.0"
