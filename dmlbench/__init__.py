"""dmlbench: deep-metric-learning benchmarks from the command line.

Importing this package must stay cheap: it never imports torch, faiss or pandas.
"""

__version__ = "0.1.0"
