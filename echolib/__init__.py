"""echolib: the library behind the multi-view echocardiography video-CLIP compendium.

Notebooks (one per DVC stage) stay thin and call into this package; nothing heavy happens at import time.
"""

__version__ = "0.1.0"
