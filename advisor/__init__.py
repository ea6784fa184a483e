"""advisor: should you use an ImageNet-pretrained CNN on your images, and how?

The pipeline runs one way: files on disk -> :class:`~advisor.data.Dataset` ->
:class:`~advisor.profile.Profile` -> :class:`~advisor.decide.Recommendation` ->
:class:`~advisor.bench.BenchResult` -> HTML/JSON report.
"""

__version__ = "0.2.0"

__all__ = ["__version__"]
